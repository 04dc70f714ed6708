# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The adjoint of a fill, planned on the parts of an eager SkipConv output: the gradient of a filled position flows
to the kept positions it was taken from (docs/operator.md, Fills), each of which lies in one part (a lattice
convolution's results, written into its region of the output). Plain Python ranges, planned once per geometry."""
from functools import lru_cache
from typing import Sequence, Tuple

from .fill import FillPlan


def _ranges(slices: Tuple[slice, ...], sizes: Tuple[int, ...]) -> Tuple[Tuple[int, int, int], ...]:
    # As (start, stop, step): ranges compare by their elements, and the plan depends on their steps too.
    return tuple(s.indices(n) for s, n in zip(slices, sizes))


def plan_fill_adjoint(fill_plan: FillPlan, regions: Sequence[tuple], height: int, width: int) -> list:
    """``[(channels, op, [(part, index into that part, index into op's target)])]``: where the gradient of each
    fill op's targets goes among the parts (regions ``(:, channels, rows, cols)``), op by op and source by source
    (the order of an adjoint written on the whole output gradient, so each position sums in the same order)."""
    sizes = (1 << 62, height, width)
    targets = tuple((_ranges((c, op.rows, op.cols), sizes), op.offsets) for c, op in fill_plan)
    parts = tuple(_ranges(r[1:], sizes) for r in regions)
    return [(c, op, adds) for (c, op), adds in zip(fill_plan, _adjoint_adds(targets, parts)) if op.offsets]


@lru_cache(maxsize=1024)
def _adjoint_adds(targets, parts):
    plan = []
    parts = [[range(*axis) for axis in part] for part in parts]
    for target, offsets in targets:
        target = [range(*axis) for axis in target]
        adds = []
        for offset in offsets:
            shift = (0, ) + offset
            for index, part in enumerate(parts):
                meets = [_meet(range(t.start + d, t.stop + d, t.step), p) for t, p, d in zip(target, part, shift)]
                if all(meets):
                    adds.append((index, tuple(_index(m, p) for m, p in zip(meets, part)),
                                 tuple(_index(range(m.start - d, m.stop - d, m.step), t)
                                       for m, t, d in zip(meets, target, shift))))
        plan.append(tuple(adds))
    return tuple(plan)


def _meet(a: range, b: range) -> range:
    """The positions in both ``a`` and ``b`` (steps 1 or 2)."""
    if not a or not b:
        return range(0)
    step = max(a.step, b.step)
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1]) + 1
    first = next((k for k in range(lo, lo + step) if (k - a[0]) % a.step == 0 and (k - b[0]) % b.step == 0), hi)
    return range(first, hi, step)


def _index(positions: range, within: range) -> slice:
    """``positions`` (a subset of ``within``) as a slice of a tensor holding ``within``."""
    start = (positions[0] - within[0]) // within.step
    return slice(start, start + len(positions) * positions.step // within.step, positions.step // within.step)
