"""Bad input fails early with one message that names the file (or option) and the fix: COCO annotation files with
missing or invalid fields, missing images, unreadable or truncated checkpoints, an unknown --skip-scope, and a
--skipconv that finds nothing to convert. The tools are run in-process (tools/train.py and tools/test.py are thin
wrappers of run_train / run_test)."""
import json
import os.path as osp
import pickle
import shutil

import pytest
import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import load_from_local

from skipconv_det.analysis.flops import build_model_from_config
from skipconv_det.apis import DEMO_CONFIGS
from skipconv_det.cli.test import run_test
from skipconv_det.cli.train import run_train
from skipconv_det.datasets import DatasetError, check_coco_annotations, generate_synthetic_coco
from skipconv_det.engine import CheckpointError, load_local_checkpoint, readable_checkpoint_errors
from ._tiers import full_only

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, DEMO_CONFIGS['dense'])
CONFIG = """
_base_ = '{base}'
data_root = '{data_root}/'
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
"""


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    generate_synthetic_coco(str(root), num_train=3, num_val=2, img_size=(64, 64), max_objects=2)
    return root


@pytest.fixture
def config(dataset, tmp_path):
    """The demo config on a private copy of the tiny dataset (tests may damage it)."""
    data_root = tmp_path / 'data'
    shutil.copytree(dataset, data_root)
    path = tmp_path / 'tiny.py'
    path.write_text(CONFIG.format(base=DEMO_CONFIG, data_root=data_root))
    return str(path), data_root


def _edit(ann_file, edit):
    with open(ann_file) as f:
        coco = json.load(f)
    edit(coco)
    with open(ann_file, 'w') as f:
        json.dump(coco, f)


@pytest.mark.parametrize('edit,message', [
    (lambda c: c.pop('annotations'), "missing the top-level list 'annotations'"),
    (lambda c: c['images'][1].pop('file_name'), "images[1] has no valid 'file_name'"),
    (lambda c: c['images'][0].update(width='64'), "images[0] has no valid 'width' (expected int, got '64')"),
    (lambda c: c['annotations'][0].pop('area'), "annotations[0] has no valid 'area'"),
    (lambda c: c['annotations'][0].update(bbox=[1, 2, 3]), 'has bbox [1, 2, 3], not [x, y, w, h]'),
    (lambda c: c['annotations'][0].update(category_id=99), 'category 99, which the file does not declare'),
    (lambda c: c['categories'][0].update(name='box'), "no category named ['square'] (config metainfo.classes)"),
])
def test_invalid_annotation_file_is_named_with_the_fix(config, edit, message):
    path, data_root = config
    ann_file = str(data_root / 'annotations' / 'instances_train.json')
    _edit(ann_file, edit)
    with pytest.raises(DatasetError) as e:
        run_train([path, '--work-dir', str(data_root.parent / 'work')])
    assert str(e.value).startswith(ann_file + ': ') and message in str(e.value)
    assert 'Fix the annotation file' in str(e.value) or 'Make metainfo=dict(classes=...)' in str(e.value)


def test_missing_image_file_is_named(config):
    path, data_root = config
    image = data_root / 'val' / '000000000002.png'
    image.unlink()
    with pytest.raises(DatasetError, match=f'image file {image} \\(image id 2\\) is missing. Restore the file, or '
                       'fix data_root / data_prefix.img'):
        run_test([path, 'unused.pth', '--work-dir', str(data_root.parent / 'work')])


def test_json_that_is_not_json(tmp_path):
    ann_file = tmp_path / 'instances.json'
    ann_file.write_text('{"images": [')
    with pytest.raises(DatasetError, match='instances.json: not valid json'):
        check_coco_annotations(str(ann_file), str(tmp_path))


def test_valid_dataset_passes(dataset):
    for split in ('train', 'val'):
        check_coco_annotations(str(dataset / 'annotations' / f'instances_{split}.json'), str(dataset / split),
                               classes=('square', 'circle', 'triangle', 'cross'))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1, iter=4), state_dict={'w': torch.randn(64, 64)}), path)
    return path


def _damaged(checkpoint, tmp_path, how):
    data = checkpoint.read_bytes()
    path = tmp_path / f'{how}.pth'
    path.write_bytes(data[:len(data) // 2] if how == 'truncated' else b'not a checkpoint' * 8)
    return str(path)


@pytest.mark.parametrize('how', ['truncated', 'garbage'])
def test_unreadable_checkpoint_through_mmengine_loader(checkpoint, tmp_path, how):
    path = _damaged(checkpoint, tmp_path, how)
    with readable_checkpoint_errors():
        with pytest.raises(CheckpointError, match=f'Cannot read the checkpoint {path} .*Delete it and point --resume'):
            CheckpointLoader.load_checkpoint(path, map_location='cpu')
        assert CheckpointLoader.load_checkpoint(str(checkpoint), map_location='cpu')['meta']['iter'] == 4


def test_refused_pickle_keeps_torchs_message(tmp_path):
    """A checkpoint with an object outside the allowlist is refused by torch, not reported as unreadable."""
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, extra=pickle.PickleError('not allowed')), path)
    with readable_checkpoint_errors(), pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def test_readable_checkpoint_errors_is_scoped(checkpoint, tmp_path):
    """Only the block loads with the readable errors (the tools run in it); mmengine's own loader is back after
    it, also when the block raises, and importing the package never swaps it."""
    local = CheckpointLoader._schemes['']
    assert local is load_from_local
    with pytest.raises(CheckpointError), readable_checkpoint_errors():
        assert CheckpointLoader._schemes[''] is load_local_checkpoint
        CheckpointLoader.load_checkpoint(_damaged(checkpoint, tmp_path, 'truncated'), map_location='cpu')
    assert CheckpointLoader._schemes[''] is local
    with pytest.raises((RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)) as e:
        CheckpointLoader.load_checkpoint(_damaged(checkpoint, tmp_path, 'truncated'), map_location='cpu')
    assert not isinstance(e.value, CheckpointError)  # torch's own error


@pytest.mark.parametrize('tool', full_only(['resume', 'load_from', 'test'], fast=('resume', )))
def test_truncated_checkpoint_through_the_tools(config, checkpoint, tmp_path, tool):
    path, data_root = config
    ckpt = _damaged(checkpoint, tmp_path, 'truncated')
    work = ['--work-dir', str(tmp_path / 'work')]
    with pytest.raises(CheckpointError, match=f'Cannot read the checkpoint {ckpt} '):
        if tool == 'resume':
            run_train([path, '--resume', ckpt, *work])
        elif tool == 'load_from':
            run_train([path, '--cfg-options', f'load_from={ckpt}', *work])
        else:
            run_test([path, ckpt, *work])


@pytest.mark.parametrize('flags,message', [
    (['--skip-scope', 'backbon'], "Unknown scope 'backbon' for FasterRCNN"),
    (['--skip-scope', 'roi_head'], 'convert_skipconv found no nn.Conv2d to convert in FasterRCNN'),
])
def test_bad_skipconv_request_through_train(config, tmp_path, flags, message):
    path, _ = config
    with pytest.raises(ValueError, match=message):
        run_train([path, '--skipconv', *flags, '--work-dir', str(tmp_path / 'work')])


@pytest.mark.parametrize('tool', ['train', 'get_flops'])
def test_config_naming_skipconv_without_custom_imports(config, tmp_path, tool):
    """Our tools import skipconv_det anyway; they still refuse such a config, which other tools cannot build."""
    path, _ = config
    bad = tmp_path / 'no_imports.py'
    bad.write_text(f"_base_ = '{path}'\nmodel = dict(neck=dict(conv_cfg=dict(type='SkipConv')))\n"
                   "custom_imports = dict(imports=[], allow_failed_imports=False)\n")
    message = r"uses 'SkipConv' from skipconv_det but does not import it; add custom_imports = dict\(imports="
    with pytest.raises(ValueError, match=message):
        if tool == 'train':
            run_train([str(bad), '--work-dir', str(tmp_path / 'work')])
        else:
            build_model_from_config(str(bad))
    # With the import the same config builds.
    bad.write_text(bad.read_text().replace('imports=[]', "imports=['skipconv_det']"))
    model, _ = build_model_from_config(str(bad))
    assert any(type(m).__name__ == 'SkipConv2d' for m in model.neck.modules())
