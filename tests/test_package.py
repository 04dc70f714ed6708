"""The package as an OpenMMLab user installs and imports it: ``import skipconv_det`` registers every type the
configs name and changes nothing else global, also with only one of mmdet and mmpretrain installed; the package
metadata declares version ranges that hold the tested pins; and after a non-editable install, configs of the clone
build with only ``custom_imports = dict(imports=['skipconv_det'])``."""
import glob
import importlib.metadata
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.full  # fresh interpreters and a pip wheel build: `make test` only

# Run in a fresh interpreter with `library` made impossible to import, as if it were not installed.
IMPORT_CHECK = """
import os, sys
library = {library!r}
sys.modules[library] = None
import importlib, torch
from mmengine.registry import HOOKS, LOOPS, MODELS, OPTIM_WRAPPERS, DefaultScope
from mmengine.runner.checkpoint import CheckpointLoader
# What the libraries themselves change when imported is theirs (mmdet.models sets TORCHINDUCTOR_CACHE_DIR).
for module in ('mmdet.models', 'mmpretrain.models', 'mmpretrain.datasets'):
    if module.split('.')[0] != library:
        importlib.import_module(module)
schemes, environ, path = dict(CheckpointLoader._schemes), dict(os.environ), list(sys.path)
threads = torch.get_num_threads()
safe_globals = len(torch.serialization.get_safe_globals())

import skipconv_det

# Registered: on the root registries, and on each installed library's own.
assert MODELS.get('SkipConv') is skipconv_det.SkipConv2d and MODELS.get('SkipConvModel') is not None
assert LOOPS.get('ResumableEpochBasedTrainLoop') is not None and HOOKS.get('RandomStateHook') is not None
assert OPTIM_WRAPPERS.get('CPUAmpOptimWrapper') is not None
if library != 'mmdet':
    import mmdet.registry
    assert mmdet.registry.MODELS.get('ConvCfgRPNHead') is not None
if library != 'mmpretrain':
    import mmpretrain.registry
    assert all(mmpretrain.registry.MODELS.get(t) is not None for t in ('CifarResNet', 'MobileNetV2_CIFAR'))
    assert all(mmpretrain.registry.DATASETS.get(t) is not None for t in ('UnverifiedCIFAR10', 'UnverifiedCIFAR100'))
assert sys.modules[library] is None
assert len(torch.serialization.get_safe_globals()) > safe_globals  # the documented allowlist
# Nothing else: mmengine's checkpoint loader, the default scope, the environment, sys.path, torch's threads.
assert dict(CheckpointLoader._schemes) == schemes
assert DefaultScope.get_current_instance() is None
assert dict(os.environ) == environ and sys.path == path and torch.get_num_threads() == threads
not_imported = ('skipconv_det.cli', 'skipconv_det.apis', 'skipconv_det.analysis')
assert not [name for name in sys.modules if name.startswith(not_imported)], 'the tools were imported'
print('import OK')
"""

# Run in a fresh interpreter from outside the clone, on the installed copy: a detection and two classification
# configs of the clone build with what their custom_imports import (all configs import only skipconv_det:
# test_configs.py, test_classification.py and test_demo_e2e.py check that).
CONFIGS_CHECK = """
import sys
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
assert 'skipconv_det' not in sys.modules
for name in {configs!r}:
    cfg = Config.fromfile(name)  # runs its custom_imports
    assert cfg.custom_imports.imports == ['skipconv_det']
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        MODELS.build(cfg.model)
assert sys.modules['skipconv_det'].__file__.startswith({site!r}), sys.modules['skipconv_det'].__file__
print('built', len({configs!r}), 'configs')
"""
INSTALLED_CONFIGS = ('faster-rcnn_r50-skipconv-grid-shift_fpn_1x_coco.py',
                     'classification/resnet56-skipconv_8xb16_cifar10.py',
                     'classification/mobilenet-v2-skipconv_8xb16_cifar10.py')


def _python(code, cwd=ROOT, pythonpath=ROOT):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=pythonpath)
    proc = subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


# With both libraries, every other test imports the package; these two also show that each guard works.
@pytest.mark.parametrize('library', ['mmdet', 'mmpretrain'], ids=['without mmdet', 'without mmpretrain'])
def test_import_registers_everything_and_changes_nothing_else(library):
    assert 'import OK' in _python(IMPORT_CHECK.format(library=library))


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The wheel ``pip`` builds from this checkout, unpacked as a non-editable install would place it."""
    root = tmp_path_factory.mktemp('install')
    source = root / 'source'
    source.mkdir()
    for name in ('setup.py', 'setup.cfg', 'README.md'):
        shutil.copy(osp.join(ROOT, name), source / name)
    shutil.copytree(osp.join(ROOT, 'skipconv_det'), source / 'skipconv_det',
                    ignore=shutil.ignore_patterns('__pycache__'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
                    '--quiet', '-w', str(root / 'dist'), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (root / 'dist').glob('skipconv_det-*.whl')
    site = root / 'site-packages'
    with zipfile.ZipFile(wheel) as f:
        f.extractall(site)
    return site


def test_metadata_declares_ranges_that_hold_the_tested_stack(installed):
    dist = importlib.metadata.PathDistribution(next(installed.glob('skipconv_det-*.dist-info')))
    requires = [Requirement(r) for r in dist.requires]
    assert not [str(r) for r in requires if any(s.operator in ('==', '===') for s in r.specifier)]
    runtime = {r.name: r.specifier for r in requires if r.marker is None}
    assert {'torch', 'mmengine', 'mmcv', 'mmdet'} <= set(runtime) and 'mmpretrain' not in runtime
    assert '2.1.0' in runtime['mmcv'] and '2.2.0' not in runtime['mmcv']
    assert '3.0.0' in runtime['mmdet'] and '3.3.0' in runtime['mmdet'] and '3.4.0' not in runtime['mmdet']
    extra, = (r for r in requires if r.name == 'mmpretrain')
    assert extra.marker.evaluate({'extra': 'mmpretrain'}) and not extra.marker.evaluate({'extra': ''})
    # The stack `make install` pins lies inside the declared ranges, and so does this interpreter.
    with open(osp.join(ROOT, 'requirements', 'tested.txt'), encoding='utf-8') as f:
        pins = [Requirement(line) for line in f.read().splitlines() if line and not line.startswith('#')]
    pinned = {pin.name: next(iter(pin.specifier)).version for pin in pins if '==' in str(pin.specifier)}
    assert {'torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain'} <= set(pinned)
    for name, specifier in [*runtime.items(), ('mmpretrain', extra.specifier)]:
        if name in pinned:
            assert pinned[name] in specifier, (name, pinned[name], str(specifier))
    assert platform.python_version() in SpecifierSet(dist.metadata['Requires-Python'])


def test_clone_configs_build_on_the_installed_package(installed, tmp_path):
    """As in mmdet projects, configs are used from the clone; the package itself comes from site-packages."""
    assert not glob.glob(str(installed / '**' / 'configs'), recursive=True)  # configs are not installed
    # The CPU kernels' sources and headers, all of them, for the first use to build.
    for package in ('ops', 'inference'):
        assert sorted(os.listdir(installed / 'skipconv_det' / package / 'csrc')) == sorted(
            os.listdir(osp.join(ROOT, 'skipconv_det', package, 'csrc')))
    configs = [osp.join(ROOT, 'configs', name) for name in INSTALLED_CONFIGS]
    out = _python(CONFIGS_CHECK.format(configs=configs, site=str(installed)), cwd=str(tmp_path),
                  pythonpath=str(installed))
    assert f'built {len(configs)} configs' in out
