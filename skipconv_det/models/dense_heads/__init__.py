"""mmdet heads (imports mmdet), registered by ``import skipconv_det`` where mmdet is installed."""
from .rpn_head import ConvCfgRPNHead

__all__ = ['ConvCfgRPNHead']
