"""ONNX export of SkipConv: the cell assembly it exports equals the eager operator for every geometry and fill,
onnxruntime reproduces PyTorch through both torch.onnx exporters with no scatter ops, and the export tool checks
a config's model."""
import itertools
import random

import pytest
import torch
import torch.nn as nn

from skipconv_det import SKIP_PATTERNS, SkipConv2d, skip_conv2d
from skipconv_det.ops import FILLS, cell_assembly
from ._tiers import full, full_only

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from skipconv_det.models.export_onnx import (ModelPart, export_onnx, max_abs_difference,  # noqa: E402
                                             onnx_op_counts, onnxruntime_session)

DEMO_DENSE = 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'
# The demo detector cut to its first stage, for the tools that export whole models: the same kinds of nodes, in a
# fraction of the export's time.
FIRST_STAGE_ONLY = {'model.backbone.num_stages': 1, 'model.backbone.out_indices': (0, ),
                    'model.backbone.strides': (1, ), 'model.backbone.dilations': (1, ), 'model.neck.in_channels': [16]}


def _geometries(count, seed):
    """Random (kernel, stride, padding, dilation, groups, size) that give an output of at least 1x1."""
    rng = random.Random(seed)
    while count:
        k, s, d, p, g = rng.choice([1, 3, 5]), rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([0, 1, 2]), \
            rng.choice([1, 2, 4])
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        if min(h, w) + 2 * p - d * (k - 1) - 1 >= 0:
            count -= 1
            yield k, s, p, d, g, (h, w)


@pytest.mark.parametrize('filled_by', full_only(['convolutions', 'slices'], fast=('convolutions', )))  # ONNX, compile
@pytest.mark.parametrize('fill', full_only(FILLS, fast=('linear', )))
@pytest.mark.parametrize('shift_channels', full_only([False, True], fast=(True, )))
@pytest.mark.parametrize('pattern', full_only(SKIP_PATTERNS, fast=('grid', )))  # `make test-fast`: grid+shift
def test_exported_assembly_equals_the_operator(pattern, shift_channels, fill, filled_by):
    gen = torch.Generator().manual_seed(0)
    for k, s, p, d, g, (h, w) in _geometries(8, seed=hash((pattern, shift_channels, fill)) % 1000):
        x = torch.randn(2, 8, h, w, generator=gen)
        weight = torch.randn(4 * g, 8 // g, k, k, generator=gen)
        bias, shift = torch.randn(4 * g, generator=gen), torch.randn(4 * g, generator=gen)
        for b, sh in itertools.product((None, bias), (None, shift)):
            args = (x, weight, b, s, p, d, g, pattern, shift_channels, fill, sh)
            expected = skip_conv2d(*args)
            with cell_assembly(filled_by):
                got = skip_conv2d(*args)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5,
                                       msg=f'k={k} s={s} p={p} d={d} g={g} size={(h, w)} bias={b is not None} '
                                       f'shift={sh is not None}')


@pytest.mark.parametrize('filled_by', ['convolutions', 'slices'])
def test_exported_assembly_keeps_string_padding_and_padding_modes(filled_by):
    torch.manual_seed(0)
    for layer in (SkipConv2d(4, 6, 3, padding='same'), SkipConv2d(4, 6, 3, padding=1, padding_mode='reflect'),
                  SkipConv2d(4, 6, (3, 1), stride=(2, 1), padding=(1, 0), skip_pattern='row')):
        x = torch.randn(1, 4, 9, 8)
        with cell_assembly(filled_by):
            got = layer(x)
        torch.testing.assert_close(got, layer(x))


def _net(fill, pattern='checkerboard', shift_channels=False):
    torch.manual_seed(0)
    net = nn.Sequential(
        SkipConv2d(3, 8, 3, padding=1, bias=False, skip_pattern=pattern, shift_channels=shift_channels, fill=fill),
        nn.BatchNorm2d(8), nn.ReLU(),
        SkipConv2d(8, 8, 3, stride=2, padding=1, skip_pattern=pattern, shift_channels=shift_channels, fill=fill),
        nn.ReLU(), SkipConv2d(8, 4, 1, skip_pattern=pattern, shift_channels=shift_channels, fill=fill))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    return net.eval()


class _Tuple(nn.Module):

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return (self.net(x), )


@pytest.mark.parametrize('fill', full_only(FILLS, fast=('linear', )))
def test_onnxruntime_matches_pytorch_without_scatter(fill, tmp_path):
    module, x = _Tuple(_net(fill, 'grid', True)), torch.randn(1, 3, 13, 10)
    path = export_onnx(module, x, str(tmp_path / 'net.onnx'))
    assert max_abs_difference(module, onnxruntime_session(path), x) < 1e-5
    ops = onnx_op_counts(path)
    assert ops.get('Conv', 0) >= 3 and not {'ScatterND', 'ScatterElements', 'Scatter'} & set(ops)


@pytest.mark.parametrize('fill, convs, muls', [('linear', 2 + 4, 2), ('nearest', 2 + 1, 1), ('zero', 2, 0)])
def test_exported_fills_are_depthwise_convolutions(fill, convs, muls, tmp_path):
    """After onnxruntime's portable fusions (Pad into Conv) a checkerboard layer is its two kept convolutions,
    depthwise convolutions of them for the fills and the border maps' Muls: no Slice or Pad, which would take the
    kept cells out of onnxruntime's blocked layout."""
    import onnx
    import onnxruntime
    torch.manual_seed(0)
    module, x = _Tuple(SkipConv2d(16, 16, 3, padding=1, fill=fill).eval()), torch.randn(1, 16, 12, 10)
    path = export_onnx(module, x, str(tmp_path / 'layer.onnx'))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / 'optimized.onnx')
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    assert max_abs_difference(module, session, x) < 1e-5
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath, load_external_data=False).graph.node]
    assert ops.count('Conv') == convs and ops.count('Mul') == muls
    assert not {'Slice', 'Pad', 'ScatterND'} & set(ops)


def test_torchscript_exporter_matches_pytorch(tmp_path):
    """The TorchScript exporter translated the eager assembly's in-place fills wrongly; the cell assembly has none."""
    module, x = _Tuple(_net('linear')), torch.randn(1, 3, 12, 15)
    path = export_onnx(module, x, str(tmp_path / 'net.onnx'), dynamo=False)
    assert max_abs_difference(module, onnxruntime_session(path), x) < 1e-5


def test_model_part_selects_and_refuses(mmdet_scope):
    from mmdet.models.backbones import ResNet
    from mmengine.registry import MODELS
    detector = MODELS.build(
        dict(type='RetinaNet', backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3)),
             neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=16, start_level=0, num_outs=3),
             bbox_head=dict(type='RetinaHead', num_classes=2, in_channels=16, feat_channels=16,
                            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                                                  ratios=[1.0], strides=[8, 16, 32]),
                            bbox_coder=dict(type='DeltaXYWHBBoxCoder'))))
    x = torch.randn(1, 3, 64, 64)
    assert [o.shape[1] for o in ModelPart(detector, 'backbone+neck')(x)] == [16, 16, 16]
    assert [o.shape[1] for o in ModelPart(detector, 'backbone')(x)] == [128, 256, 512]
    with pytest.raises(ValueError, match='no neck'):
        ModelPart(nn.Module(), 'backbone+neck')
    with pytest.raises(ValueError, match='Unknown part'):
        ModelPart(ResNet(18), 'head')


@full  # the tool end to end
def test_export_tool_checks_onnxruntime(tmp_path, capsys):
    from skipconv_det.cli.export_onnx import run_export
    out = tmp_path / 'demo.onnx'
    result = run_export([
        DEMO_DENSE, '--skipconv', '--fill', 'nearest',
        '--shape', '64', '96', '--part', 'backbone', '--torchscript-exporter', '--out', str(out)
    ])
    assert out.exists() and result['part'] == 'backbone'
    assert result['max_abs_difference'] < 1e-3
    assert 'BatchNormalization' not in result['ops']  # folded first
    assert 'ScatterND' not in result['ops']
    assert f'{out}: backbone of' in capsys.readouterr().out


@full  # a benchmark run
def test_layer_benchmark_times_onnxruntime():
    from skipconv_det.analysis.layer_benchmark import benchmark_layer, format_layer_table
    rows = benchmark_layer(8, 8, 12, 10, patterns=[('checkerboard', False, 'linear'), ('grid', True, 'zero')],
                           runtime='onnxruntime', warmup=1, repeats=2)
    assert [(r['skip_pattern'], r['fill']) for r in rows] == [('checkerboard', 'linear'), ('grid', 'zero')]
    for r in rows:
        assert list(r['dense_ms']) == list(r['skip_ms']) == ['onnxruntime']
        assert r['speedup'] == pytest.approx(r['dense_ms']['onnxruntime'] / r['skip_ms']['onnxruntime'])
    table = format_layer_table(rows)
    assert 'dense onnxruntime ms' in table and 'NCHW' not in table
    with pytest.raises(ValueError, match='inference'):
        benchmark_layer(8, 8, 12, 10, runtime='onnxruntime', backward=True)


def test_onnxruntime_timing_refuses_a_wrong_export(tmp_path):
    from skipconv_det.analysis.onnxruntime_timing import onnxruntime_calls

    class Random(nn.Module):  # a different output at every call: onnxruntime cannot match it
        def forward(self, x):
            return x + torch.rand_like(x) if torch.onnx.is_in_onnx_export() else x

    with pytest.raises(RuntimeError, match='differs from PyTorch'):
        onnxruntime_calls({'random': Random()}, torch.randn(1, 2, 4, 4))


@full  # a benchmark run
def test_model_benchmark_times_onnxruntime():
    from skipconv_det.analysis.model_benchmark import benchmark_model, format_model_table
    result = benchmark_model(DEMO_DENSE, (64, 96), train=False, memory=False, onnxruntime=True, warmup=0, repeats=1,
                             cfg_options=FIRST_STAGE_ONLY)
    ort = result['onnxruntime']
    assert list(ort['dense']) == list(ort['skipconv']) == ['backbone', 'backbone+neck']
    for part in ort['dense']:
        assert ort['ratio'][part] == pytest.approx(ort['skipconv'][part] / ort['dense'][part])
    assert '| backbone+neck |' in format_model_table(result).split('onnxruntime (CPU')[1]


@full  # a profiler run
def test_onnxruntime_profile_counts_node_types_of_each_model():
    from skipconv_det.analysis.model_benchmark import profile_model_onnxruntime
    text = profile_model_onnxruntime(DEMO_DENSE, (64, 96), part='backbone', runs=1, optimize_for_inference=True,
                                     cfg_options=FIRST_STAGE_ONLY)
    header, *rows = [[cell.strip() for cell in line.strip('|').split('|')] for line in text.splitlines()
                     if line.startswith('| ')]
    assert header == ['node type', 'dense ms', 'SkipConv ms', 'SkipConv optimized ms']
    by_type = {row[0]: row[1:] for row in rows}
    assert float(by_type['Conv'][0]) > 0 and float(by_type['Conv'][2]) > 0
    for i in range(3):  # the rows add up to the total, up to their rounding
        listed = sum(float(cells[i]) for op, cells in by_type.items() if op != 'total' and cells[i] != '-')
        assert listed == pytest.approx(float(by_type['total'][i]), abs=0.05 * len(by_type))
