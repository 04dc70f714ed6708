"""The synthetic COCO generator: valid COCO that pycocotools and mmdet read, deterministic by seed."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from skipconv_det.datasets.synthetic_coco import CLASSES, PALETTE, generate_synthetic_coco, main, validate_coco


def _digest(root):
    """Hash of every file under root (relative path + bytes)."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            h.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def _load(root, split):
    with open(osp.join(root, 'annotations', f'instances_{split}.json'), encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic_coco'))
    generate_synthetic_coco(root, num_train=24, num_val=8, seed=3, img_size=(96, 112))
    return root


@pytest.mark.parametrize('split,num', [('train', 24), ('val', 8)])
def test_split_is_valid_coco(dataset, split, num):
    coco = _load(dataset, split)
    assert [c['name'] for c in coco['categories']] == list(CLASSES)
    assert [img['id'] for img in coco['images']] == list(range(1, num + 1))
    assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
    per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=num + 1)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 4
    for img in coco['images']:
        with Image.open(osp.join(dataset, split, img['file_name'])) as im:
            assert im.size == (img['width'], img['height']) == (112, 96)
            assert im.mode == 'RGB'
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 112 and y + h <= 96
        assert 0 < ann['area'] <= w * h
        assert ann['iscrowd'] == 0 and 1 <= ann['category_id'] <= len(CLASSES)
        assert len(ann['segmentation'][0]) >= 6
    assert validate_coco(osp.join(dataset, 'annotations', f'instances_{split}.json'),
                         osp.join(dataset, split)) == dict(images=num, annotations=len(coco['annotations']),
                                                           categories=len(CLASSES))


def test_boxes_are_tight_around_the_object_colour(dataset):
    """Each box's border rows/columns hold pixels of its class colour, and the 1-pixel ring around it holds none."""
    coco = _load(dataset, 'train')
    images = {img['id']: np.asarray(Image.open(osp.join(dataset, 'train', img['file_name'])), dtype=np.int32)
              for img in coco['images']}
    for ann in coco['annotations']:
        pixels = images[ann['image_id']]
        colour = np.asarray(PALETTE[ann['category_id'] - 1])
        # Object pixels: class colour +-20 jitter + noise (sigma 4); background: below ~120 + noise per channel.
        near = np.abs(pixels - colour).max(axis=-1) <= 55
        x, y, w, h = ann['bbox']
        inside = near[y:y + h, x:x + w]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert inside.sum() == ann['area']
        # Other objects keep a 2-pixel gap, so the ring just outside the box is background only.
        ring = near[max(y - 1, 0):y + h + 1, max(x - 1, 0):x + w + 1].sum() - inside.sum()
        assert ring == 0


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    args = dict(num_train=6, num_val=3, img_size=(64, 64))
    generate_synthetic_coco(str(tmp_path / 'a'), seed=7, **args)
    generate_synthetic_coco(str(tmp_path / 'b'), seed=7, **args)
    generate_synthetic_coco(str(tmp_path / 'c'), seed=8, **args)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    assert _load(tmp_path / 'a', 'train')['annotations'] != _load(tmp_path / 'c', 'train')['annotations']


def test_val_split_does_not_depend_on_train_size(tmp_path):
    generate_synthetic_coco(str(tmp_path / 'a'), num_train=2, num_val=4, seed=1, img_size=(64, 64))
    generate_synthetic_coco(str(tmp_path / 'b'), num_train=5, num_val=4, seed=1, img_size=(64, 64))
    assert _digest(tmp_path / 'a' / 'val') == _digest(tmp_path / 'b' / 'val')
    assert _load(tmp_path / 'a', 'val')['annotations'] == _load(tmp_path / 'b', 'val')['annotations']


def test_existing_identical_split_is_kept_and_changed_args_regenerate(tmp_path):
    root = str(tmp_path)
    ann_file = generate_synthetic_coco(root, num_train=3, num_val=2, seed=0, img_size=(64, 64))['train']
    os.utime(ann_file, (0, 0))
    generate_synthetic_coco(root, num_train=3, num_val=2, seed=0, img_size=(64, 64))
    assert os.stat(ann_file).st_mtime == 0
    generate_synthetic_coco(root, num_train=4, num_val=2, seed=0, img_size=(64, 64))
    assert os.stat(ann_file).st_mtime > 0 and len(_load(root, 'train')['images']) == 4


def _box_outside(coco):
    coco['annotations'][0]['bbox'][0] = coco['images'][0]['width']


def _unknown_category(coco):
    coco['annotations'][0]['category_id'] = 99


def _duplicate_image_id(coco):
    coco['images'].append(dict(coco['images'][0]))  # (every reference stays valid)


def _wrong_size(coco):
    coco['images'][0]['width'] += 1


@pytest.mark.parametrize('corrupt,message', [
    (_box_outside, r'annotation 1 has box \[64, .*\] outside its 64x64 image'),
    (_unknown_category, 'refers to image 1 / category 99, which the file does not declare'),
    (_duplicate_image_id, 'duplicate image id 1'),
    (_wrong_size, r'size \(64, 64\) differs from the recorded \(65, 64\)'),
])
def test_validate_rejects_broken_annotations(tmp_path, corrupt, message):
    ann_file = generate_synthetic_coco(str(tmp_path), num_train=3, num_val=1, seed=0, img_size=(64, 64))['train']
    with open(ann_file, encoding='utf-8') as f:
        coco = json.load(f)
    corrupt(coco)
    with open(ann_file, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match=message):
        validate_coco(ann_file, str(tmp_path / 'train'))


def test_cli_writes_coco_layout(tmp_path, capsys):
    out = str(tmp_path / 'coco')
    main(['--out', out, '--num-train', '3', '--num-val', '2', '--seed', '5', '--size', '48', '64'])
    assert 'train: 3 images' in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ['annotations', 'train', 'val']
    assert sorted(os.listdir(osp.join(out, 'annotations'))) == ['instances_train.json', 'instances_val.json']
    assert len(os.listdir(osp.join(out, 'val'))) == 2
    assert _load(out, 'val')['images'][0]['height'] == 48 and _load(out, 'val')['images'][0]['width'] == 64
