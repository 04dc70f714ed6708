"""optimize_for_inference on the project's configs: a detector's features and predictions, a classifier's scores,
tools/test.py --optimize-for-inference, the exported ONNX graph, the benchmark's third row and torch.compile."""
import copy
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from skipconv_det.analysis.dummy_data import dummy_batch
from skipconv_det.inference import optimize_for_inference
from skipconv_det.models import fuse_conv_bn
from ._batchnorm import randomise_bn
from ._tiers import full, full_only

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
R50_FPN = osp.join(ROOT, 'configs', 'faster-rcnn_r50-skipconv_fpn_1x_coco.py')
DEMO = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_r18-w16-scratch-skipconv_fpn_1xb8-6e_synthetic-coco.py')
RESNET50_IN1K = osp.join(ROOT, 'configs', 'classification', 'resnet50-skipconv_8xb32_in1k.py')


def _build(config, scope, **model_changes):
    cfg = Config.fromfile(config)
    if model_changes:
        cfg.merge_from_dict(dict(model=model_changes))
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    model.init_weights()
    return randomise_bn(model)


def _close(got, expected, rel=1e-5):
    torch.testing.assert_close(got, expected, rtol=0, atol=rel * max(expected.abs().max().item(), 1e-12))


@pytest.mark.parametrize('config,shape,changes', [
    (DEMO, (125, 171), {}),
    # ResNet-50 at a quarter width: the same blocks, strides and stages, a fraction of the cost.
    pytest.param(R50_FPN, (100, 152), dict(backbone=dict(base_channels=16, init_cfg=None),
                                           neck=dict(in_channels=[64, 128, 256, 512])), marks=full),
], ids=['demo', 'r50-fpn'])
@pytest.mark.parametrize('layout', full_only([torch.contiguous_format, torch.channels_last],
                                             fast=(torch.channels_last, )))
def test_detector_features_and_predictions(config, shape, changes, layout, mmdet_scope):
    """Features equal to float32 precision. Predictions: a random model's proposals and NMS turn on ties of its
    scores in their last bits, so the features come from float64 backbones and necks (whose orders of summation
    agree far below float32's precision), rounded to float32 for the heads (mmcv's CPU NMS takes float32 only)."""
    model = _build(config, 'mmdet', **changes)
    reference = fuse_conv_bn(copy.deepcopy(model)).to(memory_format=layout)
    optimized = optimize_for_inference(copy.deepcopy(model)).to(memory_format=layout)
    assert optimized.lattice_regions[:3] == ('extract_feat', 'backbone', 'neck')
    inputs, samples = dummy_batch('mmdet', shape, batch_size=2, data_preprocessor=model.data_preprocessor)
    inputs = inputs.contiguous(memory_format=layout)
    with torch.no_grad():
        for e, g in zip(reference.extract_feat(inputs), optimized.extract_feat(inputs)):
            _close(g, e)
    for detector in (reference, optimized):
        detector.backbone.double(), detector.neck.double()
        extract = detector.extract_feat
        detector.extract_feat = lambda x, extract=extract: tuple(f.float() for f in extract(x.double()))
    with torch.no_grad():
        expected = reference(inputs, copy.deepcopy(samples), mode='predict')
        got = optimized(inputs, copy.deepcopy(samples), mode='predict')
    for e, g in zip(expected, got):
        e, g = e.pred_instances, g.pred_instances
        assert len(g) == len(e)
        torch.testing.assert_close(g.scores, e.scores, rtol=0, atol=1e-6)
        torch.testing.assert_close(g.bboxes, e.bboxes, rtol=0, atol=1e-4)
        assert torch.equal(g.labels, e.labels)


def test_classifier_scores():
    model = _build(RESNET50_IN1K, 'mmpretrain', backbone=dict(base_channels=16),
                   head=dict(in_channels=512))
    reference = fuse_conv_bn(copy.deepcopy(model))
    optimized = optimize_for_inference(copy.deepcopy(model))
    inputs, samples = dummy_batch('mmpretrain', (67, 91), batch_size=2, data_preprocessor=model.data_preprocessor)
    with torch.no_grad():
        expected = reference(inputs, copy.deepcopy(samples), mode='predict')
        got = optimized(inputs, copy.deepcopy(samples), mode='predict')
    for e, g in zip(expected, got):
        _close(g.pred_score, e.pred_score)


@pytest.mark.e2e
def test_test_tool_with_lattice_inference(tmp_path, mmdet_scope):
    """tools/test.py --optimize-for-inference evaluates the loaded checkpoint in the lattice domain: the same
    predictions as the plain test, and the hook says what it rewrote."""
    from skipconv_det.cli.test import run_test
    from skipconv_det.datasets import SYNTHETIC_COCO_CLASSES, generate_synthetic_coco
    data_root = str(tmp_path / 'data')
    generate_synthetic_coco(data_root, num_train=2, num_val=4, img_size=(64, 64), max_objects=2)
    config = tmp_path / 'tiny.py'
    config.write_text(f"""
_base_ = '{DEMO}'
data_root = '{data_root}/'
metainfo = dict(classes={tuple(SYNTHETIC_COCO_CLASSES)})
model = dict(roi_head=dict(bbox_head=dict(num_classes={len(SYNTHETIC_COCO_CLASSES)})))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
""")
    model = _build(str(config), 'mmdet')
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    predictions = {}
    for flags in ([], ['--optimize-for-inference']):
        out = str(tmp_path / f'preds{len(flags)}.pkl')
        run_test([str(config), checkpoint, '--work-dir', str(tmp_path / 'work'), '--out', out] + flags)
        with open(out, 'rb') as f:
            predictions[bool(flags)] = pickle.load(f)
    for e, g in zip(predictions[False], predictions[True]):
        e, g = e['pred_instances'], g['pred_instances']
        torch.testing.assert_close(g['scores'], e['scores'], rtol=0, atol=1e-4)
        torch.testing.assert_close(g['bboxes'], e['bboxes'], rtol=0, atol=1e-2)


@full
def test_exported_graph_keeps_kept_lattices(tmp_path):
    """tools/export_onnx.py --optimize-for-inference: exact in onnxruntime, and its 1x1 convolutions run on kept
    lattices (half the positions) rather than on interleaved maps."""
    from skipconv_det.cli.export_onnx import run_export
    out = str(tmp_path / 'r50.onnx')
    # The R50 cut to its first stage (3 Bottlenecks): its 1x1 convs, at a fraction of the export's time.
    result = run_export([R50_FPN, '--shape', '64', '96', '--part', 'backbone', '--out', out,
                         '--optimize-for-inference', '--cfg-options', 'model.backbone.base_channels=8',
                         'model.backbone.init_cfg=None', 'model.backbone.num_stages=1',
                         'model.backbone.out_indices=(0,)', 'model.backbone.strides=(1,)',
                         'model.backbone.dilations=(1,)', 'model.backbone.stage_with_dcn=(False,)'])
    assert result['max_abs_difference'] <= 1e-3
    import onnx
    graph = onnx.shape_inference.infer_shapes(onnx.load(out)).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    one_by_one = [n for n in graph.node if n.op_type == 'Conv'
                  and [a.ints for a in n.attribute if a.name == 'kernel_shape'][0] == [1, 1]]
    assert one_by_one
    # layer1 runs at 16x24: its kept lattices are 8x12.
    heights = {shapes[n.input[0]][2] for n in one_by_one if n.input[0] in shapes and len(shapes[n.input[0]]) == 4}
    assert 8 in heights and 16 not in heights


@full
def test_benchmark_times_the_optimized_model():
    from skipconv_det.analysis.model_benchmark import OPTIMIZED, benchmark_model, format_model_table
    result = benchmark_model(DEMO, (64, 96), train=False, memory=False, optimize_for_inference=True, warmup=0,
                             repeats=1, layouts=['channels_last'])
    assert result['fuse_bn'] and set(result[OPTIMIZED]) == set(result['dense'])
    for stage, ratio in result['optimized_ratio'].items():
        assert ratio == result[OPTIMIZED][stage]['channels_last'] / result['dense'][stage]['channels_last']
    assert 'SkipConv optimized / dense' in format_model_table(result)


@pytest.mark.e2e
def test_compiled_optimized_model_is_one_graph():
    from skipconv_det.models import convert_skipconv
    from mmdet.models.backbones import ResNet
    # Two stages: the stem, blocks with and without a downsample, and a stage's output the next stage reads.
    model = randomise_bn(convert_skipconv(ResNet(depth=18, base_channels=8, num_stages=2, strides=(1, 2),
                                                 dilations=(1, 1), out_indices=(0, 1), init_cfg=None)))
    reference = fuse_conv_bn(copy.deepcopy(model))
    optimized = optimize_for_inference(copy.deepcopy(model))
    x = torch.randn(2, 3, 38, 54)
    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(optimized, backend='aot_eager', fullgraph=True)(x)  # fullgraph: a break raises
        for e, g in zip(reference(x), got):
            _close(g, e)
