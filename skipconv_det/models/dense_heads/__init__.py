"""mmdet heads (imports mmdet): list ``skipconv_det.models.dense_heads`` in a config's ``custom_imports``."""
from .rpn_head import ConvCfgRPNHead

__all__ = ['ConvCfgRPNHead']
