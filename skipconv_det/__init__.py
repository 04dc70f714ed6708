"""skipconv_det: SkipConv (Singh & Namboodiri, IJCNN 2020) for MMDetection.

Importing the package registers the ``SkipConv`` conv type on mmengine's root MODELS registry.
"""
from .ops import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask
from .models import PREDICTION_LAYERS, convert_skipconv, revert_skipconv  # registers 'SkipConvModel'
from .engine import checkpoint_safe_globals  # registers the safe-loading allowlist for mmengine checkpoints

__version__ = '0.1.0'

__all__ = [
    'SKIP_PATTERNS', 'SkipConv2d', 'skip_conv2d', 'skip_density', 'skip_mask', 'PREDICTION_LAYERS',
    'convert_skipconv', 'revert_skipconv', 'checkpoint_safe_globals', '__version__'
]
