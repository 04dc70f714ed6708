# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Turn the plain convolutions of a built model into ``SkipConv2d`` and back.

Configs reach the convs that are built through ``conv_cfg``, but many are not: heads hard-code ``nn.Conv2d``
(e.g. ``RPNHead.rpn_conv``) and most zoo configs never set ``conv_cfg``. ``convert_skipconv`` works on the built
model instead, like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` and mmengine's ``revert_sync_batchnorm``,
and ``SkipConvModel`` does the same from a config, so any model config becomes a SkipConv one without editing it.

A conv is converted in place: the module object itself becomes a ``SkipConv2d`` (its class is swapped, which is
sound because ``SkipConv2d`` adds no parameters, buffers or submodules, only two attributes). So its Parameters,
state_dict keys, hooks (e.g. spectral norm), device, dtype, training mode and every reference to it held elsewhere
stay exactly as they were, and an optimizer built before the conversion still updates the right tensors.
"""
from fnmatch import fnmatchcase
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.registry import MODELS
from torch.nn.modules.utils import _pair

from ..ops import DEFAULT_FILL, SkipConv2d, skip_density
from ..ops.fill import check_fill

# Layers that predict the outputs (class scores, box deltas, centerness, mask logits) stay dense by default: they
# are cheap 1x1/3x3 convs at the end of a head, and a zero at a skipped position there would be a missing
# prediction rather than a cheaper feature. Patterns are fnmatch patterns on qualified module names.
PREDICTION_LAYERS: Tuple[str, ...] = (
    '*rpn_cls', '*rpn_reg',  # RPNHead
    '*conv_cls', '*conv_reg', '*conv_centerness',  # AnchorHead, FCOS and other AnchorFreeHeads
    '*retina_cls', '*retina_reg',  # RetinaHead, FreeAnchor, FSAF
    '*atss_cls', '*atss_reg', '*atss_centerness',  # ATSSHead
    '*gfl_cls', '*gfl_reg',  # GFLHead
    '*vfnet_cls', '*vfnet_reg', '*vfnet_reg_refine',  # VFNetHead
    '*rtm_cls*', '*rtm_reg*', '*rtm_obj*', '*rtm_kernel*',  # RTMDet heads (one conv, or one per level)
    '*multi_level_conv_cls.*', '*multi_level_conv_reg.*', '*multi_level_conv_obj.*',  # YOLOXHead
    '*convs_pred.*',  # YOLOV3Head
    '*cls_convs.[0-9].[0-9]', '*reg_convs.[0-9].[0-9]',  # SSDHead: the last conv of each level's Sequential
    '*conv_logits',  # FCNMaskHead and other mask heads
    '*heatmap_head.2', '*wh_head.2', '*offset_head.2',  # CenterNetHead: the 1x1 after each branch's 3x3
)

IntOrPair = Union[int, Tuple[int, int]]


def _is_plain_conv(module: nn.Module) -> bool:
    # Only an exact nn.Conv2d computes a plain convolution. Subclasses change the forward (mmcv's ConvWS2d,
    # Conv2dAdaptivePadding, SAConv2d, its empty-input 'Conv' wrapper) or already skip (SkipConv2d), and
    # transposed or deformable convs are not nn.Conv2d at all: all of those are left as they are.
    return type(module) is nn.Conv2d


def _as_pairs(values: Optional[Iterable[IntOrPair]]) -> Optional[List[Tuple[int, int]]]:
    return None if values is None else [_pair(v) for v in values]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def _iter_plain_convs(module: nn.Module) -> Iterator[Tuple[str, nn.Conv2d]]:
    for name, child in module.named_modules():
        if _is_plain_conv(child):
            yield name, child


def _check_scope(module: nn.Module, scope: Sequence[str]) -> None:
    valid = [name for name, _ in module.named_children()]
    unknown = [s for s in scope if s not in valid]
    if unknown:
        raise ValueError(f'Unknown scope {", ".join(map(repr, unknown))} for {type(module).__name__}; its '
                         f'top-level components are: {", ".join(valid) or "(none)"}. Pass some of those as '
                         'scope, or scope=None for the whole model.')


def convert_skipconv(module: nn.Module,
                     skip_pattern: str = 'checkerboard',
                     shift_channels: bool = False,
                     scope: Optional[Sequence[str]] = None,
                     include: Optional[Sequence[str]] = None,
                     exclude: Sequence[str] = PREDICTION_LAYERS,
                     kernel_sizes: Optional[Iterable[IntOrPair]] = None,
                     strides: Optional[Iterable[IntOrPair]] = None,
                     fill: str = DEFAULT_FILL) -> nn.Module:
    """Turn the selected ``nn.Conv2d`` layers of ``module`` into ``SkipConv2d``, in place.

    Every exact ``nn.Conv2d`` is a candidate (including hard-coded ones such as ``RPNHead.rpn_conv`` and the
    ``.conv`` inside mmcv's ``ConvModule``); nn.Conv2d subclasses, transposed and deformable convs are left alone
    because their forward is not a plain convolution. Module names are the qualified names of
    ``module.named_modules()`` (e.g. ``'rpn_head.rpn_conv'``, ``'backbone.layer1.0.conv1'``), matched with
    ``fnmatch`` patterns where ``*`` also crosses dots (``'backbone.layer[34].*'``, ``'*rpn_conv'``). A conv is
    converted when it passes every given filter.

    Args:
        module (nn.Module): The model (or any module) to convert; a bare ``nn.Conv2d`` works too.
        skip_pattern (str): 'checkerboard', 'row', 'col', 'grid' or 'none'. Default: 'checkerboard'.
        shift_channels (bool): Shift the pattern per output-channel group (see ``SkipConv2d``); use it with
            'grid'. Default: False.
        scope (Sequence[str], optional): Names of top-level components to convert, e.g.
            ``['backbone', 'neck', 'rpn_head']``. Default: None (all).
        include (Sequence[str], optional): Convert only convs whose name matches one of these patterns.
            Default: None (all).
        exclude (Sequence[str]): Never convert convs whose name matches one of these patterns.
            Default: ``PREDICTION_LAYERS`` (the final prediction convs of mmdet's heads); pass ``()`` to convert
            those too.
        kernel_sizes (Iterable[int | tuple[int, int]], optional): Convert only these kernel sizes (``3`` means
            3x3). Default: None (all).
        strides (Iterable[int | tuple[int, int]], optional): Convert only these strides. Default: None (all).
        fill (str): What skipped positions hold: 'zero', 'nearest' or 'linear' (see ``SkipConv2d``).
            Default: ``DEFAULT_FILL`` ('linear').

    Returns:
        nn.Module: ``module`` itself (its convs now ``SkipConv2d``), like ``convert_sync_batchnorm``.

    Raises:
        ValueError: On an unknown pattern or scope, or when nothing is selected for conversion.
    """
    skip_density(skip_pattern)  # raises on an unknown pattern, naming the valid ones
    check_fill(fill)
    if scope is not None:
        scope = [scope] if isinstance(scope, str) else list(scope)
        _check_scope(module, scope)
    kernel_pairs, stride_pairs = _as_pairs(kernel_sizes), _as_pairs(strides)

    selected = []
    for name, conv in _iter_plain_convs(module):
        if scope is not None and name.split('.', 1)[0] not in scope:
            continue
        if include is not None and not _matches(name, include):
            continue
        if _matches(name, exclude):
            continue
        if kernel_pairs is not None and tuple(conv.kernel_size) not in kernel_pairs:
            continue
        if stride_pairs is not None and tuple(conv.stride) not in stride_pairs:
            continue
        selected.append(conv)
    if not selected:
        already = sum(isinstance(m, SkipConv2d) for m in module.modules())
        hint = (f' It already holds {already} SkipConv2d layer(s) (from conv_cfg or an earlier conversion): start '
                'from a dense model, or call revert_skipconv first.' if already else '')
        raise ValueError(f'convert_skipconv found no nn.Conv2d to convert in {type(module).__name__} with '
                         f'scope={scope}, include={include}, kernel_sizes={kernel_sizes}, strides={strides} and '
                         f'{len(exclude)} exclude pattern(s).{hint} Widen the selection (e.g. exclude=()).')
    for conv in selected:
        conv.__class__ = SkipConv2d
        conv.register_buffer('shift', None)
        conv.skip_pattern = skip_pattern
        conv.shift_channels = shift_channels
        conv.fill = fill
    return module


def revert_skipconv(module: nn.Module) -> nn.Module:
    """Turn every ``SkipConv2d`` in ``module`` back into a plain ``nn.Conv2d``, in place.

    The inverse of :func:`convert_skipconv` (it also reverts SkipConv2d layers built from ``conv_cfg``): the same
    module objects and Parameters, the same state_dict (a BN folded into a SkipConv, whose shift
    a plain conv adds with its bias, becomes the conv's bias).

    Args:
        module (nn.Module): The model to revert.

    Returns:
        nn.Module: ``module`` itself.
    """
    for conv in module.modules():
        if type(conv) is SkipConv2d:
            del conv.skip_pattern, conv.shift_channels, conv.fill
            shift = conv._buffers.pop('shift', None)
            conv.__class__ = nn.Conv2d
            if shift is not None:  # a folded BN's shift: a plain conv adds it everywhere with its bias
                conv.bias = nn.Parameter(shift if conv.bias is None else conv.bias.detach() + shift)
    return module


@MODELS.register_module('SkipConvModel')
def build_skipconv_model(model: dict,
                         skip_pattern: str = 'checkerboard',
                         shift_channels: bool = False,
                         scope: Optional[Sequence[str]] = None,
                         include: Optional[Sequence[str]] = None,
                         exclude: Sequence[str] = PREDICTION_LAYERS,
                         kernel_sizes: Optional[Iterable[IntOrPair]] = None,
                         strides: Optional[Iterable[IntOrPair]] = None,
                         fill: str = DEFAULT_FILL,
                         data_preprocessor: Optional[dict] = None) -> nn.Module:
    """Build ``model`` in the current default scope and convert its convs with :func:`convert_skipconv`.

    Registered on mmengine's root MODELS registry, so it works from any scope (mmdet, mmpretrain, ...)::

        model = dict(type='SkipConvModel', model=dict(type='FasterRCNN', ...),
                     skip_pattern='checkerboard', scope=['backbone', 'neck', 'rpn_head'])

    It returns the inner model itself (e.g. a ``FasterRCNN``), not a wrapper, so state_dict keys, checkpoints and
    hooks that look at the model's class are unchanged.

    Args:
        model (dict): Config of the model to build.
        skip_pattern, shift_channels, scope, include, exclude, kernel_sizes, strides, fill: As in
            :func:`convert_skipconv`.
        data_preprocessor (dict, optional): A top-level ``data_preprocessor`` that mmengine's Runner hands to the
            model config (mmpretrain configs keep it there); forwarded to the inner model unless it sets its own.

    Returns:
        nn.Module: The built model with its selected convs turned into ``SkipConv2d``.
    """
    model = dict(model)
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    return convert_skipconv(MODELS.build(model), skip_pattern, shift_channels, scope, include, exclude,
                            kernel_sizes, strides, fill)


def skipconv_model_cfg(model: dict, **kwargs) -> ConfigDict:
    """The config of ``model`` turned into SkipConv: ``dict(type='SkipConvModel', model=model, **kwargs)``.

    Args:
        model (dict): A model config, e.g. ``cfg.model`` of any mmdet or mmpretrain config.
        **kwargs: Arguments of :func:`build_skipconv_model` (skip_pattern, shift_channels, fill, scope, ...).

    Returns:
        ConfigDict: A model config to put in place of ``model``.
    """
    return ConfigDict(type='SkipConvModel', model=model, **kwargs)
