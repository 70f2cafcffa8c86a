"""Argument checks shared by every public entry point.

Each raises ValueError or TypeError whose message starts with the argument's
name and says what was expected.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core


def check_number(value, name):
    if type(value) is float and math.isfinite(value):  # the common case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def check_rate(value, name):
    """A probability in [0, 1)."""
    value = check_number(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a value in [0, 1), got {value!r}")
    return value


def check_nonneg(value, name, strict=False):
    value = check_number(value, name)
    if value < 0 or (strict and value == 0):
        raise ValueError(f"{name}: expected a {'positive' if strict else 'non-negative'} number, got {value!r}")
    return value


def check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def as_float32_matrix(X, name, n_features=None, allow_empty=False):
    """X as a C-contiguous float32 2-d array with finite values (one copy at most)."""
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array, got {arr.ndim}-d with shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: empty array of shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (columns), got {arr.shape[1]}")
    return to_float32(arr, name)


def all_finite(arr):
    """Whether every element of a float array is finite, without the
    temporary of np.isfinite(arr).all(), which for the training data is a
    quarter of its size again. A C-contiguous float32 array (the engine's
    input) is read once by the vector kernels, on every thread; any other
    by numpy's float64 sum, which cannot overflow from float32 values, so
    it is finite exactly when each of them is. For float64 arrays the
    answer may be False for huge finite values (a sum of two 1e308s), never
    True for a NaN or an infinity."""
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        return _core.all_finite(arr)
    return bool(np.isfinite(np.add.reduce(arr, axis=None, dtype=np.float64)))


def to_float32(arr, name):
    """A C-contiguous float32 copy (or the array itself), refusing values that
    are not finite or that overflow float32."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not all_finite(out):
        if np.asarray(arr).dtype.kind == "f" and np.isfinite(arr).all():
            raise ValueError(f"{name}: values too large for float32")
        raise ValueError(f"{name}: contains NaN or infinity")
    return out
