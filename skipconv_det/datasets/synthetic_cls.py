# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Small generated classification sets, written in the on-disk formats mmpretrain's real loaders read.

There is no CIFAR or ImageNet on a machine without internet, so tests and the CPU learning demo write their own
data in exactly the official layouts and read it back through mmpretrain's own ``CIFAR10`` / ``CIFAR100`` /
``ImageNet`` datasets:

- CIFAR-10: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``;
  CIFAR-100: ``cifar-100-python/{train, test, meta}``: python pickles of dicts with a ``data`` uint8 array of
  shape (N, 3072) (the R, G and B planes of a 32x32 image, row-major) and ``labels`` (CIFAR-10) or
  ``fine_labels`` / ``coarse_labels`` (CIFAR-100).
- ImageNet: ``train/<wnid>/<wnid>_<k>.JPEG``, ``val/ILSVRC2012_val_<k>.JPEG`` and the annotation lists
  ``meta/train.txt`` (``<wnid>/<file> <label>``) and ``meta/val.txt`` (``<file> <label>``).

The images are class-conditional shapes: the class fixes the outline (disk, square, triangle, ring, cross) and the
orientation of the stripes that fill it (0 to 90 degrees); position, size, colours and noise are random. Three
difficulties (:data:`DIFFICULTIES`): ``'easy'`` (large, high-contrast shapes with wide stripes) is learnt to 100% by
a small CNN in minutes, which is what tests and the learning demo need; ``'hard'`` (small, low-contrast shapes with
fine, jittered stripes near the pixel period, faint to strong, stronger noise and distracting lines) leaves a CIFAR
ResNet-20 below 100% in the study's schedule, so that variants of a model can be told apart by their accuracy;
``'medium'`` is ``'hard'`` with stripes of one depth, for networks that learn the orientation more slowly.

Generated CIFAR files cannot pass mmpretrain's md5 check of the official release: configs read them with the
``Unverified*`` twins of :mod:`skipconv_det.datasets.unverified_cifar` (:func:`use_generated_data`). ImageNet has
no such check and is used unchanged.

Write a set from the command line (the study's data, e.g.)::

    python -m skipconv_det.datasets.synthetic_cls --out data/synthetic_cifar10_hard --difficulty hard
"""
import argparse
import math
import os.path as osp
import pickle
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.utils import mkdir_or_exist
from mmpretrain.datasets import CIFAR10, CIFAR100
from PIL import Image

from ..engine.checks import add_custom_import

SHAPES = ('disk', 'square', 'triangle', 'ring', 'cross')


class ShapeStyle(NamedTuple):
    """How hard a generated shape image is to classify (sizes are fractions of the image side, colours 0-255).

    Args:
        radius (tuple[float, float]): Range of the shape's radius.
        stripe_period (tuple[float, float], optional): Range of the stripes' period in pixels; None: an eighth
            of the image side.
        angle_jitter (float): The stripes' normal deviates from the class's angle by up to this many degrees.
        contrast (tuple[float, float], optional): Range of the light stripes' brightness above the background's;
            dark stripes keep ``1 - stripe_depth`` of it. None: independent colours, the foreground 150-255
            and the background 0-90, dark stripes ``stripe_depth`` darker than light ones.
        stripe_depth (tuple[float, float]): Range of how much darker dark stripes are than light ones, as a
            fraction: the faint end makes an image's stripe orientation hard to see, the strong end easy.
        noise (float): Std of the Gaussian pixel noise.
        lines (int): Number of random one-pixel lines drawn over the image, as clutter.

    A horizontal flip maps a stripe angle a to -a (stripes repeat every 180 degrees): with ``angle_jitter`` below
    half the classes' angle step (45 degrees for 10 classes) no flipped image lands on another class's angles.
    """
    radius: Tuple[float, float]
    stripe_period: Optional[Tuple[float, float]]
    angle_jitter: float
    contrast: Optional[Tuple[float, float]]
    stripe_depth: Tuple[float, float]
    noise: float
    lines: int


DIFFICULTIES: Dict[str, ShapeStyle] = {
    'easy': ShapeStyle(radius=(0.22, 0.38), stripe_period=None, angle_jitter=0.0, contrast=None,
                       stripe_depth=(0.25, 0.25), noise=12.0, lines=0),
    # 'hard' with every image's stripes at one depth, none faint: for networks that learn the stripes' orientation
    # more slowly than a ResNet.
    'medium': ShapeStyle(radius=(0.2, 0.36), stripe_period=(2.5, 4.0), angle_jitter=15.0, contrast=(60.0, 130.0),
                         stripe_depth=(0.27, 0.27), noise=13.0, lines=2),
    'hard': ShapeStyle(radius=(0.2, 0.36), stripe_period=(2.5, 4.0), angle_jitter=15.0, contrast=(60.0, 130.0),
                       stripe_depth=(0.02, 0.5), noise=13.0, lines=2),
}


def _orientations(num_classes: int) -> int:
    return math.ceil(num_classes / len(SHAPES))


def _stripe_angle(texture: int, num_textures: int) -> float:
    # Angles stay in [0, 90] degrees: a horizontal flip (the CIFAR/ImageNet train pipelines use one) maps an
    # angle a to 180 - a, which then never lands on another class's angle.
    return 0.5 * math.pi * texture / max(num_textures - 1, 1)


def shape_class_names(num_classes: int) -> List[str]:
    """Names of the generated classes: ``'<shape>-<stripe angle>deg'``, class c having shape ``SHAPES[c % 5]``."""
    textures = _orientations(num_classes)
    return [f'{SHAPES[c % len(SHAPES)]}-{math.degrees(_stripe_angle(c // len(SHAPES), textures)):g}deg'
            for c in range(num_classes)]


def _shape_mask(shape: str, y: np.ndarray, x: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside ``shape`` centred at the origin; y and x are pixel offsets from the centre."""
    if shape == 'disk':
        return x**2 + y**2 <= radius**2
    if shape == 'square':
        return np.maximum(abs(x), abs(y)) <= radius * 0.8
    if shape == 'triangle':  # apex up, base at y = radius / 2
        return (y <= radius * 0.5) & (abs(x) <= (y + radius) / 1.5 * 0.866)
    if shape == 'ring':
        return (x**2 + y**2 <= radius**2) & (x**2 + y**2 >= (0.55 * radius)**2)
    return (np.minimum(abs(x), abs(y)) <= radius * 0.3) & (np.maximum(abs(x), abs(y)) <= radius)  # cross


def _draw_lines(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Draw ``count`` one-pixel straight lines of random grey levels across ``img`` (H, W, 3), in place."""
    height, width = img.shape[:2]
    for _ in range(count):
        (y0, y1), (x0, x1) = rng.uniform(0, height - 1, 2), rng.uniform(0, width - 1, 2)
        steps = np.linspace(0, 1, 2 * max(height, width))
        img[np.round(y0 + (y1 - y0) * steps).astype(int), np.round(x0 + (x1 - x0) * steps).astype(int)] = \
            rng.uniform(0, 255)


def synthetic_shapes(num_images: int,
                     num_classes: int,
                     size: Tuple[int, int] = (32, 32),
                     seed: int = 0,
                     difficulty: str = 'easy') -> Tuple[np.ndarray, np.ndarray]:
    """Draw a balanced, shuffled set of class-conditional shape images.

    Class c is shape ``SHAPES[c % 5]`` filled with stripes whose normal is at ``90 * t / (T - 1)`` degrees, with
    ``t = c // 5`` and ``T = ceil(num_classes / 5)``. Position, radius, colours, stripe phase and pixel noise are
    random per image, within the ranges of the difficulty's :class:`ShapeStyle` (the foreground is always
    brighter than the background, so the outline is there to see).

    Args:
        num_images (int): Number of images; labels cycle through the classes, so they are balanced when
            ``num_images`` is a multiple of ``num_classes``.
        num_classes (int): Number of classes.
        size (tuple[int, int]): Image (height, width). Default: (32, 32).
        seed (int): Seed of the numpy generator. Default: 0.
        difficulty (str): A key of :data:`DIFFICULTIES`. Default: 'easy'.

    Returns:
        tuple[np.ndarray, np.ndarray]: RGB images of shape (N, H, W, 3), uint8, and labels of shape (N,), int64.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f'Unknown difficulty {difficulty!r}; use one of {", ".join(DIFFICULTIES)}.')
    style = DIFFICULTIES[difficulty]
    rng = np.random.default_rng(seed)
    height, width = size
    labels = rng.permutation(np.arange(num_images) % num_classes)
    textures = _orientations(num_classes)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = min(height, width)
    images = np.empty((num_images, height, width, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        radius = rng.uniform(*style.radius) * side
        cy = rng.uniform(radius, height - radius)
        cx = rng.uniform(radius, width - radius)
        inside = _shape_mask(SHAPES[label % len(SHAPES)], yy - cy, xx - cx, radius)
        angle = _stripe_angle(label // len(SHAPES), textures)
        # Draws that the style does not ask for are not made, so the easy set stays the one it always was.
        period = side / 8 if style.stripe_period is None else rng.uniform(*style.stripe_period)
        if style.angle_jitter:
            angle += math.radians(rng.uniform(-style.angle_jitter, style.angle_jitter))
        phase = 2 * np.pi * ((xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform())
        # A single depth draws nothing from rng: 'easy' and 'medium' (the 'hard' of before depths had a range) stay
        # the images they were.
        low, high = style.stripe_depth
        depth = low if low == high else rng.uniform(low, high)
        stripes = 1 - depth * (np.sin(phase) <= 0)
        if style.contrast is None:
            # Dark stripes stay brighter than any background, so stripes never break the outline.
            foreground = rng.uniform(150, 255, 3) * stripes[..., None]
            background = rng.uniform(0, 90, 3) * np.ones_like(stripes)[..., None]
        else:
            background = rng.uniform(0, 255 - style.contrast[1], 3) * np.ones_like(stripes)[..., None]
            foreground = background + rng.uniform(*style.contrast) * stripes[..., None]
        img = np.where(inside[..., None], foreground, background)
        _draw_lines(rng, img, style.lines)
        img = img + rng.normal(0, style.noise, (height, width, 3))
        images[n] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _dump(obj: dict, path: str) -> None:
    # Protocol 2, as the official (Python 2 era) files; mmpretrain reads them with pickle.loads(encoding='latin1').
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(data_root: str,
                num_train: int,
                num_test: int,
                cifar100: bool = False,
                seed: int = 0,
                difficulty: str = 'easy') -> str:
    """Write a generated CIFAR-10 (or CIFAR-100) set in the official python-pickle layout.

    Images come from :func:`synthetic_shapes` (10 or 100 classes, 32x32). CIFAR-10's training images are split
    over its five batch files. The file names are taken from mmpretrain's loader classes, so the layout is the
    one they read.

    Args:
        data_root (str): Directory to write into; pass it as the dataset's ``data_root``.
        num_train (int): Number of training images.
        num_test (int): Number of test images.
        cifar100 (bool): Write CIFAR-100 (``train``/``test``/``meta`` with fine and coarse labels) instead of
            CIFAR-10. Default: False.
        seed (int): Seed; the test split uses ``seed + 1``. Default: 0.
        difficulty (str): A key of :data:`DIFFICULTIES`. Default: 'easy'.

    Returns:
        str: ``data_root``.
    """
    loader = CIFAR100 if cifar100 else CIFAR10
    num_classes = 100 if cifar100 else 10
    folder = osp.join(data_root, loader.base_folder)
    mkdir_or_exist(folder)
    names = shape_class_names(num_classes)
    for split, files, count, split_seed in (('training', loader.train_list, num_train, seed),
                                            ('testing', loader.test_list, num_test, seed + 1)):
        images, labels = synthetic_shapes(count, num_classes, seed=split_seed, difficulty=difficulty)
        # (N, H, W, 3) -> (N, 3 * 32 * 32): R plane, then G, then B, each row-major.
        data = images.transpose(0, 3, 1, 2).reshape(count, -1)
        for k, ((filename, _), chunk) in enumerate(zip(files, np.array_split(np.arange(count), len(files)))):
            batch = {
                'batch_label': f'{split} batch {k + 1} of {len(files)}',
                'data': data[chunk],
                'filenames': [f'{names[labels[i]]}_{i}.png' for i in chunk],
            }
            if cifar100:
                batch['fine_labels'] = labels[chunk].tolist()
                batch['coarse_labels'] = (labels[chunk] // 5).tolist()  # 20 superclasses of 5, as in CIFAR-100
            else:
                batch['labels'] = labels[chunk].tolist()
            _dump(batch, osp.join(folder, filename))
    if cifar100:
        meta = {'fine_label_names': names, 'coarse_label_names': [f'superclass{k}' for k in range(20)]}
    else:
        meta = {'label_names': names, 'num_cases_per_batch': math.ceil(num_train / 5), 'num_vis': 3072}
    _dump(meta, osp.join(folder, loader.meta['filename']))
    return data_root


def write_imagenet(data_root: str,
                   num_train: int,
                   num_val: int,
                   num_classes: int = 1000,
                   size: Tuple[int, int] = (64, 64),
                   seed: int = 0) -> str:
    """Write a generated set in the ImageNet layout with annotation lists (``meta/train.txt``, ``meta/val.txt``).

    mmpretrain's ``ImageNet(data_root=..., split='train'|'val')`` picks up ``meta/<split>.txt`` when it exists,
    so any number of classes up to 1000 loads with the 1000 ImageNet class names. Class folders are named like
    WordNet ids (``n00000000``, ``n00000001``, ...), which are not real ones.

    Args:
        data_root (str): Directory to write into; pass it as the dataset's ``data_root``.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        num_classes (int): Number of classes. Default: 1000.
        size (tuple[int, int]): Image (height, width). Default: (64, 64).
        seed (int): Seed; the val split uses ``seed + 1``. Default: 0.

    Returns:
        str: ``data_root``.
    """
    mkdir_or_exist(osp.join(data_root, 'meta'))
    # Training images sit in one folder per class, validation images in one flat folder.
    splits = (('train', num_train, seed, lambda k, wnid: f'{wnid}/{wnid}_{k}.JPEG'),
              ('val', num_val, seed + 1, lambda k, wnid: f'ILSVRC2012_val_{k + 1:08d}.JPEG'))
    for split, count, split_seed, file_name in splits:
        images, labels = synthetic_shapes(count, num_classes, size, split_seed)
        lines = []
        for k, (img, label) in enumerate(zip(images, labels)):
            filename = file_name(k, f'n{label:08d}')
            path = osp.join(data_root, split, filename)
            mkdir_or_exist(osp.dirname(path))
            Image.fromarray(img).save(path, format='JPEG', quality=95)
            lines.append(f'{filename} {label}')
        with open(osp.join(data_root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return data_root


def use_generated_data(cfg: Config,
                       data_root: str,
                       batch_size: Optional[int] = None,
                       num_workers: int = 0) -> Config:
    """Point a config's train/val/test dataloaders at a set written by :func:`write_cifar` / :func:`write_imagenet`.

    CIFAR datasets become their ``Unverified*`` twins with ``download=False`` (:mod:`.unverified_cifar`), and
    ``skipconv_det`` (which registers them) joins ``custom_imports`` so the config still builds in a fresh
    process. Every other setting of the dataloaders (pipelines, samplers, evaluators) is kept.

    Args:
        cfg (Config): An mmpretrain config with CIFAR10, CIFAR100 or ImageNet dataloaders; changed in place.
        data_root (str): Root the generated set was written to.
        batch_size (int, optional): New batch size per GPU; None keeps the config's. Default: None.
        num_workers (int): Dataloader workers. Default: 0 (load in the main process).

    Returns:
        Config: ``cfg``.
    """
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        dataset = loader.dataset
        if dataset.type in ('CIFAR10', 'CIFAR100'):
            dataset.type = f'Unverified{dataset.type}'
            dataset.download = False
        dataset.data_root = data_root
        loader.num_workers = num_workers
        loader.persistent_workers = num_workers > 0
        if batch_size is not None:
            loader.batch_size = batch_size
    add_custom_import(cfg, 'skipconv_det')
    return cfg


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a generated set in the CIFAR-10 (or CIFAR-100) format.')
    parser.add_argument('--out', default='data/synthetic_cifar10_hard', help='dataset root (the config\'s data_root)')
    parser.add_argument('--num-train', type=int, default=3000, help='training images')
    parser.add_argument('--num-test', type=int, default=1000, help='test images')
    parser.add_argument('--difficulty', choices=list(DIFFICULTIES), default='hard')
    parser.add_argument('--cifar100', action='store_true', help='the CIFAR-100 layout and 100 classes')
    parser.add_argument('--seed', type=int, default=0, help='seed of the training split (the test split: seed + 1)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    write_cifar(args.out, args.num_train, args.num_test, args.cifar100, args.seed, args.difficulty)
    print(f'{args.difficulty} {"CIFAR-100" if args.cifar100 else "CIFAR-10"}-format set: {args.num_train} train / '
          f'{args.num_test} test images in {args.out}')


if __name__ == '__main__':
    main()
