"""Dense vs SkipConv FLOPs of any OpenMMLab config, per component, without a dataset.

The model is built from the config; its twin is made with ``convert_skipconv`` (for a dense config) or
``revert_skipconv`` (for a config that already uses SkipConv), so both share every other setting. Both are
counted by :func:`get_model_complexity` (mmengine.analysis, the counter behind mmdet's get_flops.py), which sees
the convolutions SkipConv really runs.
"""
import copy
from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from ..engine.checks import check_custom_imports
from ..models.convert import convert_skipconv, revert_skipconv
from ..ops import SkipConv2d
from .complexity import get_model_complexity
from .dummy_data import dummy_batch


def build_model_from_config(config: str, cfg_options: Optional[dict] = None) -> Tuple[nn.Module, str]:
    """Build ``cfg.model`` of a config file or ``lib::path`` zoo name in the config's default scope (no weights are
    loaded); returns (model, scope)."""
    if '::' in config:  # a zoo config of an installed library, e.g. mmdet::retinanet/...
        from mmengine.hub import get_config
        config = get_config(config).filename
    cfg = Config.fromfile(config)  # runs the config's custom_imports
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_custom_imports(cfg)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    if cfg.get('data_preprocessor') is not None and not hasattr(model, 'data_preprocessor'):
        model.data_preprocessor = MODELS.build(cfg.data_preprocessor)
    return model.eval(), scope


def dense_and_skipconv_twins(model: nn.Module, **convert_kwargs) -> Tuple[nn.Module, nn.Module]:
    """``(dense, skipconv)`` versions of ``model``: the model itself and a converted or reverted copy."""
    if any(isinstance(m, SkipConv2d) for m in model.modules()):
        return revert_skipconv(copy.deepcopy(model)), model
    return model, convert_skipconv(copy.deepcopy(model), **convert_kwargs)


def compare_flops(config: str,
                  shape: Tuple[int, int],
                  cfg_options: Optional[dict] = None,
                  skip_pattern: str = 'checkerboard',
                  shift_channels: bool = False,
                  scope: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """FLOPs and params of a config's model, dense and SkipConv, per component.

    Args:
        config (str): Config file (mmdet, mmpretrain or this project's).
        shape (tuple[int, int]): Input (H, W).
        cfg_options (dict, optional): Overrides merged into the config.
        skip_pattern, shift_channels, scope: How a dense config's model is converted (ignored when the config
            already uses SkipConv: its own layers are the SkipConv side).

    Returns:
        dict: ``{'config', 'input_shape', 'dense': complexity, 'skipconv': complexity, 'ratio': {component:
        skipconv / dense FLOPs}}`` with complexities as returned by :func:`get_model_complexity`.
    """
    model, lib_scope = build_model_from_config(config, cfg_options)
    dense, skip = dense_and_skipconv_twins(model, skip_pattern=skip_pattern, shift_channels=shift_channels,
                                           scope=scope)
    inputs, data_samples = dummy_batch(lib_scope, shape)
    result = dict(config=config, input_shape=list(inputs.shape))
    for name, net in (('dense', dense), ('skipconv', skip)):
        result[name] = get_model_complexity(net, inputs, data_samples)
    result['ratio'] = {
        key: result['skipconv']['flops'][key] / value if value else float('nan')
        for key, value in result['dense']['flops'].items()
    }
    return result


def format_flops_table(result: Dict[str, Any]) -> str:
    """A markdown table of :func:`compare_flops`'s result (GFLOPs = 1e9 multiply-adds)."""
    lines = [
        f"{result['config']} @ input {'x'.join(map(str, result['input_shape']))}",
        '| component | dense GFLOPs | SkipConv GFLOPs | ratio | params (M) |', '|---|---|---|---|---|'
    ]
    for key, dense in result['dense']['flops'].items():
        lines.append(f"| {key} | {dense / 1e9:.2f} | {result['skipconv']['flops'][key] / 1e9:.2f} "
                     f"| {result['ratio'][key]:.3f} | {result['dense']['params'].get(key, 0) / 1e6:.2f} |")
    return '\n'.join(lines)
