"""skipconv_det: SkipConv (Singh & Namboodiri, IJCNN 2020) for MMDetection.

Importing the package registers the ``SkipConv`` conv type and the ``SkipConvModel`` builder on mmengine's root
MODELS registry (visible from the mmdet and mmpretrain scopes), and allowlists the classes that mmengine
checkpoints contain for torch's safe loader, so ``resume`` and ``load_from`` work on torch >= 2.6.
"""
from .engine import register_checkpoint_safe_globals
from .models import build_skipconv_model, convert_skipconv, revert_skipconv
from .ops import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask

__version__ = '0.1.0'

__all__ = [
    'SKIP_PATTERNS', 'SkipConv2d', 'build_skipconv_model', 'convert_skipconv', 'register_checkpoint_safe_globals',
    'revert_skipconv', 'skip_conv2d', 'skip_density', 'skip_mask', '__version__'
]
