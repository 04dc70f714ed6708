"""The detection configs in configs/: each builds (shrunk to ResNet-18, no pretrained weights) and trains a step,
SkipConv sits exactly where the config says, and every SkipConv config differs from its dense twin only in the
conv type."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from torch import nn

from skipconv_det import SkipConv2d, skip_mask
from skipconv_det.engine import check_custom_imports, custom_imports_of
from ._tiers import full_only

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
# SkipConv config -> (its dense twin, skip_pattern, shift_channels, backbone fill, neck and RPN fill)
SKIPCONV_CONFIGS = {
    'faster-rcnn_r50-skipconv_fpn_1x_coco.py': ('faster-rcnn_r50_fpn_1x_coco.py', 'checkerboard', False, 'linear',
                                                'linear'),
    'faster-rcnn_r50-skipconv-zero_fpn_1x_coco.py': ('faster-rcnn_r50_fpn_1x_coco.py', 'checkerboard', False,
                                                     'zero', 'zero'),
    'faster-rcnn_r50-skipconv-shift_fpn_1x_coco.py': ('faster-rcnn_r50_fpn_1x_coco.py', 'checkerboard', True,
                                                      'linear', 'linear'),
    'faster-rcnn_r50-skipconv-row_fpn_1x_coco.py': ('faster-rcnn_r50_fpn_1x_coco.py', 'row', False, 'linear',
                                                    'linear'),
    'faster-rcnn_r50-skipconv-grid-shift_fpn_1x_coco.py': ('faster-rcnn_r50_fpn_1x_coco.py', 'grid', True, 'linear',
                                                           'linear'),
    'faster-rcnn_r50-scratch-skipconv_fpn_gn-all_6x_coco.py':
    ('faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py', 'checkerboard', False, 'linear', 'linear'),
    'faster-rcnn_r50-scratch-skipconv-grid-shift_fpn_gn-all_6x_coco.py':
    ('faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py', 'grid', True, 'linear', 'linear'),
}
DENSE_CONFIGS = sorted({twin for twin, *_ in SKIPCONV_CONFIGS.values()})

pytestmark = pytest.mark.usefixtures('one_thread', 'mmdet_scope')


def test_every_detection_config_is_covered():
    found = {osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py'))}
    assert found == set(SKIPCONV_CONFIGS) | set(DENSE_CONFIGS)


def _load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def _shrunk_model(cfg):
    """ResNet-18 without pretrained weights, and fewer proposals and RoIs: a CPU-sized training step."""
    model = cfg.model
    model.backbone.update(depth=18, init_cfg=None)
    model.neck.in_channels = [64, 128, 256, 512]
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    model.train_cfg.rcnn.sampler.num = 64
    return MODELS.build(model)


# `make test-fast`: a dense config, the default SkipConv one and grid+shift with GroupNorm.
@pytest.mark.parametrize('name', full_only(sorted(SKIPCONV_CONFIGS) + DENSE_CONFIGS, fast=(
    'faster-rcnn_r50_fpn_1x_coco.py', 'faster-rcnn_r50-skipconv_fpn_1x_coco.py',
    'faster-rcnn_r50-scratch-skipconv-grid-shift_fpn_gn-all_6x_coco.py')))
def test_config_builds_places_skipconv_and_trains_a_step(name):
    from mmdet.testing import demo_mm_inputs
    cfg = _load(name)
    # One custom_imports entry registers everything a config names (and is absent where it names nothing of ours).
    assert custom_imports_of(cfg) == (['skipconv_det'] if name in SKIPCONV_CONFIGS else [])
    check_custom_imports(cfg)
    torch.manual_seed(0)
    model = _shrunk_model(cfg)
    skip = {n: m for n, m in model.named_modules() if isinstance(m, SkipConv2d)}
    if name in SKIPCONV_CONFIGS:
        _, pattern, shift, backbone_fill, head_fill = SKIPCONV_CONFIGS[name]
        convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        # Backbone, neck and the RPN's shared conv skip; the RPN's predictors and the RoI head stay dense.
        expected = {n for n in convs if n.startswith(('backbone.', 'neck.'))} | {'rpn_head.rpn_conv'}
        assert set(skip) == expected
        assert {(m.skip_pattern, m.shift_channels) for m in skip.values()} == {(pattern, shift)}
        assert {(n.split('.')[0], m.fill) for n, m in skip.items()} == {
            ('backbone', backbone_fill), ('neck', head_fill), ('rpn_head', head_fill)}
    else:
        assert not skip
    inputs = demo_mm_inputs(2, [[3, 64, 96], [3, 64, 64]], num_classes=80)
    loss, _ = model.parse_losses(model(**model.data_preprocessor(inputs, True), mode='loss'))
    assert torch.isfinite(loss)


def _without_conv_type(model_cfg):
    """The model config with the conv type taken out (conv_cfg=None and RPNHead mean dense)."""
    model = model_cfg.to_dict()
    for part in ('backbone', 'neck', 'rpn_head'):
        model[part].pop('conv_cfg', None)
    model['rpn_head']['type'] = 'RPNHead'
    return model


@pytest.mark.parametrize('name', sorted(SKIPCONV_CONFIGS))
def test_skipconv_config_differs_from_its_dense_twin_only_in_conv_type(name):
    cfg, twin = _load(name), _load(SKIPCONV_CONFIGS[name][0])
    assert _without_conv_type(cfg.model) == _without_conv_type(twin.model)
    extra = {'model', 'skipconv', 'custom_imports'}
    assert set(cfg.keys()) - extra == set(twin.keys()) - extra
    for key in set(twin.keys()) - extra:
        assert cfg[key] == twin[key], key


@pytest.mark.parametrize('num_convs', [1, 2])
def test_conv_cfg_rpn_head_matches_rpn_head(num_convs):
    head = dict(in_channels=8, feat_channels=8, num_convs=num_convs,
                anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[1.0], strides=[4]))
    dense = MODELS.build(dict(head, type='RPNHead'))
    same = MODELS.build(dict(head, type='ConvCfgRPNHead'))
    skip = MODELS.build(
        dict(head, type='ConvCfgRPNHead', conv_cfg=dict(type='SkipConv', skip_pattern='row', fill='zero')))
    assert dense.state_dict().keys() == same.state_dict().keys() == skip.state_dict().keys()
    assert [type(m) for m in dense.children()] == [type(m) for m in same.children()]
    assert [type(m) for m in dense.rpn_conv.modules()] == [type(m) for m in same.rpn_conv.modules()]
    assert {n for n, m in skip.named_modules() if isinstance(m, SkipConv2d)} == (
        {'rpn_conv'} if num_convs == 1 else {'rpn_conv.0.conv', 'rpn_conv.1.conv'})
    skip.load_state_dict(dense.state_dict())
    x = torch.randn(1, 8, 6, 6)
    cls_dense, cls_skip = dense((x, ))[0][0], skip((x, ))[0][0]
    assert cls_dense.shape == cls_skip.shape and not torch.equal(cls_dense, cls_skip)
    # The shared conv computes the dense conv's values at the kept rows and exact zeros at the skipped ones.
    name = 'rpn_conv' if num_convs == 1 else 'rpn_conv.0.conv'
    out, expected = skip.get_submodule(name)(x), dense.get_submodule(name)(x)
    kept = skip_mask('row', 8, 6, 6)
    assert (out[:, ~kept] == 0).all()
    torch.testing.assert_close(out[:, kept], expected[:, kept])
