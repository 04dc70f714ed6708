"""Running models: the safe-loading allowlist for mmengine checkpoints, exact resume, early checks of data and
checkpoints, and the train/test entry points."""
from .channels_last import ChannelsLastHook
from .checkpoint import checkpoint_safe_globals, register_checkpoint_safe_globals
from .checks import CheckpointError, DatasetError, check_coco_annotations, check_custom_imports, check_datasets
from .cli import parse_test_args, parse_train_args, run_test, run_train
from .resume import RandomStateHook, ResumableEpochBasedTrainLoop, enable_exact_resume

# Once per process, on `import skipconv_det`: resume and load_from then work under torch's safe loader.
register_checkpoint_safe_globals()

__all__ = [
    'ChannelsLastHook', 'CheckpointError', 'DatasetError', 'RandomStateHook', 'ResumableEpochBasedTrainLoop',
    'check_coco_annotations', 'check_custom_imports', 'check_datasets', 'checkpoint_safe_globals',
    'enable_exact_resume', 'parse_test_args', 'parse_train_args', 'register_checkpoint_safe_globals', 'run_test',
    'run_train'
]
