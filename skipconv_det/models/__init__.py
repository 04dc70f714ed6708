"""Model conversion. Subpackages that need a downstream library are imported by the configs that use them
(``custom_imports``), so ``import skipconv_det`` imports neither mmdet nor mmpretrain:
``skipconv_det.models.dense_heads`` (mmdet) and ``skipconv_det.models.backbones`` (mmpretrain)."""
from .convert import (PREDICTION_LAYERS, build_skipconv_model, convert_skipconv, revert_skipconv,
                      skipconv_model_cfg)
from .fuse import fuse_conv_bn

__all__ = [
    'PREDICTION_LAYERS', 'build_skipconv_model', 'convert_skipconv', 'fuse_conv_bn', 'revert_skipconv',
    'skipconv_model_cfg'
]
