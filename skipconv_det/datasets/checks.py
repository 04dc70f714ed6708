# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Fail early, with one message that names the file and the fix, on bad detection data.

Without these checks a COCO annotation file with a missing field fails deep inside mmdet's ``parse_data_info`` as a
bare ``KeyError: 'file_name'``, a missing image fails in a dataloader worker after the model is built, and config
classes absent from the json are silently dropped. ``tools/train.py`` and ``tools/test.py`` run
:func:`check_datasets` on the config before building anything; the dataset generator checks its own output with
:func:`check_coco_annotations`.
"""
import json
import os.path as osp
from numbers import Number
from typing import Iterator, Optional, Sequence

from mmengine.config import Config, ConfigDict
from mmengine.registry import DATASETS

# Fields mmdet's CocoDataset reads from each entry, and their types.
_COCO_FIELDS = {
    'images': dict(id=int, file_name=str, width=int, height=int),
    'annotations': dict(id=int, image_id=int, category_id=int, bbox=list, area=Number),
    'categories': dict(id=int, name=str),
}
_DATASET_WRAPPER_KEYS = ('dataset', 'datasets')  # RepeatDataset, ClassBalancedDataset, ConcatDataset, ...
_SYNTHETIC_HINT = ('(for the generated stand-in: python -m skipconv_det.datasets.synthetic_coco --out DATA_ROOT '
                   '--overwrite)')


class DatasetError(ValueError):
    """A dataset's files do not match what its config promises."""


def _fail(ann_file: str, what: str, fix: str) -> None:
    raise DatasetError(f'{ann_file}: {what}. {fix}')


def check_coco_annotations(ann_file: str, img_dir: str, classes: Optional[tuple] = None) -> None:
    """Check a COCO-format detection annotation file against what mmdet's ``CocoDataset`` reads.

    One pass over the json and one ``os.stat`` per image (no image is decoded): the fields mmdet reads and their
    types, boxes of four numbers, references to declared images and categories, every image file present, and
    every class of the config present among the categories (mmdet silently drops the others).

    Args:
        ann_file (str): The annotation json.
        img_dir (str): The folder the images' ``file_name`` are relative to (``data_root`` + ``data_prefix.img``).
        classes (tuple[str], optional): The config's ``metainfo.classes``.

    Raises:
        DatasetError: On the first problem, naming the file, the entry and the fix.
    """
    fix = f'Fix the annotation file or point the config\'s data_root / ann_file at the right one {_SYNTHETIC_HINT}.'
    if not osp.isfile(ann_file):
        _fail(ann_file, 'annotation file not found', fix)
    try:
        with open(ann_file, encoding='utf-8') as f:
            coco = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(ann_file, f'not valid json ({e})', fix)
    if not isinstance(coco, dict):
        _fail(ann_file, 'the top level is not a json object', fix)
    for key, fields in _COCO_FIELDS.items():
        entries = coco.get(key)
        if not isinstance(entries, list):
            _fail(ann_file, f'missing the top-level list {key!r} (COCO format)', fix)
        for i, entry in enumerate(entries):
            for field, kind in fields.items():
                value = entry.get(field) if isinstance(entry, dict) else None
                if not isinstance(value, kind) or isinstance(value, bool):
                    _fail(ann_file, f'{key}[{i}] has no valid {field!r} (expected {kind.__name__}, got {value!r})',
                          fix)
    image_ids = {img['id'] for img in coco['images']}
    cat_ids = {cat['id'] for cat in coco['categories']}
    for i, ann in enumerate(coco['annotations']):
        if len(ann['bbox']) != 4 or not all(isinstance(v, Number) for v in ann['bbox']):
            _fail(ann_file, f'annotations[{i}] (id {ann["id"]}) has bbox {ann["bbox"]}, not [x, y, w, h]', fix)
        if ann['image_id'] not in image_ids or ann['category_id'] not in cat_ids:
            _fail(ann_file, f'annotations[{i}] (id {ann["id"]}) refers to image {ann["image_id"]} / category '
                  f'{ann["category_id"]}, which the file does not declare', fix)
    missing = [c for c in classes or () if c not in {cat['name'] for cat in coco['categories']}]
    if missing:
        _fail(ann_file, f'no category named {missing} (config metainfo.classes)',
              'Make metainfo=dict(classes=...) in the config list the category names of the annotation file.')
    for img in coco['images']:
        path = osp.join(img_dir, img['file_name'])
        if not osp.isfile(path):
            _fail(ann_file, f'image file {path} (image id {img["id"]}) is missing',
                  'Restore the file, or fix data_root / data_prefix.img in the config, or drop the image from '
                  f'the annotation file {_SYNTHETIC_HINT}.')


def _coco_datasets(dataset_cfg: dict, registry) -> Iterator[dict]:
    """The CocoDataset-like configs inside a dataset config, looking through dataset wrappers."""
    for key in _DATASET_WRAPPER_KEYS:
        inner = dataset_cfg.get(key)
        for cfg in inner if isinstance(inner, (list, tuple)) else [inner] if inner is not None else []:
            yield from _coco_datasets(cfg, registry)
    kind = dataset_cfg.get('type')
    cls = registry.get(kind) if isinstance(kind, str) else kind
    # Duck-typed on mmdet's CocoDataset (and its subclasses, e.g. LVIS), so mmdet stays an optional import here.
    if cls is not None and any(base.__name__ == 'CocoDataset' for base in getattr(cls, '__mro__', ())):
        yield dataset_cfg


def check_datasets(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Run :func:`check_coco_annotations` on every COCO-format dataset of a config's dataloaders.

    Datasets on remote storage (``backend_args`` set, or a URL) are left to their backend.

    Args:
        cfg (Config): A full config (``default_scope`` decides which registry resolves dataset types).
        splits (Sequence[str]): Which ``{split}_dataloader`` to check. Default: train, val and test.

    Raises:
        DatasetError: See :func:`check_coco_annotations`.
    """
    checked = set()
    # The registry of the config's scope (e.g. mmdet's), as the Runner resolves dataset types.
    with DATASETS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
        for split in splits:
            loader = cfg.get(f'{split}_dataloader')
            if not isinstance(loader, (dict, ConfigDict)) or 'dataset' not in loader:
                continue
            for ds in _coco_datasets(loader.dataset, registry):
                data_root = ds.get('data_root') or ''
                ann_file = osp.join(data_root, ds.get('ann_file', ''))
                img_dir = osp.join(data_root, (ds.get('data_prefix') or {}).get('img', ''))
                if ds.get('backend_args') or '://' in ann_file or (ann_file, img_dir) in checked:
                    continue
                classes = (ds.get('metainfo') or {}).get('classes')
                check_coco_annotations(ann_file, img_dir, tuple(classes) if classes else None)
                checked.add((ann_file, img_dir))
