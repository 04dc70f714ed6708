"""The two tiers of the suite: `make test` runs every test; `make test-fast` (the edit loop) deselects the markers
``e2e`` (a tool or a training end to end) and ``full`` (the rest of a reduced matrix, a subprocess or a benchmark run).
The markers are registered in setup.cfg."""
import pytest

full = pytest.mark.full


def full_only(values, fast=(), several=False):
    """Parameters for ``pytest.mark.parametrize``: those not in ``fast`` marked ``full``, so that `make test-fast`
    checks a representative subset of a matrix and `make test` all of it. ``several``: each value is a tuple of
    several arguments ('a,b' parametrisations)."""
    return [v if v in fast else pytest.param(*(v if several else (v, )), marks=full) for v in values]
