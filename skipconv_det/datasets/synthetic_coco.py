# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""A learnable COCO-format detection dataset, generated from a seed: the stand-in for MS-COCO on machines without it.

Each image shows a few filled shapes on a noisy background; the category is the shape, and each category has its own
colour (with jitter), so a small detector trained from scratch learns it in minutes and the mAP it reaches says
something about the detector rather than about the data. The layout is COCO's, so mmdet's ``CocoDataset`` and
``CocoMetric`` read it unchanged (set ``metainfo=dict(classes=CLASSES)`` in the config)::

    OUT/annotations/instances_train.json   OUT/train/000000000001.png ...
    OUT/annotations/instances_val.json     OUT/val/000000000001.png ...

Boxes are tight around the drawn pixels (COCO convention: pixel ``i`` covers ``[i, i + 1)``), objects do not overlap,
and every annotation carries its polygon, so mask heads can train on it too. The same arguments give the same bytes.

Usage::

    python -m skipconv_det.datasets.synthetic_coco --out data/synthetic_coco --num-train 600 --num-val 100 --seed 0
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .checks import check_coco_annotations

CLASSES = ('square', 'circle', 'triangle', 'cross')
# One colour per class; also mmdet's visualisation palette for these classes.
PALETTE = ((230, 60, 50), (60, 200, 80), (70, 110, 240), (240, 210, 50))
SPLITS = ('train', 'val')


def _shape_polygon(name: str, cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """Vertices (K, 2) of a shape of nominal size w x h centred at (cx, cy); triangles and crosses are rotated."""
    if name == 'square':
        unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        angle = 0.0  # axis-aligned, so boxes are exactly the drawn rectangles
    elif name == 'circle':
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1)
        angle = 0.0
    elif name == 'triangle':
        t = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
        unit = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif name == 'cross':
        a = 0.35  # half-width of the arms, relative to the half-size
        unit = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a],
                         [-1, -a], [-a, -a]])
    else:
        raise ValueError(f'Unknown shape {name!r}; use one of {CLASSES}.')
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (unit * [w / 2, h / 2]) @ rot.T + [cx, cy]


def _render_image(rng: np.random.Generator, size: Tuple[int, int], max_objects: int,
                  obj_size: Tuple[float, float]) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image and return it (H, W, 3 uint8) with its objects (category index, polygon, mask)."""
    height, width = size
    # Smooth random background plus pixel noise: the detector must find edges, not a flat fill. It stays dark
    # (channels <= ~120) so every class colour stands out against it.
    base = rng.uniform(20, 80, size=3)
    ramp = rng.uniform(-20, 20, size=(2, 3))
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing='ij')
    img = base + yy[..., None] * ramp[0] + xx[..., None] * ramp[1]
    img = img + rng.normal(0, 4, size=(height, width, 3))

    occupied = np.zeros((height, width), dtype=bool)
    objects = []
    num = int(rng.integers(1, max_objects + 1))
    short = min(height, width)
    for _ in range(num):
        for _attempt in range(20):  # rejection sampling for a free spot; fewer objects if the image is full
            label = int(rng.integers(len(CLASSES)))
            side = rng.uniform(*obj_size) * short
            aspect = rng.uniform(0.7, 1.4)
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
            poly = _shape_polygon(CLASSES[label], cx, cy, w, h, rng.uniform(0, 2 * math.pi))
            poly[:, 0] = poly[:, 0].clip(0, width - 1)
            poly[:, 1] = poly[:, 1].clip(0, height - 1)
            canvas = Image.new('1', (width, height))
            ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly], fill=1)
            mask = np.asarray(canvas, dtype=bool)
            # Keep a 2-pixel gap to every other object so boxes never share pixels.
            grown = np.zeros_like(mask)
            ys, xs = np.nonzero(mask)
            grown[max(ys.min() - 2, 0):ys.max() + 3, max(xs.min() - 2, 0):xs.max() + 3] = True
            if not (grown & occupied).any():
                break
        else:
            continue
        occupied |= grown
        colour = np.asarray(PALETTE[label], dtype=np.float64) + rng.uniform(-20, 20, size=3)
        img[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
        objects.append(dict(label=label, polygon=poly, mask=mask))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    ys, xs = np.nonzero(obj['mask'])
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['label'] + 1,
        bbox=[x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
        area=int(obj['mask'].sum()),
        segmentation=[[round(float(v), 2) for v in obj['polygon'].reshape(-1)]],
        iscrowd=0)


def generate_split(out_dir: str,
                   split: str,
                   num_images: int,
                   seed: int,
                   img_size: Tuple[int, int] = (128, 128),
                   max_objects: int = 4,
                   obj_size: Tuple[float, float] = (0.15, 0.45)) -> str:
    """Write one split (``OUT/<split>/*.png`` and ``OUT/annotations/instances_<split>.json``).

    Args:
        out_dir (str): Dataset root.
        split (str): Split name, used for the image folder and the annotation file name.
        num_images (int): Number of images.
        seed (int): Seed of this split's random stream.
        img_size (tuple[int, int]): Image (height, width). Default: (128, 128).
        max_objects (int): Each image holds 1 to ``max_objects`` objects. Default: 4.
        obj_size (tuple[float, float]): Range of an object's nominal side, as a fraction of the image's shorter
            side. Default: (0.15, 0.45).

    Returns:
        str: Path of the annotation file.
    """
    rng = np.random.default_rng(seed)
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        pixels, objects = _render_image(rng, img_size, max_objects, obj_size)
        file_name = f'{image_id:012d}.png'
        Image.fromarray(pixels).save(osp.join(img_dir, file_name))
        images.append(dict(id=image_id, file_name=file_name, height=img_size[0], width=img_size[1]))
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id))
    coco = dict(
        info=dict(
            description='skipconv_det synthetic shapes (skipconv_det.datasets.synthetic_coco)',
            version='1.0',
            # The arguments that produced this split, so a caller can tell whether it is up to date.
            generator=dict(split=split, num_images=num_images, seed=seed, img_size=list(img_size),
                           max_objects=max_objects, obj_size=list(obj_size))),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)])
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    return ann_file


def generate_synthetic_coco(out_dir: str,
                            num_train: int = 600,
                            num_val: int = 100,
                            seed: int = 0,
                            img_size: Tuple[int, int] = (128, 128),
                            max_objects: int = 4,
                            obj_size: Tuple[float, float] = (0.15, 0.45),
                            overwrite: bool = False) -> Dict[str, str]:
    """Generate the train and val splits under ``out_dir`` and check them.

    The splits draw from independent streams spawned from ``seed``, so the val images do not depend on
    ``num_train``. A split whose annotation file records the same arguments is kept as it is unless
    ``overwrite`` is set (re-running the demo does not redraw the data).

    Args:
        out_dir (str): Dataset root.
        num_train (int): Training images. Default: 600.
        num_val (int): Validation images. Default: 100.
        seed (int): Seed. Default: 0.
        img_size, max_objects, obj_size: See :func:`generate_split`.
        overwrite (bool): Regenerate even if an identical split exists. Default: False.

    Returns:
        dict[str, str]: Annotation file per split, e.g. ``{'train': 'OUT/annotations/instances_train.json'}``.
    """
    seeds = np.random.SeedSequence(seed).spawn(len(SPLITS))
    ann_files = {}
    for split, num, split_seed in zip(SPLITS, (num_train, num_val), seeds):
        split_seed = int(split_seed.generate_state(1)[0])
        wanted = dict(split=split, num_images=num, seed=split_seed, img_size=list(img_size),
                      max_objects=max_objects, obj_size=list(obj_size))
        ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
        if overwrite or _recorded_args(ann_file) != wanted:
            ann_file = generate_split(out_dir, split, num, split_seed, img_size, max_objects, obj_size)
        validate_coco(ann_file, osp.join(out_dir, split))
        ann_files[split] = ann_file
    return ann_files


def _recorded_args(ann_file: str) -> Optional[dict]:
    if not osp.isfile(ann_file):
        return None
    with open(ann_file, encoding='utf-8') as f:
        return json.load(f).get('info', {}).get('generator')


def validate_coco(ann_file: str, img_dir: str) -> dict:
    """Check a generated COCO detection annotation file against its images; raise ``ValueError`` on the first
    problem.

    On top of what :func:`~skipconv_det.datasets.check_coco_annotations` checks before every training (fields,
    references, image files present), the generator's own output must have unique ids, images of the recorded
    size, boxes of positive size inside their image, and load in pycocotools.

    Returns:
        dict: Counts: ``images``, ``annotations``, ``categories``.
    """
    from pycocotools.coco import COCO  # a project dependency; imported here to keep the generator light

    check_coco_annotations(ann_file, img_dir)
    with open(ann_file, encoding='utf-8') as f:
        coco = json.load(f)
    images = {}
    for img in coco['images']:
        if img['id'] in images:
            raise ValueError(f'{ann_file}: duplicate image id {img["id"]}.')
        path = osp.join(img_dir, img['file_name'])
        with Image.open(path) as im:
            if im.size != (img['width'], img['height']):
                raise ValueError(f'{path}: size {im.size} differs from the recorded '
                                 f'{(img["width"], img["height"])}.')
        images[img['id']] = img
    ann_ids = set()
    for ann in coco['annotations']:
        if ann['id'] in ann_ids:
            raise ValueError(f'{ann_file}: duplicate annotation id {ann["id"]}.')
        ann_ids.add(ann['id'])
        img = images[ann['image_id']]
        x, y, w, h = ann['bbox']
        if not (w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img['width'] and y + h <= img['height']):
            raise ValueError(f'{ann_file}: annotation {ann["id"]} has box {ann["bbox"]} outside its '
                             f'{img["width"]}x{img["height"]} image.')
    api = COCO(ann_file)  # prints "loading annotations into memory..." like every COCO user sees
    if len(api.getImgIds()) != len(images) or len(api.getAnnIds()) != len(ann_ids):
        raise ValueError(f'{ann_file}: pycocotools indexed a different number of images or annotations.')
    return dict(images=len(images), annotations=len(ann_ids), categories=len(coco['categories']))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Generate the synthetic shapes dataset in COCO format.')
    parser.add_argument('--out', default='data/synthetic_coco', help='dataset root')
    parser.add_argument('--num-train', type=int, default=600, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--size', type=int, nargs='+', default=[128], metavar='SIZE',
                        help='image size: one value (square) or H W')
    parser.add_argument('--max-objects', type=int, default=4, help='at most this many objects per image')
    parser.add_argument('--obj-size', type=float, nargs=2, default=[0.15, 0.45], metavar=('MIN', 'MAX'),
                        help="range of an object's side, as a fraction of the image's shorter side")
    parser.add_argument('--overwrite', action='store_true', help='regenerate even if an identical split exists')
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error('--size takes one value (square) or two (H W).')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    size = tuple(args.size) * (2 // len(args.size))
    ann_files = generate_synthetic_coco(args.out, args.num_train, args.num_val, args.seed, size, args.max_objects,
                                        tuple(args.obj_size), args.overwrite)
    for split, ann_file in ann_files.items():
        with open(ann_file, encoding='utf-8') as f:
            coco = json.load(f)
        print(f'{split}: {len(coco["images"])} images, {len(coco["annotations"])} objects -> {ann_file}')


if __name__ == '__main__':
    main()
