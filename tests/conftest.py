"""Fixtures shared by the test modules, the ``slow`` marker's opt-in (markers are registered in setup.cfg), and the
threads of pytest-xdist's workers."""
import os

import pytest
import torch
from mmengine.registry import DefaultScope


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) each worker takes its share of the cores: torch's default,
    one thread per core in every worker, would have the workers' threads preempt each other."""
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


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
