# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""A random batch as a model's forward takes it (after its data preprocessor), so that FLOPs, latency and training
steps can be measured without a dataset. Every tool that needs such a batch gets it from :func:`dummy_batch`."""
from typing import Any, List, Optional, Tuple

import torch
import torch.nn as nn

# A detector's training step needs targets; a few boxes per image are enough to run every loss.
_BOXES_PER_IMAGE = 5


def _det_samples(shape: Tuple[int, int], batch_size: int, generator: torch.Generator) -> List[Any]:
    """DetDataSamples with the metainfo that the ``predict``, ``'tensor'`` and ``loss`` forwards read (image, pad
    and batch shapes, unit scale factor) and random ground-truth boxes of class 0, which every detector has."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    height, width = shape
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape, scale_factor=(1.0, 1.0))
    image_size = torch.tensor([width, height] * 2, dtype=torch.float32)
    samples = []
    for _ in range(batch_size):
        # Corners in the first 40% of each side, extents of 10% to 60%: every box lies inside the image.
        corner = torch.rand(_BOXES_PER_IMAGE, 2, generator=generator) * 0.4
        extent = 0.1 + torch.rand(_BOXES_PER_IMAGE, 2, generator=generator) * 0.5
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = InstanceData(bboxes=torch.cat([corner, corner + extent], dim=1) * image_size,
                                           labels=torch.zeros(_BOXES_PER_IMAGE, dtype=torch.long))
        samples.append(sample)
    return samples


def _cls_samples(batch_size: int) -> List[Any]:
    """mmpretrain DataSamples with ground-truth label 0, which every classifier has."""
    from mmpretrain.structures import DataSample

    return [DataSample().set_gt_label(0) for _ in range(batch_size)]


def dummy_batch(scope: Optional[str],
                shape: Tuple[int, int],
                batch_size: int = 1,
                device: str = 'cpu',
                data_preprocessor: Optional[nn.Module] = None,
                seed: int = 0) -> Tuple[torch.Tensor, Optional[List[Any]]]:
    """A random batch as a model's data preprocessor hands it to the model, without a dataset.

    Args:
        scope (str, optional): The library of the model, which decides the data samples: 'mmdet' (DetDataSamples
            with image metainfo and a few ground-truth boxes), 'mmpretrain' (DataSamples with a ground-truth
            label); any other scope gets no data samples, as a plain module's forward takes the inputs alone.
        shape (tuple[int, int]): Image (H, W).
        batch_size (int): Images in the batch. Default: 1.
        device (str): Device of the inputs and data samples. Default: 'cpu'.
        data_preprocessor (nn.Module, optional): The model's data preprocessor. If given, random uint8 images and
            the data samples go through it in training mode, as a training batch does (normalised, padded, batch
            augments applied); if None, the inputs are random, already normalised pixels of exactly ``shape``.
            Default: None.
        seed (int): Seed of the random pixels and boxes. Default: 0.

    Returns:
        tuple[Tensor, list | None]: Inputs (N, 3, H, W) and the data samples (None for a plain module).
    """
    height, width = shape
    generator = torch.Generator().manual_seed(seed)
    if data_preprocessor is None:
        inputs = torch.randn(batch_size, 3, height, width, generator=generator)
    else:
        inputs = [torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
                  for _ in range(batch_size)]
    if scope == 'mmdet':
        samples = _det_samples((height, width), batch_size, generator)
    elif scope == 'mmpretrain':
        samples = _cls_samples(batch_size)
    else:
        samples = None
    if data_preprocessor is not None:
        data = data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
        inputs, samples = data['inputs'], data['data_samples']
    return inputs.to(device), None if samples is None else [sample.to(device) for sample in samples]
