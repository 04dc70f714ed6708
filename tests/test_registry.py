"""`SkipConv` as an MMCV conv type: built by build_conv_layer / ConvModule from the mmdet and mmpretrain scopes
and from a config that only names it through custom_imports."""
import pytest
import torch
from mmcv.cnn import ConvModule, build_conv_layer
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from skipconv_det import SkipConv2d, skip_mask


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_build_conv_layer_from_scope(scope):
    init_default_scope(scope)
    conv = build_conv_layer(dict(type='SkipConv', skip_pattern='grid', shift_channels=True, fill='zero'), 16, 32, 3,
                            padding=1)
    assert type(conv) is SkipConv2d
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (16, 32, (3, 3), (1, 1))
    assert conv.skip_pattern == 'grid' and conv.shift_channels and conv.fill == 'zero'
    out = conv(torch.randn(2, 16, 9, 10))
    assert (out[:, ~skip_mask('grid', 32, 9, 10, True)] == 0).all()


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_conv_module(scope):
    init_default_scope(scope)
    module = ConvModule(8, 16, 3, padding=1, conv_cfg=dict(type='SkipConv'), norm_cfg=dict(type='BN'))
    assert type(module.conv) is SkipConv2d and module.conv.skip_pattern == 'checkerboard'
    # ConvModule drops the conv bias before a norm layer; the skipped positions are zero before the norm.
    assert module.conv.bias is None
    assert module(torch.randn(2, 8, 6, 7)).shape == (2, 16, 6, 7)


def test_config_with_custom_imports(tmp_path):
    """A user config names the type only; custom_imports registers it."""
    cfg_file = tmp_path / 'skip_cfg.py'
    cfg_file.write_text("custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)\n"
                        "default_scope = 'mmdet'\n"
                        "conv_cfg = dict(type='SkipConv', skip_pattern='row')\n")
    cfg = Config.fromfile(str(cfg_file))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        conv = build_conv_layer(cfg.conv_cfg, 3, 4, 3)
    assert type(conv) is SkipConv2d and conv.skip_pattern == 'row'


def test_registered_on_the_root_registry():
    from mmengine.registry import MODELS
    assert MODELS.scope == 'mmengine' and MODELS.get('SkipConv') is SkipConv2d
