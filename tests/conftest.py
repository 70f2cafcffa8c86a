import pytest

from dropkit import _core


@pytest.fixture(params=_core.available_isas())
def isa(request):
    """Run the test once per instruction set this CPU supports."""
    previous = _core.simd_backend()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(previous)
