# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""CIFAR loaders for CIFAR-format files that are not the official release.

mmpretrain's ``CIFAR10`` / ``CIFAR100`` check every file against the md5 of the official release (and try to
download it when that fails), so generated files (:func:`skipconv_det.datasets.synthetic_cls.write_cifar`) can
never pass. :class:`UnverifiedCIFAR10` and :class:`UnverifiedCIFAR100` are those same loaders with the md5 entries
set to ``None``, which their integrity check reads as "existence only" (``if md5 is not None and not
check_md5(...)``). Use them, with ``download=False``, for any CIFAR-format data that is not the official release.

This module only registers the two datasets; ``import skipconv_det`` imports it where mmpretrain is installed.
"""
from typing import List, Sequence

from mmpretrain.datasets import CIFAR10, CIFAR100
from mmpretrain.registry import DATASETS


def _without_md5(entries: Sequence[Sequence[str]]) -> List[list]:
    return [[name, None] for name, _ in entries]


@DATASETS.register_module()
class UnverifiedCIFAR10(CIFAR10):
    """mmpretrain's ``CIFAR10`` for CIFAR-10-format files that are not the official release (no md5 check).

    Same arguments and loading code as ``mmpretrain.datasets.CIFAR10``; pass ``download=False`` so missing files
    raise instead of fetching the official archive.
    """
    train_list = _without_md5(CIFAR10.train_list)
    test_list = _without_md5(CIFAR10.test_list)
    meta = {**CIFAR10.meta, 'md5': None}


@DATASETS.register_module()
class UnverifiedCIFAR100(CIFAR100):
    """mmpretrain's ``CIFAR100`` for CIFAR-100-format files that are not the official release (no md5 check).

    Same arguments and loading code as ``mmpretrain.datasets.CIFAR100``; pass ``download=False``.
    """
    train_list = _without_md5(CIFAR100.train_list)
    test_list = _without_md5(CIFAR100.test_list)
    meta = {**CIFAR100.meta, 'md5': None}
