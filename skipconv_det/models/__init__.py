"""Model conversion, BN folding and ONNX export (:mod:`skipconv_det.models.export_onnx`, which needs onnx and
onnxruntime only when called). The subpackages that need a downstream library,
``skipconv_det.models.dense_heads`` (mmdet) and ``skipconv_det.models.backbones`` (mmpretrain), are imported by
``import skipconv_det`` where that library is installed."""
from .convert import PREDICTION_LAYERS, build_skipconv_model, convert_skipconv, revert_skipconv, skipconv_model_cfg
from .fuse import fuse_conv_bn

__all__ = [
    'PREDICTION_LAYERS', 'build_skipconv_model', 'convert_skipconv', 'fuse_conv_bn', 'revert_skipconv',
    'skipconv_model_cfg'
]
