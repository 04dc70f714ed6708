"""skipconv_det: SkipConv (Singh & Namboodiri, IJCNN 2020) for MMDetection.

Importing the package, e.g. with ``custom_imports = dict(imports=['skipconv_det'])`` in a config, registers every
type this project's configs name:

- on mmengine's root registries, visible from the mmdet and mmpretrain scopes alike: the ``SkipConv`` conv type and
  the ``SkipConvModel`` builder (MODELS), ``ResumableEpochBasedTrainLoop`` (LOOPS), ``RandomStateHook``,
  ``ChannelsLastHook``, ``CompileHook``, ``DenseWarmupHook`` and ``LatticeInferenceHook`` (HOOKS),
  ``CPUAmpOptimWrapper`` (OPTIM_WRAPPERS);
- where mmdet is installed, on mmdet's MODELS: ``ConvCfgRPNHead``;
- where mmpretrain is installed, on mmpretrain's MODELS: ``CifarResNet`` and ``MobileNetV2_CIFAR``, and on its
  DATASETS: ``UnverifiedCIFAR10`` and ``UnverifiedCIFAR100``.

It also allowlists the classes that mmengine checkpoints contain for torch's safe loader, so ``resume`` and
``load_from`` work on torch >= 2.6 (:mod:`skipconv_det.engine.checkpoint`). Nothing else changes: the command-line
tools (:mod:`skipconv_det.cli`) are not imported, and what they change for their own run (mmengine's loader of
local checkpoints, see :func:`skipconv_det.engine.readable_checkpoint_errors`) they restore afterwards.
"""
import importlib
import importlib.util

from .engine import register_checkpoint_safe_globals
from .inference import optimize_for_inference
from .models import PREDICTION_LAYERS, build_skipconv_model, convert_skipconv, fuse_conv_bn, revert_skipconv
from .ops import FILLS, SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_density, skip_mask
from .version import __version__

# These modules subclass (and register on the registries of) one downstream library each, so each is imported only
# where its library is installed: the package also works with mmdet alone or mmpretrain alone.
_LIBRARY_MODULES = {
    'mmdet': ('.models.dense_heads', ),
    'mmpretrain': ('.models.backbones', '.datasets.unverified_cifar'),
}


def _register_library_modules() -> None:
    for library, modules in _LIBRARY_MODULES.items():
        if importlib.util.find_spec(library) is not None:
            for module in modules:
                importlib.import_module(module, __name__)


register_checkpoint_safe_globals()
_register_library_modules()

__all__ = [
    'FILLS', 'PREDICTION_LAYERS', 'SKIP_PATTERNS', 'SkipConv2d', 'build_skipconv_model', 'convert_skipconv',
    'fuse_conv_bn', 'optimize_for_inference', 'register_checkpoint_safe_globals', 'revert_skipconv', 'skip_conv2d',
    'skip_density', 'skip_mask', '__version__'
]
