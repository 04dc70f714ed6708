"""Whole-model speed, dense vs SkipConv: per component in inference, and one training step.

Each model runs in NCHW and in channels_last and the faster layout counts, as in the layer benchmark. The stages
are nested prefixes of the forward (backbone, backbone + neck, full inference with post-processing), so the
time of each component is the difference of two rows.
"""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .complexity import measure_latency
from .flops import build_model_from_config, dense_and_skipconv_twins
from .layer_benchmark import LAYOUTS


def _detection_batch(model: nn.Module, shape: Tuple[int, int], device: str) -> Tuple[torch.Tensor, Any]:
    """One preprocessed image with a few ground-truth boxes (the training step needs targets)."""
    from mmdet.testing import demo_mm_inputs
    data = demo_mm_inputs(batch_size=1, image_shapes=[(3, *shape)], num_items=[5], num_classes=80)
    data = model.data_preprocessor(data, True)
    return data['inputs'].to(device), [s.to(device) for s in data['data_samples']]


def _classification_batch(shape: Tuple[int, int], device: str) -> Tuple[torch.Tensor, Any]:
    from mmpretrain.structures import DataSample
    return torch.randn(1, 3, *shape, device=device), [DataSample().set_gt_label(0)]


def _stages(model: nn.Module, inputs: torch.Tensor, samples: Any) -> Dict[str, Callable[[], Any]]:
    """The forward prefixes to time for this kind of model."""
    stages = {'backbone': lambda: model.backbone(inputs)}
    if getattr(model, 'with_neck', False):
        stages['backbone+neck'] = lambda: model.extract_feat(inputs)
    stages['inference'] = lambda: model(inputs, samples, mode='predict')
    return stages


def _train_step(model: nn.Module, inputs: torch.Tensor, samples: Any) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():
        losses = model(inputs, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def time_model(model: nn.Module, scope: str, shape: Tuple[int, int], device: str = 'cpu', train: bool = True,
               **timing) -> Dict[str, Dict[str, float]]:
    """Median ms of each stage (and a training step) in each memory layout: ``{stage: {layout: ms}}``."""
    model = model.to(device)
    if scope == 'mmdet':
        inputs, samples = _detection_batch(model, shape, device)
    else:
        inputs, samples = _classification_batch(shape, device)
    results: Dict[str, Dict[str, float]] = {}
    for layout, memory_format in LAYOUTS.items():
        model.to(memory_format=memory_format)
        x = inputs.contiguous(memory_format=memory_format)
        model.eval()
        with torch.no_grad():
            for stage, fn in _stages(model, x, samples).items():
                results.setdefault(stage, {})[layout] = measure_latency(fn, device=device, **timing)['median_ms']
        if train:
            model.train()
            results.setdefault('train step', {})[layout] = measure_latency(
                _train_step(model, x, samples), device=device, **timing)['median_ms']
    return results


def benchmark_model(config: str,
                    shape: Tuple[int, int],
                    device: str = 'cpu',
                    train: bool = True,
                    cfg_options: Optional[dict] = None,
                    skip_pattern: str = 'checkerboard',
                    shift_channels: bool = False,
                    scope: Optional[Sequence[str]] = None,
                    **timing) -> Dict[str, Any]:
    """Dense vs SkipConv timing of a config's model (see :func:`time_model`), with best-layout ratios."""
    model, lib_scope = build_model_from_config(config, cfg_options)
    dense, skip = dense_and_skipconv_twins(model, skip_pattern=skip_pattern, shift_channels=shift_channels,
                                           scope=scope)
    result = dict(config=config, shape=list(shape), device=device, threads=torch.get_num_threads())
    for name, net in (('dense', dense), ('skipconv', skip)):
        result[name] = time_model(net, lib_scope, shape, device, train, **timing)
    result['ratio'] = {
        stage: min(result['skipconv'][stage].values()) / min(times.values())
        for stage, times in result['dense'].items()
    }
    return result


def format_model_table(result: Dict[str, Any]) -> str:
    """A markdown table of :func:`benchmark_model`'s result."""
    lines = [
        f"{result['config']} @ {result['shape'][0]}x{result['shape'][1]}, {result['device']}, "
        f"{result['threads']} threads (median ms; CL = channels_last)",
        '| stage | dense NCHW | dense CL | SkipConv NCHW | SkipConv CL | SkipConv / dense (best layouts) |',
        '|---|---|---|---|---|---|'
    ]
    for stage, dense in result['dense'].items():
        skip = result['skipconv'][stage]
        lines.append(f"| {stage} | {dense['nchw']:.0f} | {dense['channels_last']:.0f} | {skip['nchw']:.0f} "
                     f"| {skip['channels_last']:.0f} | {result['ratio'][stage]:.2f}× |")
    return '\n'.join(lines)
