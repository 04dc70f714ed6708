from .fill import FILLS
from .skip_conv import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask

__all__ = ['FILLS', 'SKIP_PATTERNS', 'SkipConv2d', 'skip_conv2d', 'skip_density', 'skip_mask']
