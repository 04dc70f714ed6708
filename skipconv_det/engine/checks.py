# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""A config that names this package's types must import it through ``custom_imports``, so that it builds in any
OpenMMLab tool and in a fresh process: the check, and the helpers that keep a changed config self-contained."""
from typing import Iterator

from mmengine.config import Config

# The types a config can name only once skipconv_det is imported (see the package docstring).
_OWN_TYPES = ('SkipConv', 'SkipConvModel', 'ConvCfgRPNHead', 'CifarResNet', 'MobileNetV2_CIFAR', 'UnverifiedCIFAR10',
              'UnverifiedCIFAR100', 'ResumableEpochBasedTrainLoop', 'RandomStateHook', 'DenseWarmupHook',
              'CPUAmpOptimWrapper')


def _types(node) -> Iterator[str]:
    """Every ``type`` string of a config, at any depth."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield node['type']
        for value in node.values():
            yield from _types(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _types(value)


def custom_imports_of(cfg: Config) -> list:
    """The modules a config's ``custom_imports`` names (a single string counts as one)."""
    imports = (cfg.get('custom_imports') or {}).get('imports', [])
    return [imports] if isinstance(imports, str) else list(imports)


def add_custom_import(cfg: Config, module: str) -> None:
    """Make a config import ``module`` through ``custom_imports`` (once), so that it rebuilds in a fresh process
    and in any OpenMMLab tool."""
    imports = custom_imports_of(cfg)
    if module not in imports:
        cfg.custom_imports = dict(cfg.get('custom_imports') or dict(allow_failed_imports=False),
                                  imports=imports + [module])


def check_custom_imports(cfg: Config) -> None:
    """Refuse a config that names this package's types without importing it through ``custom_imports``.

    Our tools import skipconv_det anyway, so such a config would build here and then fail elsewhere (mmdet's own
    ``tools/test.py``, a colleague's script) with a bare ``KeyError`` from a registry.

    Raises:
        ValueError: Naming the config, the type and the line to add.
    """
    if any(name == 'skipconv_det' or name.startswith('skipconv_det.') for name in custom_imports_of(cfg)):
        return
    named = sorted(set(_types(cfg.to_dict())) & set(_OWN_TYPES))
    if named:
        raise ValueError(
            f'{cfg.filename or "The config"} uses {", ".join(map(repr, named))} from skipconv_det but does not '
            "import it; add custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False) to the "
            'config (it registers the types for any OpenMMLab tool).')
