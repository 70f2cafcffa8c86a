"""The kernels on numpy arrays, for writing your own training loops.

Every function takes array-likes, computes in float32 (the dtype of the C++
kernels) and returns new float32 arrays; inputs are never modified. Shapes are
row-major ``(n_samples, n_features)`` and dense weights are ``(n_in, n_out)``,
as in scikit-learn's ``coefs_``.

Arguments are checked before any kernel runs: a wrong type, shape, name or
hyperparameter raises ``TypeError`` or ``ValueError`` naming the argument.
Targets, sample weights, slopes and hyperparameters must be finite. NaN and
inf in the data that flows through a network (``x``, ``w``, ``z``, ``da``)
propagate as in numpy, so that a diverged layer shows as NaN.

Activation names: ``identity``, ``sigmoid`` (alias ``logistic``), ``tanh``,
``relu``, ``leaky_relu`` (uses ``slope``), ``prelu`` (uses ``slopes``, one per
unit) and ``elu`` (uses ``alpha``). ``relu'(0)`` is 0, as in PyTorch.
"""
import numbers
import operator

import numpy as np

from . import _core
from ._validation import all_finite

__all__ = [
    "gemm",
    "dense",
    "activation",
    "activation_grad",
    "maxout",
    "maxout_grad",
    "dropout",
    "dropout_mask",
    "softmax",
    "sigmoid",
    "softmax_cross_entropy",
    "binary_cross_entropy",
    "squared_error",
    "norm",
    "penalty_value",
    "activity_penalty",
]

ACTIVATIONS = ("identity", "sigmoid", "logistic", "tanh", "relu", "leaky_relu", "prelu", "elu")
DROPOUT_MODES = ("inverted", "standard")

# ----------------------------------------------------------------------------
# argument checks


def _real(value, name, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real scalar, optionally in a range; returned as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _integer(value, name, *, low, high):
    """An integer in [low, high]; bools are refused."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be in [{low}, {high}], got {value}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _name(value, name, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name}: unknown name {value!r}; expected one of {', '.join(choices)}")
    return value


def _array(value, name, *, ndim=None, finite=False):
    """value as a C-contiguous float32 array, after checking dtype and ndim.

    ndim is an int or a tuple of allowed ints (None: any). finite=True refuses
    NaN and inf, including values that overflow float32.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot be read as an array ({e})") from None
    if arr.dtype.kind not in "fiub":  # bools count as 0 and 1, as in scikit-learn
        raise TypeError(f"{name}: expected a real-valued numeric array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-d" for d in allowed)
            raise ValueError(f"{name}: expected a {want} array, got {arr.ndim}-d with shape {arr.shape}")
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=np.float32, order="C")  # keeps 0-d, unlike ascontiguousarray
    if finite and not all_finite(out):
        raise ValueError(f"{name}: contains NaN or inf (or values too large for float32)")
    return out


def _act_args(name, n_units, alpha, slope, slopes):
    """(kernel name, kernel param, slopes array or None) for an activation."""
    name = _name(name, "activation", ACTIVATIONS)
    alpha = _real(alpha, "alpha")
    slope = _real(slope, "slope")
    if name == "prelu":
        if slopes is None:
            raise ValueError("slopes: prelu needs one slope per unit, got None")
        slopes = _array(slopes, "slopes", ndim=1, finite=True)
        if slopes.shape[0] != n_units:
            raise ValueError(f"slopes: expected shape ({n_units},), one per unit, got {slopes.shape}")
    elif slopes is not None:
        raise ValueError(f"slopes: only prelu takes per-unit slopes, not {name}")
    param = {"leaky_relu": slope, "elu": alpha}.get(name, 0.0)
    return name, param, slopes


def _as_rows(z, name):
    """A 1-d or higher array as 2-d (rows, last axis); refuses 0-d."""
    if z.ndim == 0:
        raise ValueError(f"{name}: expected at least a 1-d array, got a scalar")
    return z.reshape(int(np.prod(z.shape[:-1])), z.shape[-1])


# ----------------------------------------------------------------------------
# dense layers and activations


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0):
    """alpha * op(a) @ op(b), where op transposes when asked.

    op(a) is (M, K) and op(b) is (K, N); returns (M, N) float32.
    """
    trans_a = _flag(trans_a, "trans_a")
    trans_b = _flag(trans_b, "trans_b")
    alpha = _real(alpha, "alpha")
    a = _array(a, "a", ndim=2)
    b = _array(b, "b", ndim=2)
    k_a = a.shape[0] if trans_a else a.shape[1]
    k_b = b.shape[1] if trans_b else b.shape[0]
    if k_a != k_b:
        raise ValueError(f"b: inner dimensions do not match: op(a) is (.., {k_a}), op(b) is ({k_b}, ..)")
    return _core.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha)


def dense(x, w, b=None, activation="identity", *, alpha=1.0, slope=0.01, slopes=None,
          return_z=False):
    """A dense layer: a = act(x @ w + b), with bias and activation fused.

    x is (B, IN), w is (IN, OUT), b is (OUT,) or None; slopes is (OUT,) for
    prelu. Returns a (B, OUT), or (a, z) with the pre-activation z (B, OUT)
    when return_z is true (activation_grad needs both).
    """
    x = _array(x, "x", ndim=2)
    w = _array(w, "w", ndim=2)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w: expected {x.shape[1]} rows to match x's {x.shape[1]} columns, got shape {w.shape}")
    n_out = w.shape[1]
    if b is not None:
        b = _array(b, "b", ndim=1)
        if b.shape[0] != n_out:
            raise ValueError(f"b: expected shape ({n_out},) to match w's columns, got {b.shape}")
    kind, param, slopes = _act_args(activation, n_out, alpha, slope, slopes)
    return_z = _flag(return_z, "return_z")
    z, a = _core.dense_forward(x, w, b, kind, param, slopes)
    return (a, z) if return_z else a


def activation(z, name, *, alpha=1.0, slope=0.01, slopes=None):
    """a = act(z), elementwise.

    z has any shape with at least one axis; prelu's slopes has one entry per
    element of the last axis. Returns a with z's shape.
    """
    z = _array(z, "z")
    rows = _as_rows(z, "z")
    kind, param, slopes = _act_args(name, rows.shape[1], alpha, slope, slopes)
    return _core.activation_forward(rows, kind, param, slopes).reshape(z.shape)


def activation_grad(da, z, a, name, *, alpha=1.0, slope=0.01, slopes=None):
    """dz = da * act'(z), the gradient through an activation.

    da, z and a = act(z) share one shape; a may be None (it is then
    recomputed). Returns dz with that shape; for prelu returns (dz, dslopes),
    dslopes having one entry per element of the last axis (the sum over all
    other axes of da * min(z, 0)).
    """
    da = _array(da, "da")
    z = _array(z, "z")
    if z.shape != da.shape:
        raise ValueError(f"z: expected the shape of da {da.shape}, got {z.shape}")
    da_rows = _as_rows(da, "da")
    kind, param, slopes = _act_args(name, da_rows.shape[1], alpha, slope, slopes)
    z_rows = z.reshape(da_rows.shape)
    if a is None:
        a_rows = _core.activation_forward(z_rows, kind, param, slopes)
    else:
        a = _array(a, "a")
        if a.shape != da.shape:
            raise ValueError(f"a: expected the shape of da {da.shape}, got {a.shape}")
        a_rows = a.reshape(da_rows.shape)
    dz, dslopes = _core.activation_backward(da_rows, z_rows, a_rows, kind, param, slopes)
    dz = dz.reshape(da.shape)
    return (dz, dslopes) if kind == "prelu" else dz


def maxout(z, k, *, return_argmax=False):
    """Maxout: the max over each group of k consecutive columns.

    z is (B, U*k); unit u owns columns u*k .. u*k+k-1. Returns a (B, U), or
    (a, argmax) with argmax (B, U) int32 in [0, k) when return_argmax is true.
    Ties go to the first piece.
    """
    k = _integer(k, "k", low=1, high=2**31 - 1)
    z = _array(z, "z", ndim=2)
    if z.shape[1] % k:
        raise ValueError(f"z: the number of columns ({z.shape[1]}) must be a multiple of k={k}")
    a, argmax = _core.maxout_forward(z, k)
    return (a, argmax) if _flag(return_argmax, "return_argmax") else a


def maxout_grad(da, argmax, k):
    """The gradient through maxout: da (B, U) routed to each unit's winning
    piece (argmax, (B, U) from maxout); returns dz (B, U*k), zero elsewhere."""
    k = _integer(k, "k", low=1, high=2**31 - 1)
    da = _array(da, "da", ndim=2)
    idx = np.asarray(argmax)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"argmax: expected an integer array, got dtype {idx.dtype}")
    if idx.shape != da.shape:
        raise ValueError(f"argmax: expected the shape of da {da.shape}, got {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= k):
        raise ValueError(f"argmax: entries must be in [0, {k})")
    return _core.maxout_backward(da, idx.astype(np.int32), k)


# ----------------------------------------------------------------------------
# dropout


def _dropout_key(rate, seed, step, stream, mode):
    """Checked (rate, scale, seed, stream, step)."""
    rate = _real(rate, "rate", low=0.0, high=1.0, high_open=True)
    seed = _integer(seed, "seed", low=0, high=2**64 - 1)
    step = _integer(step, "step", low=0, high=2**32 - 1)
    stream = _integer(stream, "stream", low=0, high=2**32 - 1)
    mode = _name(mode, "mode", DROPOUT_MODES)
    scale = 1.0 / (1.0 - rate) if mode == "inverted" else 1.0
    return rate, scale, seed, stream, step


def dropout(x, rate, *, seed, step=0, stream=0, mode="inverted"):
    """x with each element dropped (set to 0) with probability rate.

    Kept elements are scaled by 1 / (1 - rate) in mode 'inverted' and left as
    they are in mode 'standard' (which scales at prediction time instead).
    The mask depends only on (seed, stream, step) and the element's flat index
    (Philox4x32-10), so it equals dropout_mask(x.shape, ...) for the same
    arguments. Returns an array of x's shape.
    """
    rate, scale, seed, stream, step = _dropout_key(rate, seed, step, stream, mode)
    x = _array(x, "x")
    return _core.dropout_apply(x, rate, scale, seed=seed, stream=stream, step=step)


def dropout_mask(shape, rate, *, seed, step=0, stream=0, mode="inverted"):
    """The mask dropout multiplies by: an array of the given shape holding 0
    (dropped) or the keep scale (1 / (1 - rate) when inverted, 1 when standard)."""
    rate, scale, seed, stream, step = _dropout_key(rate, seed, step, stream, mode)
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        shape = tuple(_integer(s, "shape", low=0, high=2**62) for s in shape)
    except TypeError:
        raise TypeError(f"shape: expected an int or a tuple of ints, got {shape!r}") from None
    n = int(np.prod(shape, dtype=np.int64))
    mask = _core.dropout_mask(n, rate, scale, seed=seed, stream=stream, step=step)
    return mask.reshape(shape)


# ----------------------------------------------------------------------------
# output links and losses


def softmax(z):
    """Softmax over the last axis; z is (C,) or (B, C) with C >= 1. Returns z's shape."""
    z = _array(z, "z", ndim=(1, 2))
    if z.shape[-1] == 0:
        raise ValueError("z: softmax needs at least one column")
    return _core.output_link(z.reshape(-1, z.shape[-1]), "softmax_ce").reshape(z.shape)


def sigmoid(z):
    """The logistic function 1 / (1 + exp(-z)), elementwise; any shape."""
    z = _array(z, "z")
    return _core.output_link(z.reshape(1, -1), "binary_ce").reshape(z.shape)


def _loss_inputs(z, sample_weight, *, allow_1d):
    """z as (B, C) and the checked sample weights (or None)."""
    z = _array(z, "z", ndim=(1, 2) if allow_1d else 2)
    rows = z.reshape(-1, 1) if z.ndim == 1 else z
    if rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ValueError(f"z: expected at least one sample and one output, got shape {z.shape}")
    w = None
    if sample_weight is not None:
        w = _array(sample_weight, "sample_weight", ndim=1, finite=True)
        if w.shape[0] != rows.shape[0]:
            raise ValueError(f"sample_weight: expected shape ({rows.shape[0]},), one per sample, got {w.shape}")
        if (w < 0).any():
            raise ValueError("sample_weight: must be non-negative")
        if not w.sum(dtype=np.float64) > 0:
            raise ValueError("sample_weight: must not all be zero")
    return z, rows, w


def _mean_loss(kind, z, rows, y_rows, w):
    """(weighted mean loss, gradient of it with z's shape)."""
    total_weight = float(rows.shape[0]) if w is None else float(w.sum(dtype=np.float64))
    total, dz = _core.loss(rows, y_rows, w, kind, 1.0 / total_weight)
    return total / total_weight, dz.reshape(z.shape)


def _targets_like(y, rows_shape, z_shape):
    y = _array(y, "y", finite=True)
    if y.shape != tuple(z_shape):
        raise ValueError(f"y: expected the shape of z {tuple(z_shape)}, got {y.shape}")
    return y.reshape(rows_shape)


def softmax_cross_entropy(z, y, sample_weight=None):
    """Mean softmax cross-entropy of logits z (B, C) and its gradient.

    y is (B,) integer class labels in [0, C) or (B, C) target probabilities
    (one-hot or soft, non-negative). The mean is weighted by sample_weight
    (B,) when given. Returns (loss, dz) with dz = w_b (softmax(z) - y) / sum(w),
    of shape (B, C). Stable for any finite logits.
    """
    z, rows, w = _loss_inputs(z, sample_weight, allow_1d=False)
    n, c = rows.shape
    try:
        y_arr = np.asarray(y)
    except (ValueError, TypeError) as e:
        raise ValueError(f"y: cannot be read as an array ({e})") from None
    if y_arr.ndim == 1:
        if y_arr.dtype.kind not in "fiub":
            raise TypeError(f"y: expected integer class labels, got dtype {y_arr.dtype}")
        if y_arr.shape[0] != n:
            raise ValueError(f"y: expected {n} class labels, one per row of z, got {y_arr.shape[0]}")
        labels = y_arr.astype(np.float64)
        if not (np.isfinite(labels).all() and (labels == np.floor(labels)).all()
                and (labels >= 0).all() and (labels < c).all()):
            raise ValueError(f"y: class labels must be integers in [0, {c})")
        y_rows = np.zeros((n, c), np.float32)
        y_rows[np.arange(n), labels.astype(np.int64)] = 1.0
    else:
        y_rows = _targets_like(y, rows.shape, z.shape)
        if (y_rows < 0).any():
            raise ValueError("y: target probabilities must be non-negative")
    return _mean_loss("softmax_ce", z, rows, y_rows, w)


def binary_cross_entropy(z, y, sample_weight=None):
    """Mean binary cross-entropy of logits z (B, C) or (B,) against targets y
    in [0, 1] of the same shape (summed over outputs, averaged over samples,
    weighted by sample_weight (B,) when given), and its gradient.

    Returns (loss, dz) with dz = w_b (sigmoid(z) - y) / sum(w), shaped like z.
    Stable for any finite logits.
    """
    z, rows, w = _loss_inputs(z, sample_weight, allow_1d=True)
    y_rows = _targets_like(y, rows.shape, z.shape)
    if (y_rows < 0).any() or (y_rows > 1).any():
        raise ValueError("y: binary targets must be in [0, 1]")
    return _mean_loss("binary_ce", z, rows, y_rows, w)


def squared_error(z, y, sample_weight=None):
    """Half the mean squared error, as scikit-learn's MLPRegressor reports it.

    z (predictions) and y are (B, C) or (B,). loss = mean over samples
    (weighted by sample_weight (B,) when given) of sum_c (z - y)^2 / (2 C).
    Returns (loss, dz) with dz = w_b (z - y) / (C sum(w)), shaped like z.
    """
    z, rows, w = _loss_inputs(z, sample_weight, allow_1d=True)
    y_rows = _targets_like(y, rows.shape, z.shape)
    return _mean_loss("squared", z, rows, y_rows, w)


# ----------------------------------------------------------------------------
# norms and penalties


def norm(x, ord=2):
    """The L1 (``ord=1``: sum |x|) or L2 (``ord=2``: sqrt(sum x^2)) norm of
    all entries of x, accumulated in float64."""
    if ord not in (1, 2) or isinstance(ord, bool):
        raise ValueError(f"ord: expected 1 or 2, got {ord!r}")
    x = _array(x, "x")
    return float(_core.sum_abs(x)) if ord == 1 else float(np.sqrt(_core.sum_squares(x)))


def penalty_value(model):
    """A model's current weight-penalty term: the sum over layers of
    l1 |W|_1 + (l2/2) |W|^2 (biases included with penalize_bias). ``model`` is
    a :class:`dropkit.Network` or a fitted estimator."""
    net = getattr(model, "_network", model)
    if not hasattr(net, "penalty_value") or not hasattr(net, "_core"):
        raise TypeError(f"model: expected a dropkit.Network or a fitted dropkit estimator, got {type(model).__name__}")
    return float(net.penalty_value())


def activity_penalty(h, penalty):
    """(value, dvalue/dh) of an activity penalty (``dropkit.ActivityL1``,
    ``KLSparsity`` or ``StudentT``) on hidden outputs h (B, N), averaged over
    the B rows as in training."""
    from .penalties import ACTIVITY_PENALTIES
    if not isinstance(penalty, ACTIVITY_PENALTIES):
        raise TypeError(f"penalty: expected ActivityL1, KLSparsity or StudentT, got {type(penalty).__name__}")
    spec = penalty.spec()
    h = _array(h, "h", ndim=2, finite=True)
    if h.shape[0] == 0:
        raise ValueError("h: needs at least one row")
    value, grad = _core.activity_penalty(h, spec["kind"], spec["alpha"], spec.get("rho", 0.0))
    return float(value), grad
