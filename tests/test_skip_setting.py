"""The one syntax of a SkipConv setting, PATTERN[+shift][/FILL], shared by the benchmark, the study and the
planner."""
import argparse

import pytest
import torch
from mmcv.cnn import build_conv_layer

from skipconv_det import SkipConv2d
from skipconv_det.cli.benchmark import parse_pattern
from skipconv_det.models.skip_setting import SkipSetting
from skipconv_det.ops import DEFAULT_FILL, FILLS, SKIP_PATTERNS


@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('shift', [False, True])
@pytest.mark.parametrize('fill', FILLS)
def test_text_round_trip(pattern, shift, fill):
    setting = SkipSetting(pattern, shift, fill)
    assert SkipSetting.parse(str(setting)) == setting
    assert parse_pattern(str(setting)) == (pattern, shift, fill)  # the benchmark reads the same text


def test_defaults_and_short_forms():
    assert SkipSetting.parse('checkerboard') == SkipSetting() == ('checkerboard', False, DEFAULT_FILL)
    assert SkipSetting.parse('grid+shift') == ('grid', True, DEFAULT_FILL)
    assert str(SkipSetting('row', False, 'zero')) == 'row/zero'


@pytest.mark.parametrize('text', ['diagonal', 'grid+shifted', 'grid/bilinear', 'checkerboard+shift+shift',
                                  '', '/zero', 'grid:linear'])
def test_bad_text_raises_value_error_naming_the_choices(text):
    with pytest.raises(ValueError, match='PATTERN\\[\\+shift\\]\\[/FILL\\]'):
        SkipSetting.parse(text)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_pattern(text)


def test_conv_cfg_and_conversion_kwargs_build_that_setting():
    setting = SkipSetting.parse('grid+shift/nearest')
    conv = build_conv_layer(setting.conv_cfg(), 8, 8, 3, padding=1)
    assert isinstance(conv, SkipConv2d)
    assert (conv.skip_pattern, conv.shift_channels, conv.fill) == setting
    assert setting.conversion_kwargs() == dict(skip_pattern='grid', shift_channels=True, fill='nearest')
    assert conv(torch.rand(1, 8, 6, 6)).shape == (1, 8, 6, 6)
