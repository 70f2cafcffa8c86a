"""Shared fixtures: run a test once per instruction set this CPU supports."""
import pytest
from sklearn.datasets import load_digits

from dropkit import _core

ISAS = _core.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test on each ISA in turn (e.g. avx512, avx2, scalar) and
    restores the previously active one afterwards."""
    previous = _core.simd_backend()
    _core.set_isa(request.param)
    try:
        yield request.param
    finally:
        _core.set_isa(previous)


@pytest.fixture
def on_every_isa():
    """A function that calls fn() once per ISA and returns {isa: result},
    for tests that compare the paths with each other."""

    def run(fn):
        previous = _core.simd_backend()
        results = {}
        try:
            for name in ISAS:
                _core.set_isa(name)
                results[name] = fn()
        finally:
            _core.set_isa(previous)
        return results

    return run


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits scaled to [0, 1]: (X, y)."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y
