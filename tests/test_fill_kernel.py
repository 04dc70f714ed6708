"""SkipConv's compiled CPU kernels (``skipconv_det/ops/csrc/``): they build where a C++ compiler is, the
fill writes exactly what the PyTorch ops of :func:`apply_fill_by_torch_ops` write (bit for bit in float32 and
float64) for every pattern, fill, border and layout, eager SkipConv on the CPU runs them (in NCHW the whole output
plane by plane), and without them SkipConv gives the same outputs."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from skipconv_det import skip_conv2d
from skipconv_det.ops import _extension, _kernels
from skipconv_det.ops._fill_in_place import apply_fill, apply_fill_by_torch_ops
from skipconv_det.ops.fill import plan_output_fill
from skipconv_det.ops.patterns import kept_cells_of, skip_phases, split_ranges

from ._reference import reference
from ._tiers import full, full_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_kernel = pytest.mark.skipif(not _extension.enabled() or shutil.which('c++') is None,
                                  reason='SkipConv CPU kernels disabled or no C++ compiler')


def _regions(pattern, shift_channels, fill, channels, height, width):
    phases = skip_phases(pattern)
    ranges = (split_ranges(channels, len(phases)) if shift_channels else [(0, channels)] + [(0, 0)] *
              (len(phases) - 1))
    return plan_output_fill(fill, [(r, kept_cells_of(lattices)) for r, lattices in zip(ranges, phases) if r[1] > r[0]],
                        height, width)


@needs_kernel
def test_kernel_builds_and_loads():
    assert _extension.load()
    assert _kernels.kernels_apply(torch.zeros(1, 1, 2, 2))
    assert not _kernels.kernels_apply(torch.zeros(1, 1, 2, 2, device='meta'))
    assert not _kernels.kernels_apply(torch.zeros(1, 2, 2))


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
    assert 'skipconv_det::fill_in_place' in {event.key for event in prof.key_averages()}
    torch.testing.assert_close(out, reference(x, weight, bias, 1, 1, 1, 1, 'checkerboard', False, 'linear'))


@needs_kernel
@pytest.mark.parametrize('pattern,shift_channels', [('checkerboard', False), ('grid', True), ('row', False)])
def test_nchw_output_is_assembled_plane_by_plane(pattern, shift_channels):
    """In NCHW the parts and the fill are written by one kernel call, with what the separate writes give."""
    torch.manual_seed(0)
    x, weight, shift = torch.randn(2, 5, 11, 12), torch.randn(6, 5, 3, 3), torch.randn(6)
    with torch.profiler.profile() as prof:
        out = skip_conv2d(x, weight, None, 1, 1, skip_pattern=pattern, shift_channels=shift_channels,
                          fill='linear', shift=shift)
    assert 'skipconv_det::assemble_nchw' in {event.key for event in prof.key_averages()}
    expected = reference(x, weight, None, 1, 1, 1, 1, pattern, shift_channels, 'linear') + shift.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected)


@needs_kernel
@pytest.mark.parametrize('shape,kernel,stride,padding,pads_explicitly', [
    ((2, 5, 11, 12), 3, 1, 1, True), ((1, 4, 37, 41), 3, 1, 1, False), ((2, 6, 9, 14), 1, 1, 0, True),
    ((1, 3, 17, 16), 3, 2, 1, False)], ids=['padded copy', 'border strips', '1x1', 'strided'])
@pytest.mark.parametrize('pattern,shift_channels', [('checkerboard', False), ('grid', True), ('col', True)])
@pytest.mark.parametrize('fill', full_only(['nearest', 'linear'], fast=('linear', )))
@pytest.mark.parametrize('dtype', full_only([torch.float32, torch.float64], fast=(torch.float32, )))
def test_nchw_backward_by_planes_gives_the_torch_ops_gradients(monkeypatch, shape, kernel, stride, padding,
                                                               pads_explicitly, pattern, shift_channels, fill, dtype):
    """The NCHW output and its parts' gradients with the fill's adjoint, one plane at a time, bit for bit as the
    PyTorch ops."""
    from skipconv_det.ops import _paths
    monkeypatch.setattr(_paths, 'pads_explicitly', lambda x, weight: pads_explicitly)
    torch.manual_seed(0)
    x, weight, bias = (torch.randn(*size, dtype=dtype) for size in (shape, (7, shape[1], kernel, kernel), (7, )))
    grads = []
    for kernels in (True, False):
        if not kernels:
            monkeypatch.setattr(_kernels, 'kernels_apply', lambda t: False)
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        with torch.profiler.profile() as prof:
            out = skip_conv2d(*leaves, stride, padding, skip_pattern=pattern, shift_channels=shift_channels,
                              fill=fill)
            out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype))
        ran = 'skipconv_det::disassemble_nchw' in {event.key for event in prof.key_averages()}
        assert ran == kernels
        grads.append([out.detach()] + [t.grad for t in leaves])
    for by_kernel, by_ops in zip(*grads):
        assert torch.equal(by_kernel, by_ops)


@needs_kernel
def test_assembly_refuses_a_part_that_does_not_fit_its_region():
    out, part = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 2, 3)
    kernels = _extension.module()
    region = kernels.Region(channel_start=0, channel_stop=2, row_start=0, rows=2, row_step=2, col_start=0, cols=2,
                            col_step=2)
    with pytest.raises(RuntimeError, match='does not match its region'):
        kernels.assemble_nchw(out, [part], [region], [], None)
    with pytest.raises(RuntimeError, match='does not match its region'):
        kernels.disassemble_nchw(out, [part], [region], [])


@needs_kernel
def test_kernel_refuses_a_plan_outside_the_output():
    out = torch.zeros(1, 2, 4, 4)
    kernels = _extension.module()
    rows_0_2_4 = kernels.Region(channel_start=0, channel_stop=2, row_start=0, rows=3, row_step=2, col_start=0,
                                cols=2, col_step=2)
    with pytest.raises(RuntimeError, match='outside the output'):
        kernels.fill_in_place(out, [kernels.FillRecord(target=rows_0_2_4, offsets=[(0, 1)], weight=1.0)])


SAME_WITHOUT_KERNEL = """
import torch
from skipconv_det import skip_conv2d
from skipconv_det.ops import _extension
torch.manual_seed(0)
outs = [skip_conv2d(torch.randn(1, 4, 9, 10).contiguous(memory_format=layout), torch.randn(8, 4, 3, 3), None, 1, 1,
                   fill=f, skip_pattern=p, shift=torch.randn(8))
        for layout in (torch.contiguous_format, torch.channels_last) for f in ('nearest', 'linear')
        for p in ('checkerboard', 'grid')]
assert not _extension.load()
torch.save(outs, {path!r})
"""


@full  # a subprocess
def test_without_the_kernel_skip_conv_gives_the_same_outputs(tmp_path):
    """``SKIPCONV_DET_EXTENSION=0`` (or a failed build): the PyTorch ops fill, with the kernel's results."""
    path = str(tmp_path / 'outs.pt')
    env = dict(os.environ, SKIPCONV_DET_EXTENSION='0', PYTHONPATH=ROOT)
    subprocess.run([sys.executable, '-c', SAME_WITHOUT_KERNEL.format(path=path)], check=True, env=env, timeout=300)
    torch.manual_seed(0)
    outs = [skip_conv2d(torch.randn(1, 4, 9, 10).contiguous(memory_format=layout), torch.randn(8, 4, 3, 3), None, 1,
                        1, fill=f, skip_pattern=p, shift=torch.randn(8))
            for layout in (torch.contiguous_format, torch.channels_last) for f in ('nearest', 'linear')
            for p in ('checkerboard', 'grid')]
    assert len(outs) == 8
    for without, here in zip(torch.load(path), outs):
        assert torch.equal(without, here)
