"""Running models: the safe-loading allowlist for mmengine checkpoints and the train/test entry points."""
from .checkpoint import checkpoint_safe_globals, register_checkpoint_safe_globals
from .cli import parse_test_args, parse_train_args, run_test, run_train

# Once per process, on `import skipconv_det`: resume and load_from then work under torch's safe loader.
register_checkpoint_safe_globals()

__all__ = [
    'checkpoint_safe_globals', 'parse_test_args', 'parse_train_args', 'register_checkpoint_safe_globals',
    'run_test', 'run_train'
]
