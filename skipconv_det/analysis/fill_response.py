# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""How much of a fine texture a SkipConv layer's fill keeps at its skipped positions.

A layer computes its output on a lattice and fills the other positions from computed neighbours. For a plane wave
``cos(2 pi (x cos a + y sin a) / period)`` the filled values are, up to the lattice's aliasing, the wave scaled by
a gain: 1 where the fill reconstructs it, 0 where the skipped positions hold nothing of it (``'zero'``), below 0
where they hold it inverted. For checkerboard ``'linear'`` and an axis-aligned wave of frequency f = 1 / period the
gain is ``(1 + cos(2 pi f)) / 2``: a texture near the pixel period loses most of its contrast at half the
positions, one of a few pixels' period little. ``tools/fill_response.py`` prints the gains for a data set's texture
periods before anyone trains on it.
"""
import math
from typing import Dict, Sequence

import torch

from ..models.skip_setting import SkipSetting
from ..ops import SkipConv2d, skip_mask

# Positions within this many pixels of the border are left out: there the fill has fewer neighbours to read.
_BORDER = 2


def plane_wave(period: float, angle: float, size: int) -> torch.Tensor:
    """``cos(2 pi (x cos a + y sin a) / period)`` on a (1, 1, size, size) grid, ``angle`` a in degrees (0: the
    wave varies along x only)."""
    rad = math.radians(angle)
    coords = torch.arange(size, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing='ij')
    return torch.cos(2 * math.pi * (x * math.cos(rad) + y * math.sin(rad)) / period).float()[None, None]


def fill_gain(setting: SkipSetting, period: float, angle: float = 0.0, size: int = 64) -> float:
    """Least-squares gain of the values a SkipConv layer with ``setting`` holds at its skipped positions on a plane
    wave (:func:`plane_wave`) against the wave's own values there. The layer is a 1x1 identity with one output
    channel, so the gain is the fill's alone (``shift_channels`` moves other channels' lattices, not this one's)."""
    if period <= 0:
        raise ValueError(f'period must be positive, got {period}')
    layer = SkipConv2d(1, 1, 1, bias=False, **setting.conversion_kwargs())
    with torch.no_grad():
        layer.weight.fill_(1.0)
        wave = plane_wave(period, angle, size)
        filled = layer(wave)
    inner = (0, 0, slice(_BORDER, -_BORDER), slice(_BORDER, -_BORDER))
    skipped = ~skip_mask(setting.skip_pattern, 1, size, size)[0][inner[2:]]
    truth, held = wave[inner][skipped].double(), filled[inner][skipped].double()
    return float((held * truth).sum() / (truth * truth).sum())


def fill_gains(settings: Sequence[SkipSetting], periods: Sequence[float], angles: Sequence[float],
               size: int = 64) -> Dict[str, Dict[float, Dict[float, float]]]:
    """``{str(setting): {period: {angle: gain}}}`` of :func:`fill_gain`."""
    return {
        str(setting): {p: {a: fill_gain(setting, p, a, size) for a in angles} for p in periods}
        for setting in settings
    }


def format_fill_gains(gains: Dict[str, Dict[float, Dict[float, float]]]) -> str:
    """One Markdown table per setting: a row per period, a column per angle."""
    lines = []
    for setting, by_period in gains.items():
        angles = list(next(iter(by_period.values())))
        lines += [f'{setting}: gain at the skipped positions', '',
                  '| period (px) | ' + ' | '.join(f'{a:g} deg' for a in angles) + ' |',
                  '|---|' + '---|' * len(angles)]
        lines += [f'| {p:g} | ' + ' | '.join(f'{g:+.3f}' for g in row.values()) + ' |' for p, row in by_period.items()]
        lines.append('')
    return '\n'.join(lines).rstrip('\n')
