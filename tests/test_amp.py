"""``--amp`` on any device: enable_amp picks the optim wrapper, CPUAmpOptimWrapper trains under bfloat16 autocast
without loss scaling, and mmcv's nms and RoIAlign run under CPU autocast. (tests/test_tools.py trains a SkipConv
detector with ``tools/train.py --amp``; tests/test_skip_conv_autocast.py checks the operator under autocast.)"""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPERS

from skipconv_det.engine import CPUAmpOptimWrapper, amp, custom_imports_of, enable_amp


@pytest.mark.parametrize('device,wrapper', [('cpu', 'CPUAmpOptimWrapper'), ('cuda', 'AmpOptimWrapper')])
def test_enable_amp_picks_the_wrapper_of_the_device(device, wrapper, monkeypatch):
    monkeypatch.setattr(amp, 'get_device', lambda: device)
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1))))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == wrapper
    if device == 'cpu':  # bfloat16 needs no loss scale; the config now names a type of ours, so it imports us
        assert 'loss_scale' not in cfg.optim_wrapper and custom_imports_of(cfg) == ['skipconv_det']
    else:  # mmdet's tools/train.py --amp
        assert cfg.optim_wrapper.loss_scale == 'dynamic' and custom_imports_of(cfg) == []
    enabled = cfg.to_dict()
    enable_amp(cfg)  # already on: left as it is
    assert cfg.to_dict() == enabled


def _wrapper(model):
    return OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', optimizer=torch.optim.SGD(model.parameters(), 0.1)))


def test_cpu_wrapper_steps_float32_weights_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))
    wrapper = _wrapper(model)
    assert isinstance(wrapper, CPUAmpOptimWrapper) and not wrapper.loss_scaler.is_enabled()
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 3, 6, 6))
        assert out.dtype == torch.bfloat16
        loss = out.float().square().mean()
    wrapper.update_params(loss)
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    # What a checkpoint holds loads back (the disabled scaler's state is empty).
    state = wrapper.state_dict()
    assert state['loss_scaler'] == {}
    _wrapper(model).load_state_dict(state)


def test_cpu_wrapper_takes_only_bfloat16():
    with pytest.raises(ValueError, match='bfloat16'):
        OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', dtype='float16',
                                  optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), 0.1)))


def test_mmcv_ops_run_under_cpu_autocast():
    from mmcv.ops import RoIAlign, batched_nms
    _wrapper(nn.Linear(1, 1))  # the first wrapper makes them autocast-safe
    torch.manual_seed(0)
    feats = torch.randn(1, 4, 16, 16, requires_grad=True)
    rois = torch.tensor([[0., 1., 1., 9., 12.], [0., 4., 2., 15., 8.]])
    roi_align = RoIAlign(3, spatial_scale=1.0, sampling_ratio=2)
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores, idxs = torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long)
    nms_cfg = dict(type='nms', iou_threshold=0.5)

    reference = roi_align(feats, rois)
    reference.sum().backward()
    grad, feats.grad = feats.grad, None
    with torch.autocast('cpu', torch.bfloat16):
        out = roi_align(feats.bfloat16(), rois)  # as the feature maps of a conv under autocast
        _, keep = batched_nms(boxes.bfloat16(), scores.bfloat16(), idxs, nms_cfg)
    assert out.dtype == torch.bfloat16  # mmdet writes it into a tensor of the features' dtype
    torch.testing.assert_close(out.float(), reference, rtol=2e-2, atol=2e-2 * reference.abs().max().item())
    out.float().sum().backward()
    torch.testing.assert_close(feats.grad, grad, rtol=2e-2, atol=2e-2)
    assert keep.tolist() == batched_nms(boxes, scores, idxs, nms_cfg)[1].tolist() == [0, 2]


def test_demo_tools_take_amp():
    from skipconv_det.cli.cls_demo import parse_cls_demo_args
    from skipconv_det.cli.demo import build_demo_parser
    assert build_demo_parser().parse_args(['--amp']).amp and not build_demo_parser().parse_args([]).amp
    assert parse_cls_demo_args(['--amp']).amp and not parse_cls_demo_args([]).amp
