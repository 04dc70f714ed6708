"""SkipConv's compiled CPU fill (``skipconv_det/ops/csrc/fill.cpp``): it builds where a C++ compiler is, it writes
exactly what the PyTorch ops of :func:`apply_fill_by_torch_ops` write (bit for bit in float32 and float64) for every
pattern, fill, border and layout, eager SkipConv on the CPU runs it, and without it SkipConv gives the same
outputs."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from skipconv_det import skip_conv2d
from skipconv_det.ops import _extension
from skipconv_det.ops.fill import apply_fill, apply_fill_by_torch_ops, fill_regions, kept_cells_of
from skipconv_det.ops.lattice import _split_ranges
from skipconv_det.ops.skip_conv import _PHASES

from ._reference import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_kernel = pytest.mark.skipif(not _extension.enabled() or shutil.which('c++') is None,
                                  reason='SkipConv CPU kernels disabled or no C++ compiler')


def _regions(pattern, shift_channels, fill, channels, height, width):
    phases = _PHASES[pattern]
    ranges = (_split_ranges(channels, len(phases)) if shift_channels else [(0, channels)] + [(0, 0)] *
              (len(phases) - 1))
    return fill_regions(fill, [(r, kept_cells_of(lattices)) for r, lattices in zip(ranges, phases) if r[1] > r[0]],
                        height, width)


@needs_kernel
def test_kernel_builds_and_loads():
    assert _extension.load()
    assert _extension.fill_kernel_applies(torch.zeros(1, 1, 2, 2))
    assert not _extension.fill_kernel_applies(torch.zeros(1, 1, 2, 2, device='meta'))
    assert not _extension.fill_kernel_applies(torch.zeros(1, 2, 2))


@needs_kernel
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last], ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('fill', ['nearest', 'linear'])
@pytest.mark.parametrize('pattern,shift_channels', [('checkerboard', False), ('checkerboard', True), ('row', False),
                                                    ('col', True), ('grid', False), ('grid', True)])
def test_kernel_writes_what_the_torch_ops_write(pattern, shift_channels, fill, layout, dtype):
    torch.manual_seed(0)
    for height, width in [(7, 9), (8, 8), (1, 5), (2, 3), (13, 6), (1, 1)]:
        regions = _regions(pattern, shift_channels, fill, 7, height, width)
        out = torch.randn(2, 7, height, width, dtype=dtype).contiguous(memory_format=layout)
        shift = torch.randn(7, dtype=dtype)
        by_kernel = apply_fill(out.clone(memory_format=torch.preserve_format), regions, shift)
        by_ops = apply_fill_by_torch_ops(out.clone(memory_format=torch.preserve_format), regions, shift)
        assert by_kernel.is_contiguous(memory_format=layout)
        if dtype in (torch.float32, torch.float64):
            assert torch.equal(by_kernel, by_ops), (height, width)
        else:  # the kernel rounds once, the ops after each add
            torch.testing.assert_close(by_kernel, by_ops, atol=2e-2, rtol=2e-2)


@needs_kernel
def test_eager_skip_conv_runs_the_kernel_and_matches_the_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 12).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(6, 5, 3, 3), torch.randn(6)
    with torch.profiler.profile() as prof:
        out = skip_conv2d(x, weight, bias, 1, 1, fill='linear')
    assert 'skipconv_det::apply_fill_' in {event.key for event in prof.key_averages()}
    torch.testing.assert_close(out, reference(x, weight, bias, 1, 1, 1, 1, 'checkerboard', False, 'linear'))


@needs_kernel
def test_kernel_refuses_a_plan_outside_the_output():
    out = torch.zeros(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match='outside the output'):
        torch.ops.skipconv_det.apply_fill_(out, [0, 2, 0, 3, 2, 0, 2, 2, 1, 0, 1], [1.0])  # rows 0, 2, 4


SAME_WITHOUT_KERNEL = """
import torch
from skipconv_det import skip_conv2d
from skipconv_det.ops import _extension
torch.manual_seed(0)
x = torch.randn(1, 4, 9, 10).contiguous(memory_format=torch.channels_last)
outs = [skip_conv2d(x, torch.randn(8, 4, 3, 3), None, 1, 1, fill=f, skip_pattern=p)
        for f in ('nearest', 'linear') for p in ('checkerboard', 'grid')]
assert not _extension.load()
torch.save(outs, {path!r})
"""


def test_without_the_kernel_skip_conv_gives_the_same_outputs(tmp_path):
    """``SKIPCONV_DET_EXTENSION=0`` (or a failed build): the PyTorch ops fill, with the kernel's results."""
    path = str(tmp_path / 'outs.pt')
    env = dict(os.environ, SKIPCONV_DET_EXTENSION='0', PYTHONPATH=ROOT)
    subprocess.run([sys.executable, '-c', SAME_WITHOUT_KERNEL.format(path=path)], check=True, env=env, timeout=300)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 10).contiguous(memory_format=torch.channels_last)
    outs = [skip_conv2d(x, torch.randn(8, 4, 3, 3), None, 1, 1, fill=f, skip_pattern=p)
            for f in ('nearest', 'linear') for p in ('checkerboard', 'grid')]
    for without, here in zip(torch.load(path), outs):
        assert torch.equal(without, here)
