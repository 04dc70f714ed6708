from ._custom_op import compile_mode
from .fill import DEFAULT_FILL, FILLS, FillOp, plan_fill
from .skip_conv import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask, skip_phases

__all__ = [
    'DEFAULT_FILL', 'FILLS', 'FillOp', 'compile_mode', 'SKIP_PATTERNS', 'SkipConv2d', 'plan_fill', 'skip_conv2d',
    'skip_density', 'skip_mask', 'skip_phases'
]
