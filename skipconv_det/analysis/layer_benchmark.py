"""Layer speed of SkipConv2d against the faster of NCHW and channels_last nn.Conv2d, in one run.

Both layouts of the dense convolution are timed because either can win depending on the shape and the backend;
a skip convolution only counts as faster if it beats the better one.
"""
from typing import Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..ops import DEFAULT_FILL, cell_assembly, skip_conv2d, skip_density
from .complexity import measure_latencies, profile_calls
from .onnxruntime_timing import onnxruntime_calls

# (channels, height, width) of the 3x3 convs in the four ResNet-50 stages (and the FPN outputs' 256-channel
# levels) for an 800x1344 input.
SHAPE_PRESETS: Dict[str, Tuple[Tuple[int, int, int, int], ...]] = {
    # (in_channels, out_channels, height, width)
    'resnet50-3x3': ((64, 64, 200, 336), (128, 128, 100, 168), (256, 256, 50, 84), (512, 512, 25, 42)),
    'resnet50-1x1': ((256, 64, 200, 336), (64, 256, 200, 336), (512, 128, 100, 168), (1024, 256, 50, 84),
                     (2048, 512, 25, 42)),
    'fpn-3x3': ((256, 256, 200, 336), (256, 256, 100, 168), (256, 256, 50, 84), (256, 256, 25, 42)),
}
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}


def _layer_tensors(batch, in_channels, out_channels, height, width, kernel_size, device, dtype=torch.float32):
    """Seeded random (x, weight, bias) of one layer, so every run and tool times the same numbers."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_channels, height, width, generator=gen).to(device, dtype)
    weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size, generator=gen).to(device, dtype)
    bias = torch.randn(out_channels, generator=gen).to(device, dtype)
    return x, weight, bias


def _dense_conv(stride: int, padding: int):
    """``conv(x, weight, bias)``: the dense layer."""
    return lambda x, w, b: F.conv2d(x, w, b, stride, padding)


def _skip_conv(stride: int, padding: int, pattern: str, shift: bool, fill: str = DEFAULT_FILL):
    """``conv(x, weight, bias)``: the same layer as SkipConv."""
    return lambda x, w, b: skip_conv2d(x, w, b, stride, padding, 1, 1, pattern, shift, fill)


def _in_cell_assembly(conv):
    """``conv`` with SkipConv's output assembled from cells, as exported to ONNX."""

    def call(*args):
        with cell_assembly():
            return conv(*args)

    return call


class _ConvModule(torch.nn.Module):
    """``conv(x, weight, bias)`` as a module holding its weight and bias (to export it)."""

    def __init__(self, conv, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.weight, self.bias = torch.nn.Parameter(weight.clone()), torch.nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight, self.bias)


def variant_label(pattern: str, shift: bool, fill: str) -> str:
    """'grid+shift/linear': how the tables and the command line name a SkipConv variant."""
    return f"{pattern}{'+shift' if shift else ''}/{fill}"


def _conv_call(conv, x, weight, bias, backward: bool):
    """A no-argument call of ``conv(x, weight, bias)`` to time: under no_grad, or with its backward pass."""
    if not backward:
        return torch.no_grad()(lambda: conv(x, weight, bias))
    x, weight, bias = (t.detach().requires_grad_() for t in (x, weight, bias))
    grad = torch.randn_like(conv(x, weight, bias))

    def step():
        out = conv(x, weight, bias)
        x.grad = weight.grad = bias.grad = None
        out.backward(grad)

    return step


def benchmark_layer(in_channels: int,
                    out_channels: int,
                    height: int,
                    width: int,
                    kernel_size: int = 3,
                    stride: int = 1,
                    patterns: Sequence[Tuple[str, bool, str]] = (('checkerboard', False, DEFAULT_FILL),
                                                                 ('grid', True, DEFAULT_FILL)),
                    backward: bool = False,
                    batch: int = 1,
                    device: str = 'cpu',
                    dtype: torch.dtype = torch.float32,
                    runtime: str = 'torch',
                    **timing) -> List[dict]:
    """Time one layer shape: dense and each (pattern, shift_channels, fill), each in both layouts, in turns.
    With ``runtime='onnxruntime'`` each is exported to ONNX and timed in onnxruntime instead (forward only, its
    own layout: the column 'onnxruntime').

    Args:
        in_channels, out_channels, height, width, kernel_size, stride: The layer and its input size.
        patterns: ``(skip_pattern, shift_channels, fill)`` variants to time.
        backward (bool): Time forward + backward (input, weight and bias gradients). Default: False.
        batch (int): Batch size. Default: 1.
        device (str): 'cpu' or 'cuda'. Default: 'cpu'.
        dtype (torch.dtype): Default: float32.
        runtime (str): 'torch', 'torch-cells' or 'onnxruntime'. Default: 'torch'.
        **timing: ``warmup``, ``repeats``, ``num_threads`` of :func:`measure_latencies`.

    Returns:
        list[dict]: One row per pattern with the dense and skip times (ms, median) per layout, the speedup of
        the best skip layout over the best dense layout, and the density limit ``1 / density``.
    """
    x, weight, bias = _layer_tensors(batch, in_channels, out_channels, height, width, kernel_size, device, dtype)
    padding = kernel_size // 2
    convs = {'dense': _dense_conv(stride, padding)}
    convs.update({variant: _skip_conv(stride, padding, *variant) for variant in map(tuple, patterns)})
    if runtime == 'onnxruntime':
        if backward or x.device.type != 'cpu':
            raise ValueError('The onnxruntime benchmark times CPU inference: drop --backward and --device.')
        layouts = ('onnxruntime', )
        calls = onnxruntime_calls({(name, 'onnxruntime'): _ConvModule(conv, weight, bias)
                                   for name, conv in convs.items()}, x, timing.get('num_threads'))
    else:
        # Every candidate in every layout (weight included, as model.to(memory_format=...) leaves it), in turns.
        layouts = tuple(LAYOUTS)
        if runtime == 'torch-cells':
            convs = {name: conv if name == 'dense' else _in_cell_assembly(conv) for name, conv in convs.items()}
        calls = {(name, layout): _conv_call(conv, x.contiguous(memory_format=fmt),
                                            weight.contiguous(memory_format=fmt), bias, backward)
                 for name, conv in convs.items() for layout, fmt in LAYOUTS.items()}
    times = {key: t['median_ms'] for key, t in measure_latencies(calls, device=x.device, **timing).items()}

    def by_layout(name):
        return {layout: times[name, layout] for layout in layouts}

    dense = by_layout('dense')
    rows = []
    for pattern, shift, fill in map(tuple, patterns):
        skip = by_layout((pattern, shift, fill))
        rows.append(
            dict(
                shape=(in_channels, out_channels, height, width),
                kernel_size=kernel_size,
                stride=stride,
                batch=batch,
                mode='fwd+bwd' if backward else 'fwd',
                skip_pattern=pattern,
                shift_channels=shift,
                fill=fill,
                dense_ms=dense,
                skip_ms=skip,
                speedup=min(dense.values()) / min(skip.values()),
                limit=1 / skip_density(pattern)))
    return rows


def profile_layer(in_channels: int,
                  out_channels: int,
                  height: int,
                  width: int,
                  kernel_size: int = 3,
                  stride: int = 1,
                  skip_pattern: str = 'checkerboard',
                  shift_channels: bool = False,
                  fill: str = DEFAULT_FILL,
                  layout: str = 'channels_last',
                  backward: bool = False,
                  batch: int = 1,
                  device: str = 'cpu',
                  runs: int = 3,
                  top: int = 8) -> str:
    """Where one layer's time goes: torch.profiler's ops by self time (per call, averaged over ``runs`` after a
    warm-up), for SkipConv and for the dense convolution in the same layout, as two tables."""
    x, weight, bias = _layer_tensors(batch, in_channels, out_channels, height, width, kernel_size, device)
    x, weight = (t.contiguous(memory_format=LAYOUTS[layout]) for t in (x, weight))
    padding = kernel_size // 2
    tables = []
    for name, conv in (('SkipConv ' + variant_label(skip_pattern, shift_channels, fill),
                        _skip_conv(stride, padding, skip_pattern, shift_channels, fill)),
                       ('dense', _dense_conv(stride, padding))):
        prof = profile_calls(_conv_call(conv, x, weight, bias, backward), runs, device, record_shapes=True)
        table = prof.key_averages(group_by_input_shape=True).table(sort_by='self_cpu_time_total', row_limit=top)
        tables.append(f'## {name}, {in_channels}->{out_channels} @ {height}x{width}, {layout}, '
                      f'{"fwd+bwd" if backward else "fwd"}, {runs} calls (times are totals over them)\n{table}')
    return '\n'.join(tables)


def benchmark_layers(shapes: Iterable[Tuple[int, int, int, int]], kernel_size: int = 3, **kwargs) -> List[dict]:
    """:func:`benchmark_layer` over ``(in_channels, out_channels, height, width)`` shapes."""
    rows = []
    for cin, cout, h, w in shapes:
        rows += benchmark_layer(cin, cout, h, w, kernel_size, **kwargs)
    return rows


def format_layer_table(rows: List[dict]) -> str:
    """A markdown table of :func:`benchmark_layer` rows (a column per layout, or one for onnxruntime)."""
    layouts = list(rows[0]['dense_ms']) if rows else list(LAYOUTS)
    names = {'nchw': 'NCHW', 'channels_last': 'CL', 'onnxruntime': 'onnxruntime'}
    lines = [
        '| layer (Cin→Cout @ HxW, k, s) | pass | pattern | ' +
        ' | '.join(f'{who} {names[layout]} ms' for who in ('dense', 'skip') for layout in layouts) +
        ' | speedup vs best dense | limit |', '|' + '---|' * (5 + 2 * len(layouts))
    ]
    for r in rows:
        cin, cout, h, w = r['shape']
        pattern = variant_label(r['skip_pattern'], r['shift_channels'], r['fill'])
        times = ' | '.join(f"{r[who][layout]:.1f}" for who in ('dense_ms', 'skip_ms') for layout in layouts)
        lines.append(f"| {cin}→{cout} @ {h}x{w}, {r['kernel_size']}x{r['kernel_size']}, s{r['stride']} "
                     f"| {r['mode']} | {pattern} | {times} | ×{r['speedup']:.2f} | ×{r['limit']:.0f} |")
    return '\n'.join(lines)


def plot_speedups(rows: List[dict], path: str, title: str = '') -> None:
    """Save a bar chart of each row's speedup beside its density limit (1 / density)."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt

    labels = [f"{r['shape'][0]}→{r['shape'][1]}@{r['shape'][2]}x{r['shape'][3]}\n"
              f"{variant_label(r['skip_pattern'], r['shift_channels'], r['fill'])} {r['mode']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
    ax.bar([x - 0.2 for x in xs], [r['limit'] for r in rows], 0.4, label='limit (1 / density)', color='#cccccc')
    ax.bar([x + 0.2 for x in xs], [r['speedup'] for r in rows], 0.4, label='SkipConv vs best dense', color='#3b75af')
    ax.axhline(1.0, color='black', linewidth=0.8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel('speedup (×)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
