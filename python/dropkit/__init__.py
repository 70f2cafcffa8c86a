"""dropkit: fast CPU training of regularized multilayer perceptrons.

The estimators (:class:`MLPClassifier`, :class:`MLPRegressor`) follow
scikit-learn's API; :class:`Network` and :mod:`dropkit.functional` are for
your own training loops; :func:`omp_encode` and :class:`OMPFeatures` do
sparse coding by orthogonal matching pursuit. The arithmetic runs in SIMD C++
kernels chosen for this CPU at import (see :func:`simd_backend`).
"""
import os as _os
import warnings as _warnings

from . import _core, functional
from .estimators import DivergenceError, MLPClassifier, MLPRegressor
from .network import Dense, Network
from .penalties import ActivityL1, KLSparsity, StudentT
from .sparse_coding import OMPFeatures, omp_encode

__version__ = "0.1.0"
__all__ = ["MLPClassifier", "MLPRegressor", "Network", "Dense", "DivergenceError", "ActivityL1", "KLSparsity",
           "StudentT", "functional", "simd_backend",
           "available_isas", "set_num_threads", "get_num_threads", "load", "omp_encode", "OMPFeatures"]

if _os.environ.get("DROPKIT_ISA") and _os.environ["DROPKIT_ISA"] not in _core.available_isas():
    _warnings.warn(f"DROPKIT_ISA={_os.environ['DROPKIT_ISA']!r} is not available on this CPU "
                   f"(available: {', '.join(_core.available_isas())}); using {_core.simd_backend()}.")


def simd_backend():
    """The instruction set the kernels run on: 'avx512', 'avx2' or 'scalar'.
    Set the environment variable DROPKIT_ISA before import to force a lower one."""
    return _core.simd_backend()


def available_isas():
    """Instruction sets this CPU can run, best first."""
    return list(_core.available_isas())


def set_num_threads(n):
    """Use n threads in dropkit's kernels (default: the CPUs this process may use)."""
    from ._validation import check_int
    _core.set_num_threads(check_int(n, "n"))


def get_num_threads():
    return _core.get_num_threads()


def load(path):
    """Load a model written by ``model.save(path)``; never executes code from the file."""
    from .io import load as _load
    return _load(path)
