from ._cells import cell_assembly
from ._custom_op import compile_mode
from .fill import DEFAULT_FILL, FILLS, FillOp, plan_fill
from .patterns import SKIP_PATTERNS, skip_density, skip_mask, skip_phases
from .skip_conv import SkipConv2d, skip_conv2d

__all__ = [
    'DEFAULT_FILL', 'FILLS', 'FillOp', 'cell_assembly', 'compile_mode', 'SKIP_PATTERNS', 'SkipConv2d', 'plan_fill',
    'skip_conv2d', 'skip_density', 'skip_mask', 'skip_phases'
]
