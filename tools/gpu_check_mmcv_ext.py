# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""A stand-in for mmcv's compiled ops (the module ``mmcv._ext``), for a machine that has mmcv without them.

Why: ``tools/gpu_check.sh`` runs on a GPU machine with no package registry, where mmcv comes as mmcv-lite (mmcv
2.1.0 built with ``MMCV_WITH_OPS=0``, carried by ``tools/gpu_bundle.sh``). mmdet imports ``mmcv.ops`` with its
models, and ``mmcv.ops`` imports ``mmcv._ext`` and asserts that it has every function its ops name
(``mmcv.utils.ext_loader.load_ext``). gpu_check.sh copies this file to ``mmcv/_ext.py`` in its temporary install
path only, never into an environment of yours.

What works through it: every name exists, so mmdet's backbones, necks, heads and detectors import. NMS (``offset=0``,
the only one mmdet 3.x uses) and RoIAlign (average pooling, forward and backward) run on torchvision's kernels of
the same definition (mmcv's own ``RoIAlign(use_torchvision=True)`` takes that path), so Faster R-CNN's ``predict``
and training step run. Every other mmcv op (DeformConv, CARAFE, soft-NMS, rotated boxes, RoIAlign's max pooling, NMS
with ``offset=1``, ...) raises ``NotImplementedError`` when called.

Run as a script where mmcv has its compiled ops (``make install``'s .venv), it checks itself against them.
"""


def nms(bboxes, scores, iou_threshold: float, offset: int):
    """``mmcv._ext.nms``: the indices of the kept boxes, by decreasing score."""
    if offset != 0:
        raise NotImplementedError('mmcv without compiled ops (tools/gpu_check_mmcv_ext.py): nms with offset=1')
    from torchvision.ops import nms as torchvision_nms
    return torchvision_nms(bboxes, scores, iou_threshold)


def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height: int, aligned_width: int,
                      spatial_scale: float, sampling_ratio: int, pool_mode: int, aligned: bool) -> None:
    """``mmcv._ext.roi_align_forward``: writes the pooled RoIs into ``output``."""
    _check_average_pooling(pool_mode)
    from torchvision.ops import roi_align
    # torchvision reads sampling_ratio <= 0 as mmcv reads 0: ceil(roi size / output size) samples per bin.
    output.copy_(roi_align(input, rois, (aligned_height, aligned_width), spatial_scale, sampling_ratio, aligned))


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height: int, aligned_width: int,
                       spatial_scale: float, sampling_ratio: int, pool_mode: int, aligned: bool) -> None:
    """``mmcv._ext.roi_align_backward``: writes the input's gradient into ``grad_input``."""
    _check_average_pooling(pool_mode)
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)
    import torch
    batch, channels, height, width = grad_input.shape
    # The kernel torchvision's own roi_align autograd calls: no forward recomputed to get the gradient.
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(grad_output, rois, spatial_scale, aligned_height,
                                                               aligned_width, batch, channels, height, width,
                                                               sampling_ratio, aligned))


def _check_average_pooling(pool_mode: int) -> None:
    if pool_mode != 1:  # mmcv's RoIAlignFunction: 0 is 'max', 1 is 'avg'
        raise NotImplementedError("mmcv without compiled ops (tools/gpu_check_mmcv_ext.py): RoIAlign pool_mode='max'")


def __getattr__(name: str):
    # Module attributes the import system looks up (__path__, __file__, ...) must stay missing.
    if name.startswith('__'):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        raise NotImplementedError(f'mmcv._ext.{name}: this mmcv has no compiled ops (mmcv-lite with the stand-in '
                                  'tools/gpu_check_mmcv_ext.py); only nms and RoIAlign (avg) are provided.')

    unavailable.__name__ = name
    return unavailable


def _check_against_compiled_ops() -> None:
    """The stand-in's NMS and RoIAlign (forward, backward) against mmcv's compiled ops, on random boxes."""
    import importlib.machinery
    import sys

    import torch
    from mmcv import _ext as compiled
    if not compiled.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        raise SystemExit(f'{compiled.__file__} is not mmcv\'s compiled ops: nothing to check against')
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(500, 2, generator=gen) * 200
    boxes = torch.cat([corners, corners + torch.rand(500, 2, generator=gen) * 60 + 1], dim=1)
    scores = torch.rand(500, generator=gen)
    for iou in (0.3, 0.5, 0.7):
        expected = compiled.nms(boxes, scores, iou_threshold=iou, offset=0)
        assert torch.equal(nms(boxes, scores, iou, 0), expected), f'nms differs at iou {iou}'
    feats = torch.randn(2, 8, 50, 60, generator=gen, dtype=torch.float64)
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).double(), boxes[:40].double() * 0.9], dim=1)
    grad = torch.randn(40, 8, 7, 7, generator=gen, dtype=torch.float64)
    empty = feats.new_zeros(0)
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            args = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25, sampling_ratio=sampling_ratio,
                        pool_mode=1, aligned=aligned)
            outputs, grads = [], []
            for ext in (compiled, sys.modules[__name__]):
                out, grad_in = feats.new_zeros(40, 8, 7, 7), torch.zeros_like(feats)
                ext.roi_align_forward(feats, rois, out, empty, empty, **args)
                ext.roi_align_backward(grad, rois, empty, empty, grad_in, **args)
                outputs.append(out)
                grads.append(grad_in)
            torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12, msg=f'forward {args}')
            torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12, msg=f'backward {args}')
    print('tools/gpu_check_mmcv_ext.py: nms and roi_align (forward, backward) equal mmcv\'s compiled ops')


if __name__ == '__main__':
    _check_against_compiled_ops()
