"""convert_skipconv / revert_skipconv / SkipConvModel: exactness, in-place semantics, selection, errors, and a
spread of MMDetection's own zoo detectors through loss and predict after conversion."""
import copy

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import Conv2dAdaptivePadding, ConvWS2d
from mmcv.ops import DeformConv2d
from mmengine.hub import get_config
from mmengine.registry import MODELS, DefaultScope

from skipconv_det import SKIP_PATTERNS, SkipConv2d
from skipconv_det.models import PREDICTION_LAYERS, convert_skipconv, revert_skipconv
from ._reference import reference
from ._tiers import full_only

CASES = [(p, s) for p in SKIP_PATTERNS for s in (False, True)]

pytestmark = pytest.mark.usefixtures('one_thread')


class TinyNet(nn.Module):
    """Convs of several kinds, strides and kernel sizes, a ConvModule, a shared conv and non-convertible layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='BN'))
        self.proj = nn.Conv2d(8, 6, 1, bias=False)
        self.up = nn.ConvTranspose2d(6, 6, 2, stride=2)
        self.ws = ConvWS2d(6, 6, 3, padding=1)
        self.rpn_cls = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.rpn_cls(self.ws(self.up(self.proj(self.block(self.stem(x))))))


def _convs(model, cls):
    return {name for name, m in model.named_modules() if type(m) is cls}


@pytest.mark.parametrize('skip_pattern,shift_channels', CASES)
@pytest.mark.parametrize('stride,padding,dilation,groups', [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (2, 0, 1, 4)])
def test_converted_conv_matches_reference(skip_pattern, shift_channels, stride, padding, dilation, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.randn(2, 8, 11, 10)
    expected = reference(x, conv.weight, conv.bias, stride, padding, dilation, groups, skip_pattern, shift_channels)
    converted = convert_skipconv(nn.Sequential(conv), skip_pattern, shift_channels, fill='zero')[0]
    assert converted is conv and type(conv) is SkipConv2d and conv.fill == 'zero'
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_pattern_none_keeps_outputs_identical():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    convert_skipconv(model, 'none', exclude=())
    assert type(model.rpn_cls) is SkipConv2d
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize('skip_pattern,shift_channels', CASES)
def test_convert_is_in_place_and_revert_restores(skip_pattern, shift_channels):
    torch.manual_seed(0)
    model = TinyNet().double()
    model.block.eval()  # a mixed training state must survive too
    params = {name: p for name, p in model.named_parameters()}
    state = copy.deepcopy(model.state_dict())
    calls = []
    model.proj.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    expected = model(x)

    assert convert_skipconv(model, skip_pattern, shift_channels) is model
    # Converted: the plain convs, incl. ConvModule's inner conv; kept: the prediction conv, transposed and WS convs.
    assert _convs(model, SkipConv2d) == {'stem', 'block.conv', 'proj'}
    assert _convs(model, nn.Conv2d) == {'rpn_cls'}
    assert type(model.up) is nn.ConvTranspose2d and type(model.ws) is ConvWS2d
    assert all(model.get_submodule(n).skip_pattern == skip_pattern for n in ('stem', 'block.conv', 'proj'))
    assert {name: p for name, p in model.named_parameters()} == params  # the very same Parameter objects
    assert model.state_dict().keys() == state.keys()
    assert model.training and not model.block.training
    assert model.stem.weight.dtype == torch.float64
    out = model(x)
    assert calls and out.dtype == torch.float64
    if skip_pattern != 'none':
        assert not torch.equal(out, expected)

    assert revert_skipconv(model) is model
    assert not _convs(model, SkipConv2d)
    assert not hasattr(model.stem, 'skip_pattern')
    assert {name: p for name, p in model.named_parameters()} == params
    assert torch.equal(model(x), expected)


def test_state_dict_round_trip_dense_and_skipconv():
    torch.manual_seed(0)
    dense = TinyNet()
    sparse = convert_skipconv(TinyNet(), 'grid', shift_channels=True)
    sparse.load_state_dict(dense.state_dict(), strict=True)
    for key, value in dense.state_dict().items():
        assert torch.equal(sparse.state_dict()[key], value)
    torch.nn.init.normal_(sparse.stem.weight)
    dense.load_state_dict(sparse.state_dict(), strict=True)
    assert torch.equal(dense.stem.weight, sparse.stem.weight)


def test_shared_conv_is_converted_once():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.ModuleDict(dict(a=conv, b=nn.Sequential(conv)))
    convert_skipconv(model)
    assert model['a'] is model['b'][0] and type(conv) is SkipConv2d


@pytest.mark.parametrize('kwargs,converted', [
    (dict(), {'stem', 'block.conv', 'proj'}),
    (dict(exclude=()), {'stem', 'block.conv', 'proj', 'rpn_cls'}),
    (dict(include=['block.*', 'proj']), {'block.conv', 'proj'}),
    (dict(exclude=['*proj'] + list(PREDICTION_LAYERS)), {'stem', 'block.conv'}),
    (dict(kernel_sizes=[3]), {'stem', 'block.conv'}),
    (dict(kernel_sizes=[(1, 1)], exclude=()), {'proj', 'rpn_cls'}),
    (dict(strides=[2]), {'stem'}),
    (dict(scope=['block', 'proj']), {'block.conv', 'proj'}),
    (dict(scope='stem'), {'stem'}),
])
def test_selection(kwargs, converted):
    model = convert_skipconv(TinyNet(), **kwargs)
    assert _convs(model, SkipConv2d) == converted


def test_other_conv_subclasses_are_left_alone():
    model = nn.ModuleDict(
        dict(
            adaptive=Conv2dAdaptivePadding(4, 4, 3),
            deform=DeformConv2d(4, 4, 3, padding=1),
            skip=SkipConv2d(4, 4, 3, skip_pattern='row'),
            plain=nn.Conv2d(4, 4, 3)))
    convert_skipconv(model, 'grid', shift_channels=True)
    assert type(model['adaptive']) is Conv2dAdaptivePadding and type(model['deform']) is DeformConv2d
    assert model['skip'].skip_pattern == 'row' and model['plain'].skip_pattern == 'grid'


def test_bare_conv_converts():
    conv = nn.Conv2d(2, 2, 3)
    assert convert_skipconv(conv) is conv and type(conv) is SkipConv2d


@pytest.mark.parametrize('kwargs,match', [
    (dict(scope=['backbone']), r"Unknown scope 'backbone' for TinyNet; its top-level components are: stem, block"),
    (dict(include=['nothing*']), 'found no nn.Conv2d to convert in TinyNet'),
    (dict(skip_pattern='diagonal'), "Unknown skip_pattern 'diagonal'"),
])
def test_errors_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convert_skipconv(TinyNet(), **kwargs)


def test_no_convertible_conv_errors():
    with pytest.raises(ValueError, match='found no nn.Conv2d to convert in Sequential'):
        convert_skipconv(nn.Sequential(nn.Linear(2, 2), nn.ConvTranspose2d(2, 2, 3)))
    model = convert_skipconv(TinyNet(), exclude=())
    with pytest.raises(ValueError, match=r'already holds 4 SkipConv2d layer\(s\).*call revert_skipconv first'):
        convert_skipconv(model)


# MMDetection's own zoo configs (one- and two-stage, FPN/PAFPN, cascade, mask heads, anchor-free, YOLOX, SSD) and
# the convs the defaults must leave dense in each: exactly the prediction layers. (FCNMaskHead's conv_logits is
# mmcv's 'Conv' wrapper, an nn.Conv2d subclass that is left alone anyway.)
RPN = {'rpn_head.rpn_cls', 'rpn_head.rpn_reg'}
ZOO = {
    'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py': RPN,
    'retinanet/retinanet_r50_fpn_1x_coco.py': {'bbox_head.retina_cls', 'bbox_head.retina_reg'},
    'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py':
    {'bbox_head.conv_cls', 'bbox_head.conv_reg', 'bbox_head.conv_centerness'},
    'atss/atss_r50_fpn_1x_coco.py': {'bbox_head.atss_cls', 'bbox_head.atss_reg', 'bbox_head.atss_centerness'},
    'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py': RPN,
    'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py': RPN,
    'pafpn/faster-rcnn_r50_pafpn_1x_coco.py': RPN,
    'yolox/yolox_tiny_8xb8-300e_coco.py':
    {f'bbox_head.multi_level_conv_{k}.{i}' for k in ('cls', 'reg', 'obj') for i in range(3)},
    'ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py':
    {f'bbox_head.{k}_convs.{i}.1' for k in ('cls', 'reg') for i in range(6)},
}


def _fewer_proposals(cfg):
    """Cap proposals and sampled RoIs wherever a config sets them: a two-stage step then fits a CPU test."""
    if isinstance(cfg, dict):
        if 'max_per_img' in cfg:
            cfg.max_per_img = min(cfg.max_per_img, 20)
        if 'nms_pre' in cfg:
            cfg.nms_pre = min(cfg.nms_pre, 200)
        if cfg.get('sampler', {}).get('type') == 'RandomSampler':
            cfg.sampler.num = 64
        for value in cfg.values():
            _fewer_proposals(value)
    elif isinstance(cfg, list):
        for value in cfg:
            _fewer_proposals(value)


def _shrunk_model_cfg(name, num_classes=3):
    """The zoo model config, shrunk as mmdet's detector tests do (depth 18, no pretrained weights), with fewer
    proposals."""
    cfg = get_config(f'mmdet::{name}').model
    _fewer_proposals(cfg)
    backbone = cfg.backbone
    backbone.init_cfg = None
    if backbone.type == 'ResNet':
        backbone.depth = 18
        cfg.neck.in_channels = [64, 128, 256, 512]
    cfg.data_preprocessor.pop('batch_augments', None)  # YOLOX's random resize: not what this test is about
    heads = [cfg.get('bbox_head'), cfg.get('roi_head', {}).get('bbox_head'), cfg.get('roi_head', {}).get('mask_head')]
    for head in heads:
        for h in (head if isinstance(head, list) else [head]):
            if h is not None and 'num_classes' in h:
                h.num_classes = num_classes
    return cfg


def _conv_out_channels(model):
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


# What `make test-fast` takes of the zoo.
FASTER_RCNN, SSD = 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'


@pytest.mark.parametrize('name', full_only(sorted(ZOO), fast=(FASTER_RCNN, SSD)))
def test_zoo_defaults_leave_exactly_the_prediction_layers_dense(name, mmdet_scope):
    model = MODELS.build(_shrunk_model_cfg(name))
    # Convs whose width follows num_classes are class predictors, whatever their name.
    other = MODELS.build(_shrunk_model_cfg(name, num_classes=5))
    predictors = {n for n, c in _conv_out_channels(model).items() if _conv_out_channels(other)[n] != c}
    convert_skipconv(model, 'checkerboard', shift_channels=True)
    assert _convs(model, nn.Conv2d) == ZOO[name]
    skip = _convs(model, SkipConv2d)
    assert not predictors & skip
    assert {n.split('.')[0] for n in skip} >= {'backbone', 'neck'}


# mmdet 3.3's SSDHead cannot predict (its predict path reads a loss_cls it never builds), so SSD is left out here.
@pytest.mark.parametrize('name', full_only(sorted(set(ZOO) - {'ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'}),
                                          fast=(FASTER_RCNN, )))
def test_zoo_detector_loss_and_predict_after_conversion(name, mmdet_scope):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    model = convert_skipconv(MODELS.build(_shrunk_model_cfg(name)), 'checkerboard', shift_channels=True)
    with_mask = 'mask' in name
    inputs = demo_mm_inputs(2, [[3, 64, 96], [3, 64, 64]], num_classes=3, with_mask=with_mask)
    model.train()
    total, _ = model.parse_losses(model(**model.data_preprocessor(inputs, True), mode='loss'))
    assert torch.isfinite(total)
    total.backward()
    trained = [m for m in model.modules() if isinstance(m, SkipConv2d) and m.weight.requires_grad]
    assert trained and all(m.weight.grad is not None for m in trained)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(inputs, False), mode='predict')
    assert len(results) == 2 and all('pred_instances' in r for r in results)
    if with_mask:
        assert results[0].pred_instances.masks.shape[-2:] == (64, 96)


def test_skipconv_model_builder_returns_the_inner_class(mmdet_scope):
    cfg = _shrunk_model_cfg('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    preprocessor = cfg.pop('data_preprocessor')
    model = MODELS.build(
        dict(type='SkipConvModel', model=cfg, skip_pattern='row', scope=['backbone', 'rpn_head'],
             data_preprocessor=preprocessor))
    dense = MODELS.build(dict(cfg, data_preprocessor=preprocessor))
    assert type(model) is type(dense) and type(model).__name__ == 'FasterRCNN'
    assert model.state_dict().keys() == dense.state_dict().keys()
    assert type(model.data_preprocessor).__name__ == 'DetDataPreprocessor'
    skip = _convs(model, SkipConv2d)
    assert {n.split('.')[0] for n in skip} == {'backbone', 'rpn_head'}
    assert 'rpn_head.rpn_conv' in skip and 'rpn_head.rpn_cls' not in skip
    assert {model.get_submodule(n).skip_pattern for n in skip} == {'row'}


def test_skipconv_model_builder_in_mmpretrain_scope():
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = get_config('mmpretrain::resnet/resnet18_8xb16_cifar10.py')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(type='SkipConvModel', model=cfg.model, skip_pattern='grid', shift_channels=True,
                 scope=['backbone'], data_preprocessor=cfg.data_preprocessor))
        assert type(model).__name__ == 'ImageClassifier'
        assert type(model.data_preprocessor).__name__ == 'ClsDataPreprocessor'
        skip = _convs(model, SkipConv2d)
        assert 'backbone.conv1' in skip and not _convs(model.backbone, nn.Conv2d)
        out = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert out.shape == (2, 10)
