"""tools/fill_response.py: the fill's gain on a plane wave at the skipped positions, against its closed forms."""
import json
import math

import pytest
import torch

from skipconv_det.analysis.fill_response import fill_gain, plane_wave
from skipconv_det.cli.fill_response import run_fill_response
from skipconv_det.models.skip_setting import SkipSetting


@pytest.mark.parametrize('period', [2.5, 3.0, 4.0, 8.0])
@pytest.mark.parametrize('angle', [0.0, 90.0])
def test_linear_checkerboard_gain_is_the_mean_of_four_neighbours(period, angle):
    # Two of the four neighbours hold the wave itself, two it shifted by one pixel along the wave.
    expected = (1 + math.cos(2 * math.pi / period)) / 2
    assert fill_gain(SkipSetting.parse('checkerboard/linear'), period, angle) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize('period', [2.5, 4.0, 8.0])
def test_nearest_takes_the_left_neighbour(period):
    # 'nearest' reads (i, j-1) first: on a wave along x that is the wave one pixel back.
    gain = fill_gain(SkipSetting.parse('checkerboard/nearest'), period, 0.0)
    assert gain == pytest.approx(math.cos(2 * math.pi / period), abs=1e-4)


@pytest.mark.parametrize('pattern', ['checkerboard', 'row', 'grid'])
def test_zero_fill_keeps_nothing(pattern):
    assert fill_gain(SkipSetting(pattern, False, 'zero'), 3.0, 15.0) == 0.0


def test_gain_rises_towards_one_with_the_period():
    gains = [fill_gain(SkipSetting.parse('checkerboard/linear'), p, 15.0) for p in (2.5, 3.0, 4.0, 8.0, 32.0)]
    assert gains == sorted(gains)
    assert gains[-1] > 0.99 and gains[0] < 0.1


def test_plane_wave_is_constant_across_the_wave():
    wave = plane_wave(4.0, 90.0, 8)[0, 0]
    assert wave.shape == (8, 8)
    assert torch.allclose(wave, wave[:, :1].expand(8, 8), atol=1e-6)  # 90 degrees: varies along y only
    assert wave[0, 0] == pytest.approx(1.0) and wave[2, 0] == pytest.approx(-1.0, abs=1e-6)


def test_bad_period_raises():
    with pytest.raises(ValueError, match='period'):
        fill_gain(SkipSetting(), 0.0)


def test_tool_prints_a_table_per_setting_and_writes_json(tmp_path, capsys):
    out = tmp_path / 'gains.json'
    gains = run_fill_response(['checkerboard/linear', 'row/zero', '--periods', '4', '8', '--angles', '0', '45',
                               '--size', '32', '--json', str(out)])
    printed = capsys.readouterr().out
    assert 'checkerboard/linear: gain at the skipped positions' in printed and 'row/zero' in printed
    assert '| 4 | +0.500 |' in printed
    assert json.loads(out.read_text())['checkerboard/linear']['4.0']['0.0'] == pytest.approx(0.5, abs=1e-4)
    assert gains['row/zero'][8.0][45.0] == 0.0


def test_tool_refuses_an_unknown_setting(capsys):
    with pytest.raises(SystemExit):
        run_fill_response(['diamond/linear'])
    assert 'PATTERN[+shift][/FILL]' in capsys.readouterr().err
