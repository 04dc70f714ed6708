# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""How one SkipConv layer skips, and the one text syntax for it that every tool reads: ``PATTERN[+shift][/FILL]``.

``checkerboard``, ``grid+shift``, ``checkerboard/zero`` and ``grid+shift/nearest`` are settings; the fill defaults
to :data:`~skipconv_det.ops.DEFAULT_FILL`. ``tools/benchmark.py layer --patterns``, the accuracy study's variants
(``tools/ablation.py``) and the planner's choices (``tools/plan.py``) all parse it with :meth:`SkipSetting.parse`.
"""
from typing import NamedTuple

from ..ops import DEFAULT_FILL, FILLS, SKIP_PATTERNS


class SkipSetting(NamedTuple):
    """A SkipConv layer's ``skip_pattern``, ``shift_channels`` and ``fill``, written ``PATTERN[+shift][/FILL]``.

    Args:
        skip_pattern (str): One of ``SKIP_PATTERNS``. Default: 'checkerboard'.
        shift_channels (bool): Shift the pattern per output-channel group. Default: False.
        fill (str): One of ``FILLS``. Default: ``DEFAULT_FILL``.

    Example:
        >>> SkipSetting.parse('grid+shift')
        SkipSetting(skip_pattern='grid', shift_channels=True, fill='linear')
        >>> str(SkipSetting('checkerboard', False, 'zero'))
        'checkerboard/zero'
    """
    skip_pattern: str = 'checkerboard'
    shift_channels: bool = False
    fill: str = DEFAULT_FILL

    @classmethod
    def parse(cls, text: str) -> 'SkipSetting':
        """Read ``PATTERN[+shift][/FILL]``.

        Raises:
            ValueError: When the pattern, the ``+shift`` suffix or the fill is not one this project defines.
        """
        head, _, fill = text.partition('/')
        pattern, _, shift = head.partition('+')
        if pattern not in SKIP_PATTERNS or shift not in ('', 'shift') or fill not in FILLS + ('', ):
            raise ValueError(f'{text!r}: use PATTERN[+shift][/FILL] with PATTERN in {", ".join(SKIP_PATTERNS)} '
                             f'and FILL in {", ".join(FILLS)} (default {DEFAULT_FILL})')
        return cls(pattern, shift == 'shift', fill or DEFAULT_FILL)

    def __str__(self) -> str:
        """The setting in the syntax :meth:`parse` reads, the fill always written out."""
        return f'{self.skip_pattern}{"+shift" if self.shift_channels else ""}/{self.fill}'

    def conversion_kwargs(self) -> dict:
        """Keyword arguments of :func:`~skipconv_det.models.convert_skipconv` and ``SkipConvModel``."""
        return dict(skip_pattern=self.skip_pattern, shift_channels=self.shift_channels, fill=self.fill)

    def conv_cfg(self) -> dict:
        """An mmcv ``conv_cfg`` that builds SkipConv layers with this setting."""
        return dict(type='SkipConv', **self.conversion_kwargs())
