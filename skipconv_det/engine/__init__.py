"""Running models: the safe-loading allowlist for mmengine checkpoints, readable errors for unreadable checkpoint
files (opt-in), exact resume, channels_last runs, mixed-precision training (on the CPU too), torch.compile of the
backbone and neck (mmengine's ``compile`` key), a dense warm-up of SkipConv layers, testing in the lattice domain,
and the check that a config imports this package."""
from .amp import CPUAmpOptimWrapper, enable_amp
from .channels_last import ChannelsLastHook
from .checkpoint import checkpoint_safe_globals, register_checkpoint_safe_globals
from .checkpoint_loader import CheckpointError, load_local_checkpoint, readable_checkpoint_errors
from .checks import add_custom_import, check_custom_imports, custom_imports_of
from .compile import CompileHook, enable_compile
from .dense_warmup import DenseWarmupHook
from .lattice_inference import LatticeInferenceHook, enable_lattice_inference
from .resume import RandomStateHook, ResumableEpochBasedTrainLoop, enable_exact_resume

__all__ = [
    'CPUAmpOptimWrapper', 'ChannelsLastHook', 'CheckpointError', 'CompileHook', 'DenseWarmupHook',
    'LatticeInferenceHook', 'RandomStateHook', 'ResumableEpochBasedTrainLoop', 'add_custom_import',
    'check_custom_imports', 'checkpoint_safe_globals', 'custom_imports_of', 'enable_amp', 'enable_compile',
    'enable_exact_resume', 'enable_lattice_inference', 'load_local_checkpoint', 'readable_checkpoint_errors',
    'register_checkpoint_safe_globals'
]
