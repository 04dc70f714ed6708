"""Fixtures shared by the test modules, and the ``slow`` marker's opt-in (markers are registered in setup.cfg)."""
import os

import pytest
import torch
from mmengine.registry import DefaultScope


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run only with SKIPCONV_SLOW_TESTS=1, so `make test` stays within the CI budget."""
    if os.environ.get('SKIPCONV_SLOW_TESTS'):
        return
    skip = pytest.mark.skip(reason='slow; run with SKIPCONV_SLOW_TESTS=1')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='module')
def one_thread():
    """Many small convs: one thread is faster than several when the cores are shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def mmdet_scope():
    """mmdet's modules registered and its scope the default, as in mmdet's tools."""
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield
