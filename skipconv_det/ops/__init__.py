from ._custom_op import compile_mode
from .fill import FILLS
from .skip_conv import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask

__all__ = ['FILLS', 'compile_mode', 'SKIP_PATTERNS', 'SkipConv2d', 'skip_conv2d', 'skip_density', 'skip_mask']
