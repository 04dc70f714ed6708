# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's convolutions: each lattice of the output (the eager path) or each cell (the exported and compiled
path) as ordinary convolutions with twice the stride, reading the input in place where they can."""
from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ._polyphase import stride2_conv2d, takes_polyphase_input_grad
from ._saved import InputCopies
from ._torch_compat import crash_free_conv2d
from ._windows import cut_window, window_source
from .lattice import cell_size, channel_blocks, plan_axis

Pieces = List[Tuple[tuple, torch.Tensor]]  # [(region of the output, its values)]

# Inputs up to this many elements (512 KiB in float32), or up to this many times their weight's size, are padded
# explicitly (see pads_explicitly).
_SMALL_INPUT_NUMEL = 1 << 17
_WEIGHT_MULTIPLE = 4


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """Every convolution SkipConv runs: a lattice's stride-2 convolution with the polyphase input gradient where
    that pays (:mod:`._polyphase`), else ``F.conv2d`` steered clear of torch's crashes (:mod:`._torch_compat`)."""
    if takes_polyphase_input_grad(x, weight, stride, padding, dilation):
        return stride2_conv2d(x, weight, bias, padding, groups)
    return crash_free_conv2d(x, weight, bias, stride, padding, dilation, groups)


def pads_explicitly(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether one padded copy of the input beats computing the border positions from strips. Each strip is a
    conv call of its own, with a fixed cost and (oneDNN) a reorder of the whole weight, so the copy wins on inputs
    that are small outright or next to their weight (deep layers: 512 channels at 25x42 has a 4x larger weight)."""
    return x.numel() <= max(_SMALL_INPUT_NUMEL, _WEIGHT_MULTIPLE * weight.numel())


def _lattice_conv(inp: torch.Tensor, stride, padding, rows: Optional[slice], cols: Optional[slice], *,
                  weight: torch.Tensor,
                  bias: Optional[torch.Tensor], dilation, groups: int, channels: Tuple[int, int],
                  memory_format: torch.memory_format, copies: InputCopies) -> List[Tuple[tuple, torch.Tensor]]:
    """Output ``channels`` (c0, c1) at output positions ``rows`` x ``cols`` (a lattice's slices) computed from
    ``inp``: ``[(region of the output, result)]``, one per block of :func:`~.lattice.channel_blocks`. Autograd
    keeps ``inp`` as its recipe if it is one of ``copies``."""
    out_channels, in_channels = weight.shape[0], weight.shape[1] * groups
    pieces = []
    for o0, o1, i0, i1, g in channel_blocks(*channels, out_channels, in_channels, groups):
        part = inp if (i0, i1) == (0, in_channels) else inp[:, i0:i1]
        if not part.is_contiguous(memory_format=memory_format):
            # A channel slice (grouped blocks) or a strided input is copied here, in the output's layout: oneDNN
            # would copy it anyway. (Crops, subsamplings and strips come from cut_window already laid out.)
            part = part.contiguous(memory_format=memory_format)
        with copies.saved_as_recipes():
            result = conv2d(part, weight[o0:o1], None if bias is None else bias[o0:o1], stride, padding, dilation, g)
        pieces.append(((slice(None), slice(o0, o1), rows, cols), result))
    return pieces


def lattice_pieces(x: torch.Tensor, phases: Sequence, ranges: Sequence[Tuple[int, int]], size, out_size, kernel,
                   stride, pads, dilation, *, weight: torch.Tensor, bias: Optional[torch.Tensor], groups: int,
                   memory_format: torch.memory_format, copies: InputCopies) -> Pieces:
    """Every kept position of the output, lattice by lattice: each lattice's main convolution reads ``x`` (of
    spatial ``size``, with implicit ``pads``) in place or a crop of it, and its few border positions that would
    need asymmetric padding come from thin padded strips."""
    source, grads = window_source(x)  # the windows' gradients then go into x's gradient in one tensor
    if source is not x:
        copies.alias(source, x)
    x = source
    pieces = []
    for phase, lattices in enumerate(phases):
        if ranges[phase][1] <= ranges[phase][0]:
            continue  # no channel keeps this phase
        conv = partial(_lattice_conv, weight=weight, bias=bias, dilation=dilation, groups=groups,
                       channels=ranges[phase], memory_format=memory_format, copies=copies)
        for a, b in lattices:
            ph, pw = (plan_axis(size[ax], kernel[ax], stride[ax], dilation[ax], pads[ax][0], out_size[ax], off)
                      for ax, off in ((0, a), (1, b)))
            if ph is None or pw is None:
                continue  # the output is too small to hold this lattice
            steps = (ph.step, pw.step)
            if ph.main and pw.main:
                if kernel == (1, 1) and ph.pad == pw.pad == 0 and (ph.step, pw.step) != (1, 1):
                    # A 1x1 kernel reads only the lattice's own pixels: subsample them (a quarter of the input,
                    # where a cropped view would be copied whole) and run a stride-1 conv.
                    rows, cols = (slice(p.crop, p.crop + p.step * (p.main - 1) + 1, p.step) for p in (ph, pw))
                    window = copies.make(cut_window, x, rows, cols, (0, 0, 0, 0), memory_format, grads)
                    pieces += conv(window, (1, 1), 0, ph.output_index(0, ph.main), pw.output_index(0, pw.main))
                else:  # (x itself when nothing is cropped: a no-op slice still costs a full copy in backward)
                    inp = (copies.make(cut_window, x, slice(ph.crop, None), slice(pw.crop, None), (0, 0, 0, 0),
                                       memory_format, grads) if ph.crop or pw.crop else x)
                    pieces += conv(inp, steps, (ph.pad, pw.pad), ph.output_index(0, ph.main),
                                   pw.output_index(0, pw.main))
            if ph.main < ph.count:  # bottom rows, full width
                h0, h1, hl, hh = ph.strip(size[0], ph.main)
                w0, w1, wl, wh = pw.strip(size[1], 0)
                strip = copies.make(cut_window, x, slice(h0, h1), slice(w0, w1), (wl, wh, hl, hh), memory_format,
                                    grads)
                pieces += conv(strip, steps, 0, ph.output_index(ph.main, ph.count), pw.output_index(0, pw.count))
            if ph.main and pw.main < pw.count:  # right columns of the main rows
                w0, w1, wl, wh = pw.strip(size[1], pw.main)
                strip = copies.make(cut_window, x, slice(ph.crop, None), slice(w0, w1), (wl, wh, 0, 0),
                                    memory_format, grads)
                pieces += conv(strip, steps, (ph.pad, 0), ph.output_index(0, ph.main),
                               pw.output_index(pw.main, pw.count))
    return pieces


def cell_conv(x: torch.Tensor, size: Tuple[int, int], kernel, stride, pads, dilation, out_size, cell: Tuple[int, int],
              channels: Tuple[int, int], **conv_kwargs) -> torch.Tensor:
    """Output ``channels`` at the positions of ``cell`` (i % 2, j % 2): one convolution with twice the stride,
    its window start moved by padding (a Pad before a Conv, which onnxruntime fuses) or, past the padding, by a
    crop; a 1x1 kernel reads just the cell's input pixels. ``conv_kwargs`` as in :func:`_lattice_conv`."""
    count = cell_size(out_size, cell)
    conv = partial(_lattice_conv, rows=None, cols=None, dilation=dilation, channels=channels, **conv_kwargs)
    if kernel == (1, 1) and not any(p for axis in pads for p in axis):
        parts = conv(x[:, :, cell[0] * stride[0]::2 * stride[0], cell[1] * stride[1]::2 * stride[1]], 1, 0)
    else:
        pad, crop = [], []
        for ax in (0, 1):  # pad (or crop) each axis so that the first window starts at 0 and the last one fits
            low = pads[ax][0] - cell[ax] * stride[ax]
            needed = (count[ax] - 1) * 2 * stride[ax] + dilation[ax] * (kernel[ax] - 1) + 1
            crop.append(max(0, -low))
            pad.append((max(0, low), max(0, needed - max(0, low) - (size[ax] - crop[-1]))))
        inp = x[:, :, crop[0]:, crop[1]:] if any(crop) else x
        if any(p for axis in pad for p in axis):
            inp = F.pad(inp, (*pad[1], *pad[0]))
        parts = conv(inp, (2 * stride[0], 2 * stride[1]), 0)
    return torch.cat([p for _, p in parts], dim=1) if len(parts) > 1 else parts[0][1]
