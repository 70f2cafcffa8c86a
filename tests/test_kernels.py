"""The C++ kernels in dropkit._core against a few lines of float64 numpy.

Every test that takes the `isa` fixture runs once per instruction set this CPU
supports. Sizes are chosen to leave remainders for every vector width (1, 7,
15, 16, 17, 1023) and to cross the GEMM's packing blocks. Tolerances are
written next to each check and say where they come from; u = 2**-24 is the
unit roundoff of float32.
"""
import platform

import numpy as np
import pytest

from dropkit import _core

U32 = 2.0**-24  # unit roundoff of float32
ISAS = _core.available_isas()
X86 = platform.machine().lower() in ("x86_64", "amd64")

SHAPES = [(1, 1), (1, 7), (3, 15), (2, 16), (5, 17), (1, 1023), (7, 17), (33, 1023), (130, 65)]
ACTIVATIONS = ["identity", "sigmoid", "logistic", "tanh", "relu", "leaky_relu", "prelu", "elu"]


def assert_within(actual, expected, atol=0.0, rtol=0.0, what=""):
    """|actual - expected| <= atol + rtol |expected| elementwise; atol may be an array."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {err.size} elements out of tolerance; worst at {i}: "
            f"got {actual[i]!r}, expected {expected[i]!r}, bound {np.broadcast_to(bound, err.shape)[i]!r}"
        )


def logits(rng, shape, scale=3.0):
    """float32 values with exact zeros and a few large magnitudes mixed in."""
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    flat = z.reshape(-1)
    if flat.size >= 4:
        idx = rng.choice(flat.size, size=max(1, flat.size // 10), replace=False)
        flat[idx] = rng.choice(np.float32([0.0, -0.0, 30.0, -30.0, 100.0, -100.0]), size=idx.size)
    return z


# ----------------------------------------------------------------------------
# reference formulas in float64


def sigmoid64(z):
    z = np.asarray(z, np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def act64(name, z, param=0.0, slopes=None):
    z = np.asarray(z, np.float64)
    if name == "identity":
        return z
    if name in ("sigmoid", "logistic"):
        return sigmoid64(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, param * z)
    if name == "prelu":
        return np.where(z > 0, z, np.asarray(slopes, np.float64) * z)
    if name == "elu":
        return np.where(z > 0, z, param * np.expm1(np.minimum(z, 0.0)))
    raise KeyError(name)


def act_grad64(name, z, param=0.0, slopes=None):
    """d act / dz at z; relu'(0) = 0 as in PyTorch."""
    z = np.asarray(z, np.float64)
    if name == "identity":
        return np.ones_like(z)
    if name in ("sigmoid", "logistic"):
        s = sigmoid64(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, param)
    if name == "prelu":
        return np.where(z > 0, 1.0, np.asarray(slopes, np.float64) * np.ones_like(z))
    if name == "elu":
        return np.where(z > 0, 1.0, param * np.exp(np.minimum(z, 0.0)))
    raise KeyError(name)


# Forward tolerance of each activation, from the kernel's arithmetic: exp_approx
# has a relative error of about 2e-7, and tanh = 2 sigmoid(2z) - 1 turns that
# into an absolute error; leaky and prelu round one product.
ACT_TOL = {
    "identity": dict(atol=0.0, rtol=0.0),
    "relu": dict(atol=0.0, rtol=0.0),
    "leaky_relu": dict(atol=0.0, rtol=U32),
    "prelu": dict(atol=0.0, rtol=U32),
    "sigmoid": dict(atol=2e-7, rtol=4e-7),
    "logistic": dict(atol=2e-7, rtol=4e-7),
    "tanh": dict(atol=4e-7, rtol=0.0),
    "elu": dict(atol=4e-7, rtol=U32),
}


def act_args(name, rng, n):
    """(param, slopes) for an activation: slope for leaky_relu, alpha for elu."""
    # float32, as the kernel receives it
    param = np.float32({"leaky_relu": 0.07, "elu": 1.3}.get(name, 0.0))
    slopes = rng.uniform(-0.5, 0.9, n).astype(np.float32) if name == "prelu" else None
    return param, slopes


# ----------------------------------------------------------------------------
# gemm


def gemm_bound(a, b, k, alpha):
    """Rigorous float32 bound for a dot product of length k summed in any
    order, plus the alpha scaling and the panel-by-panel accumulation into C."""
    return 2 * (k + 4) * U32 * abs(alpha) * (np.abs(a) @ np.abs(b)) + 1e-37


# The later sizes sit just past the micro-tile (12, 6 or 4 rows, 32/16/4
# columns), the inner-dimension panel (at most 264 deep, panels of equal
# depth: 265 is two, 784 three), the row block (288 or 144) and the column
# block (1024 or 512), with single rows and batches of up to four strips (a
# small B) that read B in place, and one strip past those.
GEMM_SIZES = [(1, 1, 1), (7, 17, 15), (16, 1, 1023), (1, 1023, 7), (33, 1023, 16), (48, 96, 300), (49, 40, 20),
              (130, 65, 17), (17, 16, 300), (150, 530, 300), (5, 2100, 9),
              (6, 33, 257), (6, 33, 264), (7, 40, 265), (130, 70, 784), (13, 32, 193),
              (145, 17, 16), (1, 1025, 40), (2, 15, 513), (12, 1041, 7),
              (11, 31, 5), (25, 65, 258), (289, 40, 30), (23, 1030, 12),
              (300, 10, 300), (40, 7, 1030),  # few columns: dot products, or the transpose
              (61, 16, 47), (6, 3, 16), (9, 12, 1)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnk", GEMM_SIZES)
def test_gemm(isa, mnk, trans_a, trans_b):
    m, n, k = mnk
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    alpha = -0.75
    a_in = np.ascontiguousarray(a.T) if trans_a else a
    b_in = np.ascontiguousarray(b.T) if trans_b else b
    c = _core.gemm(a_in, b_in, trans_a=trans_a, trans_b=trans_b, alpha=alpha)
    assert c.dtype == np.float32 and c.shape == (m, n)
    expected = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    assert_within(c, expected, atol=gemm_bound(a, b, k, alpha), what="gemm")


def test_gemm_empty_inner_dimension(isa):
    c = _core.gemm(np.zeros((3, 0), np.float32), np.zeros((0, 5), np.float32))
    assert c.shape == (3, 5) and np.all(c == 0)


def test_gemm_same_bits_for_any_thread_count(isa):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 300)).astype(np.float32)
    b = rng.standard_normal((300, 530)).astype(np.float32)
    previous = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        one = _core.gemm(a, b)
        _core.set_num_threads(2)
        two = _core.gemm(a, b)
    finally:
        _core.set_num_threads(previous)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))


@pytest.mark.parametrize("n, k", [(10, 64), (256, 256), (600, 300), (1100, 7)])
def test_dense_one_row_same_bits_as_in_a_batch(isa, n, k):
    """A single row takes its own kernel (several column strips at once), and a
    batch only a few columns wide is computed as its transpose; each output
    must still be the same sum, so predicting one sample or a batch gives
    identical bits."""
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((40, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    batch = _core.dense_forward(x, w, b, "relu")[0]
    for i in (0, 17, 39):
        one = _core.dense_forward(x[i:i + 1].copy(), w, b, "relu")[0]
        assert np.array_equal(one.view(np.uint32), batch[i:i + 1].view(np.uint32))
    assert np.array_equal(_core.gemm(x[:1].copy(), w).view(np.uint32), _core.gemm(x, w)[:1].view(np.uint32))


# Large enough that the product is split over threads, with edges in every
# direction: rows, columns, or both split, and single rows reading B in place;
# and shared tasks, claimed by the threads: groups of columns (a batch of
# rows) and groups of rows (a single panel of B); and a small net's products
# at a batch of 32, just above the size that splits.
THREAD_SIZES = [(300, 530, 300), (7, 1100, 1023), (1023, 17, 300), (145, 530, 257), (1, 2100, 1500),
                (289, 530, 257), (2000, 10, 300), (700, 530, 100), (300, 1024, 256), (40, 2000, 300),
                (700, 13, 1000), (45, 700, 300), (289, 530, 265), (32, 256, 256), (256, 256, 32),
                (32, 256, 64), (33, 100, 70)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnk", THREAD_SIZES)
def test_gemm_same_bits_for_any_thread_count_at_awkward_sizes(isa, mnk, trans_a, trans_b):
    m, n, k = mnk
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    previous = _core.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            runs.append(_core.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5))
    finally:
        _core.set_num_threads(previous)
    for other in runs[1:]:
        assert np.array_equal(runs[0].view(np.uint32), other.view(np.uint32))
    a_op, b_op = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    assert_within(runs[0], 0.5 * (a_op @ b_op), atol=gemm_bound(a_op, b_op, k, 0.5), what="gemm")


@pytest.mark.parametrize("name", ["relu", "sigmoid", "prelu"])
@pytest.mark.parametrize("size", [(300, 300, 530), (5, 1023, 2100), (1023, 300, 17)])
def test_dense_forward_same_bits_for_any_thread_count(isa, size, name):
    bsz, n_in, n_out = size
    rng = np.random.default_rng(bsz + n_in + n_out)
    x = rng.standard_normal((bsz, n_in)).astype(np.float32)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    param, slopes = act_args(name, rng, n_out)
    previous = _core.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            runs.append(_core.dense_forward(x, w, b, name, param, slopes))
    finally:
        _core.set_num_threads(previous)
    for z, a in runs[1:]:
        assert np.array_equal(runs[0][0].view(np.uint32), z.view(np.uint32))
        assert np.array_equal(runs[0][1].view(np.uint32), a.view(np.uint32))


def test_gemm_into_out(isa):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((37, 70)).astype(np.float32)
    b = rng.standard_normal((70, 45)).astype(np.float32)
    out = np.full((37, 45), np.nan, np.float32)
    got = _core.gemm(a, b, out=out)
    assert got is out
    assert np.array_equal(out.view(np.uint32), _core.gemm(a, b).view(np.uint32))
    bad = [(np.zeros((37, 44), np.float32), "out: expected shape \\(37, 45\\)"),
           (np.zeros((37, 45), np.float64), "out: expected a C-contiguous float32 array"),
           (np.zeros((45, 37), np.float32).T, "out: expected a C-contiguous float32 array")]
    read_only = np.zeros((37, 45), np.float32)
    read_only.flags.writeable = False
    bad.append((read_only, "out: array is read-only"))
    for arr, message in bad:
        with pytest.raises(ValueError, match=message):
            _core.gemm(a, b, out=arr)
    square = rng.standard_normal((8, 8)).astype(np.float32)
    before = square.copy()
    with pytest.raises(ValueError, match="out: must not share memory with a or b"):
        _core.gemm(square, before, out=square)
    assert np.array_equal(square, before)  # refused before anything was written


def test_gemm_rejects_mismatched_inner_dimensions():
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.gemm(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))


# ----------------------------------------------------------------------------
# dense_forward: GEMM with bias and activation fused into the epilogue

# (B, IN, OUT): the last two cross the column block of packed B (the epilogue
# then offsets bias and prelu slopes) and split rows over threads
DENSE_SIZES = [(1, 1, 1), (7, 15, 17), (5, 1023, 16), (33, 17, 1023), (130, 200, 65),
               (3, 20, 2100), (290, 300, 70)]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("size", DENSE_SIZES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_forward(isa, size, name, with_bias):
    bsz, n_in, n_out = size
    rng = np.random.default_rng(bsz + n_in + n_out)
    x = rng.standard_normal((bsz, n_in)).astype(np.float32)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32) if with_bias else None
    param, slopes = act_args(name, rng, n_out)
    z, a = _core.dense_forward(x, w, b, name, param, slopes)
    assert z.shape == a.shape == (bsz, n_out)
    expected_z = x.astype(np.float64) @ w.astype(np.float64)
    bound = gemm_bound(x, w, n_in, 1.0)
    if with_bias:
        expected_z += b
        bound = bound + U32 * (np.abs(expected_z) + np.abs(b))  # one more rounding
    assert_within(z, expected_z, atol=bound, what="z")
    # the fused activation, judged on the z the kernel produced
    assert_within(a, act64(name, z, param, slopes), what="act(z)", **ACT_TOL[name])


def test_dense_forward_prelu_needs_slopes():
    x = np.ones((2, 3), np.float32)
    w = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="slopes"):
        _core.dense_forward(x, w, None, "prelu")
    with pytest.raises(ValueError, match="slopes"):
        _core.dense_forward(x, w, None, "prelu", 0.0, np.ones(3, np.float32))


# ----------------------------------------------------------------------------
# activations


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_forward(isa, shape, name):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    z = logits(rng, shape)
    param, slopes = act_args(name, rng, shape[1])
    a = _core.activation_forward(z, name, param, slopes)
    assert a.dtype == np.float32 and a.shape == shape
    assert_within(a, act64(name, z, param, slopes), what=name, **ACT_TOL[name])


def test_activation_extremes(isa):
    z = np.float32([[-1e4, -100.0, -88.0, -30.0, 0.0, 30.0, 88.0, 100.0, 1e4]])
    for name in ("sigmoid", "tanh", "elu"):
        a = _core.activation_forward(z, name, 1.0)
        assert np.all(np.isfinite(a)), name
        assert_within(a, act64(name, z, 1.0), what=name, **ACT_TOL[name])


@pytest.mark.parametrize("name", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu"])
def test_activation_propagates_nan(isa, name):
    # A NaN pre-activation must stay NaN (as in numpy and PyTorch), not turn
    # into a finite value that hides a diverged layer.
    z = np.full((3, 17), np.nan, np.float32)
    z[1, :8] = 1.0
    param, slopes = act_args(name, np.random.default_rng(0), 17)
    a = _core.activation_forward(z, name, param, slopes)
    assert np.array_equal(np.isnan(a), np.isnan(z)), name


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_backward(isa, shape, name):
    rng = np.random.default_rng(shape[0] * 17 + shape[1])
    z = logits(rng, shape)
    da = rng.standard_normal(shape).astype(np.float32)
    param, slopes = act_args(name, rng, shape[1])
    a = _core.activation_forward(z, name, param, slopes)  # backward reads the cached output
    dz, dslope = _core.activation_backward(da, z, a, name, param, slopes)
    assert dz.shape == shape and dslope.shape == (shape[1],)
    # the derivative from a cached a inherits a's error (<= ACT_TOL) times
    # at most 2, plus two roundings
    tol = {"identity": 0.0, "relu": 0.0, "leaky_relu": U32, "prelu": U32,
           "sigmoid": 6e-7, "logistic": 6e-7, "tanh": 1e-6, "elu": 6e-7}[name]
    expected = da.astype(np.float64) * act_grad64(name, z, param, slopes)
    assert_within(dz, expected, atol=tol * np.abs(da), rtol=U32, what=f"d{name}")
    if name == "prelu":
        terms = np.where(z > 0, 0.0, da.astype(np.float64) * z)
        # a sum of B float32 products, accumulated in float32
        bound = (shape[0] + 2) * U32 * np.abs(terms).sum(axis=0)
        assert_within(dslope, terms.sum(axis=0), atol=bound, what="dslope")
    else:
        assert np.all(dslope == 0)


def test_activation_backward_matches_finite_differences(isa):
    # the derivative formulas themselves, independent of act_grad64
    rng = np.random.default_rng(5)
    z = rng.uniform(-3, 3, (4, 17)).astype(np.float32)
    z[np.abs(z) < 0.05] = 0.5  # stay away from the kinks
    slopes = rng.uniform(0, 0.5, 17).astype(np.float32)
    h = 1e-3
    for name, param in [("sigmoid", 0.0), ("tanh", 0.0), ("leaky_relu", 0.125), ("prelu", 0.0), ("elu", 0.75)]:
        a = _core.activation_forward(z, name, param, slopes)
        dz, _ = _core.activation_backward(np.ones_like(z), z, a, name, param, slopes)
        fd = (act64(name, z.astype(np.float64) + h, param, slopes)
              - act64(name, z.astype(np.float64) - h, param, slopes)) / (2 * h)
        assert_within(dz, fd, atol=2e-6, what=name)  # central difference error ~h^2


def test_prelu_dslope_accumulates_into_zeroed_buffer(isa):
    # The binding starts dslope from zero each call: calling twice gives the same.
    z = np.float32([[-1.0, 2.0], [-3.0, -4.0]])
    da = np.float32([[1.0, 1.0], [2.0, 0.5]])
    slopes = np.float32([0.1, 0.2])
    a = _core.activation_forward(z, "prelu", 0.0, slopes)
    for _ in range(2):
        dz, dslope = _core.activation_backward(da, z, a, "prelu", 0.0, slopes)
        assert np.array_equal(dslope, np.float32([-1.0 - 6.0, -2.0]))
        assert np.array_equal(dz, np.float32([[0.1, 1.0], [0.2, 0.1]]))


def test_prelu_backward_same_bits_for_any_thread_count(isa):
    # prelu's rows go to the threads by columns, each column's slope gradient
    # summed over the rows in order: the split cannot change a bit
    rng = np.random.default_rng(8)
    z = logits(rng, (64, 2100))
    da = rng.standard_normal(z.shape).astype(np.float32)
    param, slopes = act_args("prelu", rng, z.shape[1])
    a = _core.activation_forward(z, "prelu", param, slopes)
    previous = _core.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            results.append(_core.activation_backward(da, z, a, "prelu", param, slopes))
    finally:
        _core.set_num_threads(previous)
    for dz, dslope in results[1:]:
        assert np.array_equal(dz, results[0][0]) and np.array_equal(dslope, results[0][1])


def test_activation_unknown_name():
    with pytest.raises(ValueError, match="unknown name 'swish'"):
        _core.activation_forward(np.zeros((1, 1), np.float32), "swish")


# ----------------------------------------------------------------------------
# maxout


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("bu", [(1, 1), (7, 17), (33, 16), (2, 1023), (300, 200)])
def test_maxout(isa, bu, k):
    bsz, units = bu
    rng = np.random.default_rng(bsz * units + k)
    # small integers, so ties are common: a tie goes to the first piece
    z = rng.integers(-3, 4, (bsz, units * k)).astype(np.float32)
    a, argmax = _core.maxout_forward(z, k)
    groups = z.reshape(bsz, units, k)
    assert np.array_equal(a, groups.max(axis=2))
    assert argmax.dtype == np.int32
    assert np.array_equal(argmax, groups.argmax(axis=2))

    da = rng.standard_normal((bsz, units)).astype(np.float32)
    dz = _core.maxout_backward(da, argmax, k)
    expected = np.zeros((bsz, units, k), np.float32)
    np.put_along_axis(expected, argmax[..., None].astype(np.int64), da[..., None], axis=2)
    assert np.array_equal(dz, expected.reshape(bsz, units * k))


def test_maxout_same_bits_for_any_thread_count(isa):
    rng = np.random.default_rng(9)
    z = rng.integers(-3, 4, (300, 600)).astype(np.float32)
    z[::7, ::5] = np.nan
    da = rng.standard_normal((300, 200)).astype(np.float32)
    previous = _core.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            a, argmax = _core.maxout_forward(z, 3)
            results.append((a, argmax, _core.maxout_backward(da, argmax, 3)))
    finally:
        _core.set_num_threads(previous)
    for got in results[1:]:
        for x, y in zip(got, results[0]):
            assert np.array_equal(x, y, equal_nan=True)


def test_maxout_propagates_nan(isa):
    z = np.float32([[np.nan, 1.0, 2.0, np.nan, 0.0, 1.0, 5.0, 3.0]])
    a, argmax = _core.maxout_forward(z, 2)
    assert np.isnan(a[0, 0]) and np.isnan(a[0, 1])
    assert a[0, 2] == 1.0 and a[0, 3] == 5.0
    assert list(argmax[0]) == [0, 1, 1, 0]


def test_maxout_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of k"):
        _core.maxout_forward(np.zeros((2, 5), np.float32), 2)
    with pytest.raises(ValueError, match="k: must be at least 1"):
        _core.maxout_forward(np.zeros((2, 4), np.float32), 0)
    with pytest.raises(ValueError, match="argmax: entries must be in"):
        _core.maxout_backward(np.zeros((1, 2), np.float32), np.int32([[0, 2]]), 2)


# ----------------------------------------------------------------------------
# Philox4x32-10 and dropout

M32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr, key):
    """Reference Philox4x32-10 on numpy uint64 arrays holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(x, np.uint64) for x in ctr)
    k0, k1 = (np.asarray(x, np.uint64) for x in key)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32)
        k0 = (k0 + np.uint64(0x9E3779B9)) & M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & M32
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def stream_reference(n, seed, stream, step):
    """Element i draws lane i % 4 of block i // 4 with counter
    (block low, block high, stream, step) and key (seed low, seed high)."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    key = (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))
    ctr = (blocks & M32, blocks >> np.uint64(32), np.uint64(stream), np.uint64(step))
    return philox4x32_10(ctr, key).reshape(-1)[:n]


# Known-answer vectors from Random123 (kat_vectors): counter, key, output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,out", PHILOX_KAT)
def test_philox_reference_matches_random123(ctr, key, out):
    assert tuple(int(x) for x in philox4x32_10(ctr, key)) == out


def test_philox_known_answer(isa):
    # counter (0, 0, 0, 0), key (0, 0): block 0 of seed 0, stream 0, step 0
    bits = _core.random_u32(4, seed=0, stream=0, step=0)
    assert [int(x) for x in bits] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


# The other two KAT vectors have counter words c0, c1 (the block index) out of
# reach, but their keys and c2, c3 (stream, step) are used here, and the
# reference above passes all three vectors.
KEYS = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2**64 - 1, 2**32 - 1, 2**32 - 1),
        (0x299F31D0A4093822, 0x13198A2E, 0x03707344), (12345678901234, 7, 99)]


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 1023])
@pytest.mark.parametrize("key", KEYS)
def test_random_u32_matches_reference(isa, key, n):
    seed, stream, step = key
    bits = _core.random_u32(n, seed=seed, stream=stream, step=step)
    assert bits.dtype == np.uint32
    assert np.array_equal(bits, stream_reference(n, seed, stream, step))


def test_random_u32_prefix_property(isa):
    # element i never depends on n: a short draw is a prefix of a long one
    long = _core.random_u32(1023, seed=3, stream=1, step=2)
    for n in (1, 7, 15, 16, 17):
        assert np.array_equal(_core.random_u32(n, seed=3, stream=1, step=2), long[:n])


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 1023])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_mask_is_threshold_of_stream(isa, n, rate):
    # keep(i) = bits(i) >= floor(rate * 2^32); kept entries hold the scale
    seed, stream, step = 42, 3, 7
    scale = 1.0 / (1.0 - rate)
    bits = stream_reference(n, seed, stream, step)
    keep = bits >= np.uint32(np.floor(rate * 2.0**32))
    mask = _core.dropout_mask(n, rate, scale, seed=seed, stream=stream, step=step)
    assert mask.dtype == np.float32 and mask.shape == (n,)
    assert np.array_equal(mask, np.where(keep, np.float32(scale), np.float32(0)))


@pytest.mark.parametrize("shape", [(1,), (7,), (15, 1), (16, 17), (33, 1023)])
def test_dropout_apply_scales_kept_entries(isa, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    rate, scale = 0.3, 1.0 / 0.7
    out = _core.dropout_apply(x, rate, scale, seed=9, stream=2, step=5)
    mask = _core.dropout_mask(x.size, rate, scale, seed=9, stream=2, step=5).reshape(shape)
    assert out.shape == shape
    # one float32 product per kept element, the same one the mask describes
    assert np.array_equal(out, np.where(mask != 0, x * np.float32(scale), np.float32(0)))
    assert np.array_equal(out, x * mask)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.8])
def test_dropout_rate(isa, rate):
    n = 1_000_000
    mask = _core.dropout_mask(n, rate, 1.0, seed=2024, stream=1, step=3)
    observed = np.mean(mask == 0)
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(observed - rate) <= 5 * sd, (observed, rate, sd)


def test_dropout_rate_zero_keeps_everything(isa):
    x = np.arange(1, 18, dtype=np.float32)
    assert np.array_equal(_core.dropout_apply(x, 0.0, 1.0, seed=1), x)


def test_dropout_same_bits_across_calls_and_isas(on_every_isa):
    def draw():
        return (_core.dropout_mask(1023, 0.5, 2.0, seed=77, stream=4, step=11),
                _core.dropout_apply(np.ones(1023, np.float32), 0.5, 2.0, seed=77, stream=4, step=11),
                _core.random_u32(1023, seed=77, stream=4, step=11))

    runs = on_every_isa(draw)
    runs_again = on_every_isa(draw)
    first = runs[ISAS[0]]
    for name in ISAS:
        for got, again, ref in zip(runs[name], runs_again[name], first):
            assert np.array_equal(got, ref), name
            assert np.array_equal(again, ref), name


def test_dropout_differs_by_seed_stream_and_step(isa):
    base = dict(seed=5, stream=1, step=1)
    ref = _core.dropout_mask(1024, 0.5, 1.0, **base)
    for change in (dict(seed=6), dict(seed=5 + 2**32), dict(stream=2), dict(step=2)):
        other = _core.dropout_mask(1024, 0.5, 1.0, **{**base, **change})
        # independent masks agree on about half the entries
        agree = np.mean(other == ref)
        assert 0.4 < agree < 0.6, (change, agree)


def test_dropout_rejects_bad_rate():
    for rate in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="rate: must be in"):
            _core.dropout_mask(4, rate, 1.0, seed=0)
        with pytest.raises(ValueError, match="rate: must be in"):
            _core.dropout_apply(np.zeros(4, np.float32), rate, 1.0, seed=0)


# ----------------------------------------------------------------------------
# losses and output links


def loss64(kind, z, y):
    """Per-row loss and d loss / dz in float64, as documented in losses.h."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    if kind == "softmax_ce":
        lse = np.logaddexp.reduce(z, axis=1, keepdims=True)
        return -(y * (z - lse)).sum(axis=1), np.exp(z - lse) - y
    if kind == "binary_ce":
        return (np.logaddexp(0.0, z) - y * z).sum(axis=1), sigmoid64(z) - y
    if kind == "squared":
        c = z.shape[1]
        return ((z - y) ** 2).sum(axis=1) / (2 * c), (z - y) / c
    raise KeyError(kind)


def targets(kind, rng, shape):
    bsz, c = shape
    if kind == "softmax_ce":
        y = np.zeros(shape, np.float32)
        y[np.arange(bsz), rng.integers(0, c, bsz)] = 1.0
        if bsz > 1:  # one soft row too
            y[0] = rng.dirichlet(np.ones(c))
        return y
    if kind == "binary_ce":
        return (rng.random(shape) < 0.4).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


LOSS_SHAPES = [(1, 1), (1, 7), (7, 17), (16, 15), (33, 1023), (130, 65)]


@pytest.mark.parametrize("kind", ["softmax_ce", "binary_ce", "squared"])
@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss(isa, kind, shape, weighted):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    z = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = targets(kind, rng, shape)
    w = rng.uniform(0, 2, shape[0]).astype(np.float32) if weighted else None
    if weighted and shape[0] > 2:
        w[1] = 0.0  # a row with zero weight contributes nothing
    grad_scale = 0.37
    total, dz = _core.loss(z, y, w, kind, grad_scale)
    per_row, dloss = loss64(kind, z, y)
    weights = np.ones(shape[0]) if w is None else w.astype(np.float64)
    # z - max(z) is rounded in float32 before the double-precision sums
    assert total == pytest.approx((weights * per_row).sum(), rel=1e-6, abs=1e-6)
    expected_dz = grad_scale * weights[:, None] * dloss
    assert_within(dz, expected_dz, atol=1e-7 * grad_scale * weights[:, None], rtol=4 * U32,
                  what=f"d{kind}")


@pytest.mark.parametrize("kind", ["softmax_ce", "binary_ce"])
def test_loss_stable_at_large_logits(isa, kind):
    z = np.float32([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [-1e4, 1e4, -1e4]])
    y = np.float32([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    total, dz = _core.loss(z, y, None, kind, 1.0)
    assert np.isfinite(total) and np.all(np.isfinite(dz))
    per_row, dloss = loss64(kind, z, y)
    assert total == pytest.approx(per_row.sum(), rel=1e-9)
    assert_within(dz, dloss, atol=1e-7)
    if kind == "softmax_ce":
        assert total == pytest.approx(2e4 + 0.0 + 2e4)


def test_loss_value_does_not_depend_on_grad_scale(isa):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((9, 5)).astype(np.float32)
    y = targets("softmax_ce", rng, (9, 5))
    total, _ = _core.loss(z, y, None, "softmax_ce", 1.0)
    total2, _ = _core.loss(z, y, None, "softmax_ce", 0.0)
    assert total == total2


@pytest.mark.parametrize("shape", LOSS_SHAPES)
def test_output_link(isa, shape):
    rng = np.random.default_rng(shape[0] + shape[1])
    z = logits(rng, shape)
    p = _core.output_link(z, "softmax_ce")
    lse = np.logaddexp.reduce(z.astype(np.float64), axis=1, keepdims=True)
    # exp_approx's 2e-7 relative error, z - max(z) rounded to float32 (an
    # absolute error of u |z - max z| in the exponent) and a float32 sum of C terms
    shifted = np.abs(z - z.max(axis=1, keepdims=True)).astype(np.float64)
    rtol = 4e-7 + U32 * shifted + 2 * shape[1] * U32
    assert_within(p, np.exp(z - lse), atol=1e-37, rtol=rtol, what="softmax")
    assert_within(p.astype(np.float64).sum(axis=1), np.ones(shape[0]), atol=2 * shape[1] * U32 + 4e-7)
    s = _core.output_link(z, "binary_ce")
    assert_within(s, sigmoid64(z), atol=2e-7, rtol=4e-7, what="sigmoid")
    assert np.array_equal(_core.output_link(z, "squared"), z)


def test_output_link_extremes(isa):
    z = np.float32([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    p = _core.output_link(z, "softmax_ce")
    assert_within(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    s = _core.output_link(z, "binary_ce")
    assert_within(s, sigmoid64(z), atol=1e-30 + 2e-38, rtol=4e-7)


def test_output_link_propagates_nan(isa):
    z = np.float32([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]])
    p = _core.output_link(z, "softmax_ce")
    assert np.all(np.isnan(p[0])) and np.all(np.isfinite(p[1]))
    s = _core.output_link(z, "binary_ce")
    assert np.isnan(s[0, 0]) and np.all(np.isfinite(s[0, 1:]))


def test_loss_rejects_bad_names_and_shapes():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="loss: unknown name 'hinge'"):
        _core.loss(z, z, None, "hinge", 1.0)
    with pytest.raises(ValueError, match="y: must have the shape of z"):
        _core.loss(z, np.zeros((2, 2), np.float32), None, "squared", 1.0)
    with pytest.raises(ValueError, match="sample_weight: expected shape"):
        _core.loss(z, z, np.ones(3, np.float32), "squared", 1.0)


# ----------------------------------------------------------------------------
# optimizers


def f32(x):
    """A hyperparameter as the kernel sees it: rounded to float32."""
    return float(np.float32(x))


class ReferenceOptimizer:
    """The update rules documented in optimizers.h, in float64, with the
    hyperparameters rounded to float32 as the kernel receives them (beta2 =
    0.999 is 0.99900001 there, which moves 1 - beta2 by 1.3e-5)."""

    def __init__(self, kind, w, lr, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
                 eps=1e-8, rho=0.99, l2=0.0, weight_decay=0.0):
        self.kind, self.lr, self.mu, self.nesterov = kind, f32(lr), f32(momentum), nesterov
        self.beta1, self.beta2, self.eps, self.rho = f32(beta1), f32(beta2), f32(eps), f32(rho)
        self.l2, self.wd = f32(l2), f32(weight_decay)
        self.w = w.astype(np.float64)
        self.m = np.zeros_like(self.w)
        self.v = np.zeros_like(self.w)

    def step(self, g, t):
        g = g.astype(np.float64) + self.l2 * self.w
        w = self.w * (1 - self.lr * self.wd)
        if self.kind == "sgd":
            if self.mu == 0:
                w -= self.lr * g
            else:
                self.m = self.mu * self.m + g
                w -= self.lr * (g + self.mu * self.m if self.nesterov else self.m)
        elif self.kind == "adagrad":
            self.v += g * g
            w -= self.lr * g / (np.sqrt(self.v) + self.eps)
        elif self.kind == "rmsprop":
            self.v = self.rho * self.v + (1 - self.rho) * g * g
            w -= self.lr * g / (np.sqrt(self.v) + self.eps)
        elif self.kind in ("adam", "adamw"):
            self.m = self.beta1 * self.m + (1 - self.beta1) * g
            self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
            mhat = self.m / (1 - self.beta1**t)
            vhat = self.v / (1 - self.beta2**t)
            w -= self.lr * mhat / (np.sqrt(vhat) + self.eps)
        self.w = w


OPTIMIZERS = {
    "sgd": dict(kind="sgd", lr=0.1),
    "sgd_l2_wd": dict(kind="sgd", lr=0.1, l2=0.3, weight_decay=0.2),
    "momentum": dict(kind="sgd", lr=0.05, momentum=0.9),
    "nesterov": dict(kind="sgd", lr=0.05, momentum=0.9, nesterov=True),
    "nesterov_l2_wd": dict(kind="sgd", lr=0.05, momentum=0.8, nesterov=True, l2=0.1, weight_decay=0.05),
    "adagrad": dict(kind="adagrad", lr=0.1, eps=1e-10),
    "adagrad_l2": dict(kind="adagrad", lr=0.1, l2=0.2),
    "rmsprop": dict(kind="rmsprop", lr=0.01, rho=0.9),
    "rmsprop_wd": dict(kind="rmsprop", lr=0.01, rho=0.99, weight_decay=0.1),
    "adam": dict(kind="adam", lr=1e-3),
    "adam_l2": dict(kind="adam", lr=1e-2, beta1=0.8, beta2=0.99, l2=0.05),
    "adamw": dict(kind="adamw", lr=1e-2, weight_decay=0.1),
    "adamw_l2_eps": dict(kind="adamw", lr=1e-2, weight_decay=0.1, l2=0.01, eps=1e-3),
}


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 1023])
@pytest.mark.parametrize("config", sorted(OPTIMIZERS))
def test_optimizer_step(isa, config, n):
    args = OPTIMIZERS[config]
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    ref = ReferenceOptimizer(w=w, **args)
    kernel_args = {k: val for k, val in args.items() if k != "kind"}
    for t in range(1, 6):
        g = rng.standard_normal(n).astype(np.float32)
        _core.optimizer_step(w, g, m, v, args["kind"], t=t, **kernel_args)
        ref.step(g, t)
        # float32 state against float64: a few roundings per step, compounding
        # mildly over five steps
        assert_within(w, ref.w, atol=1e-6, rtol=1e-6, what=f"{config} w at t={t}")
        if (args["kind"] == "sgd" and args.get("momentum", 0) > 0) or args["kind"] in ("adam", "adamw"):
            assert_within(m, ref.m, atol=1e-6, rtol=1e-6, what=f"{config} m at t={t}")
        if args["kind"] in ("adagrad", "rmsprop", "adam", "adamw"):
            assert_within(v, ref.v, atol=1e-7, rtol=1e-6, what=f"{config} v at t={t}")


def test_optimizer_step_late_t(isa):
    # bias corrections at a large step count are ~1; no loss of precision
    rng = np.random.default_rng(0)
    w = rng.standard_normal(17).astype(np.float32)
    m = rng.standard_normal(17).astype(np.float32) * 0.1
    v = rng.uniform(0.01, 1, 17).astype(np.float32)
    g = rng.standard_normal(17).astype(np.float32)
    ref = ReferenceOptimizer("adam", w, lr=1e-3)
    ref.m, ref.v = m.astype(np.float64), v.astype(np.float64)
    _core.optimizer_step(w, g, m, v, "adam", lr=1e-3, t=10_000)
    ref.step(g, 10_000)
    assert_within(w, ref.w, atol=1e-6, rtol=1e-6)


def test_optimizer_step_writes_in_place_only_to_float32():
    w = np.zeros(4, np.float64)
    s = np.zeros(4, np.float32)
    with pytest.raises(TypeError):
        _core.optimizer_step(w, s, s, s, "sgd", lr=0.1)
    with pytest.raises(ValueError, match="step count starts at 1"):
        _core.optimizer_step(s.copy(), s, s.copy(), s.copy(), "adam", lr=0.1, t=0)
    with pytest.raises(ValueError, match="solver: unknown name"):
        _core.optimizer_step(s.copy(), s, s.copy(), s.copy(), "lbfgs", lr=0.1)


# ----------------------------------------------------------------------------
# the ISAs agree with each other

requires_two_isas = pytest.mark.skipif(len(ISAS) < 2, reason="only one instruction set here")


def _agree(results, atol=0.0, rtol=0.0, what=""):
    ref = results["scalar"]
    for name, got in results.items():
        for g, r in zip(got, ref):
            assert_within(g, r, atol=atol, rtol=rtol, what=f"{what} {name} vs scalar")


@requires_two_isas
def test_isas_agree_gemm(on_every_isa):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((130, 300)).astype(np.float32)
    b = rng.standard_normal((300, 65)).astype(np.float32)
    res = on_every_isa(lambda: (_core.gemm(a, b, alpha=0.5),))
    # each is within the bound of the exact product, so within twice it of each other
    _agree(res, atol=2 * gemm_bound(a, b, 300, 0.5), what="gemm")


@requires_two_isas
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_isas_agree_activations(on_every_isa, name):
    rng = np.random.default_rng(12)
    z = logits(rng, (33, 1023))
    da = rng.standard_normal(z.shape).astype(np.float32)
    param, slopes = act_args(name, rng, 1023)

    def run():
        a = _core.activation_forward(z, name, param, slopes)
        dz, dslope = _core.activation_backward(da, z, a, name, param, slopes)
        return a, dz, dslope

    res = on_every_isa(run)
    # exp_approx with and without FMA contraction differs by a few ulp
    tol = {"sigmoid": 4e-7, "logistic": 4e-7, "tanh": 8e-7, "elu": 8e-7}.get(name, 0.0)
    ref = res["scalar"]
    for isa_name, (a, dz, dslope) in res.items():
        assert_within(a, ref[0], atol=tol, rtol=2 * U32, what=f"{name} a on {isa_name}")
        assert_within(dz, ref[1], atol=2 * tol * np.abs(da), rtol=2 * U32, what=f"{name} dz on {isa_name}")
        bound = 2 * 35 * U32 * np.abs(np.where(z > 0, 0.0, da.astype(np.float64) * z)).sum(axis=0)
        assert_within(dslope, ref[2], atol=bound, what=f"{name} dslope on {isa_name}")


@requires_two_isas
def test_isas_agree_maxout_losses_links(on_every_isa):
    rng = np.random.default_rng(13)
    z = (rng.standard_normal((33, 1023)) * 4).astype(np.float32)
    y = targets("softmax_ce", rng, z.shape)
    w = rng.uniform(0, 1, 33).astype(np.float32)

    def run():
        a, argmax = _core.maxout_forward(z, 3)
        out = [a, argmax, _core.maxout_backward(a, argmax, 3)]
        for kind in ("softmax_ce", "binary_ce", "squared"):
            total, dz = _core.loss(z, y, w, kind, 0.5)
            out += [np.float64(total), dz, _core.output_link(z, kind)]
        return out

    res = on_every_isa(run)
    ref = res["scalar"]
    for isa_name, got in res.items():
        for i in range(3):  # maxout is exact
            assert np.array_equal(got[i], ref[i]), isa_name
        for i in range(3, len(got)):
            assert_within(got[i], ref[i], atol=1e-7, rtol=1e-6, what=f"loss/link {i} on {isa_name}")


@requires_two_isas
@pytest.mark.parametrize("config", sorted(OPTIMIZERS))
def test_isas_agree_optimizers(on_every_isa, config):
    args = dict(OPTIMIZERS[config])
    kind = args.pop("kind")
    rng = np.random.default_rng(14)
    w0 = rng.standard_normal(1023).astype(np.float32)
    grads = [rng.standard_normal(1023).astype(np.float32) for _ in range(4)]

    def run():
        w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
        for t, g in enumerate(grads, start=1):
            _core.optimizer_step(w, g, m, v, kind, t=t, **args)
        return w, m, v

    # w is O(1) and moves by sums of O(lr) steps: FMA contraction on the
    # vector paths changes the last bits of each step
    _agree(on_every_isa(run), atol=1e-6, rtol=1e-6, what=config)


# ----------------------------------------------------------------------------
# flush-to-zero stays inside the kernels


def _kernel_calls():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((7, 17)).astype(np.float32)
    w = rng.standard_normal((17, 5)).astype(np.float32)
    y = targets("softmax_ce", rng, (7, 5))
    s = np.ones(5, np.float32)
    z5 = x @ w
    p = np.zeros(17, np.float32)
    return {
        "gemm": lambda: _core.gemm(x, x, trans_b=True),
        "dense_forward": lambda: _core.dense_forward(x, w, s, "elu", 1.0),
        "activation_forward": lambda: _core.activation_forward(x, "tanh"),
        "activation_backward": lambda: _core.activation_backward(x, x, x, "prelu", 0.0, np.ones(17, np.float32)),
        "maxout": lambda: _core.maxout_backward(x[:, :4], _core.maxout_forward(x[:, :16], 4)[1], 4),
        "dropout_apply": lambda: _core.dropout_apply(x, 0.5, 2.0, seed=1),
        "dropout_mask": lambda: _core.dropout_mask(17, 0.5, 2.0, seed=1),
        "loss": lambda: _core.loss(z5, y, None, "softmax_ce", 1.0),
        "output_link": lambda: _core.output_link(z5, "binary_ce"),
        "optimizer_step": lambda: _core.optimizer_step(p, x[0], p.copy(), p.copy(), "adam", lr=0.1),
    }


@pytest.mark.parametrize("kernel", sorted(_kernel_calls()))
def test_denormal_mode_does_not_leak(isa, kernel):
    _kernel_calls()[kernel]()
    tiny = np.float32(1e-38) / np.float32(100)
    assert tiny != 0 and abs(tiny) < np.finfo(np.float32).tiny
    assert np.float64(1e-308) / 1e4 != 0


@pytest.mark.skipif(not X86, reason="flush-to-zero is an x86 MXCSR setting here")
def test_kernels_flush_subnormals(isa):
    # results that would be subnormal in float32 come out as zero inside every
    # kernel that does arithmetic
    x = np.full((3, 17), 1e-30, np.float32)
    w = np.full((17, 2), 1e-10, np.float32)
    z, a = _core.dense_forward(x, w, None, "identity")
    assert np.all(z == 0)
    assert np.all(_core.gemm(x, w) == 0)
    assert np.all(_core.activation_forward(-x, "leaky_relu", 1e-10) == 0)
    assert np.all(_core.dropout_apply(x, 0.0, 1e-10, seed=0) == 0)
    # 1 / (1 + e^88) and e^-87 / 7 are below float32's smallest normal number
    assert _core.output_link(np.float32([[-88.0]]), "binary_ce")[0, 0] == 0
    assert _core.output_link(np.float32([[0, 0, 0, 0, 0, 0, 0, -87]]), "softmax_ce")[0, 7] == 0
    _, dz = _core.loss(np.float32([[1e-20]]), np.float32([[0.0]]), None, "squared", 1e-20)
    assert np.all(dz == 0)


# ----------------------------------------------------------------------------
# the finiteness check of data

FINITE_SIZES = [0, 1, 7, 15, 16, 17, 63, 64, 65, 1023, 3 * (1 << 16) + 5]


@pytest.mark.parametrize("n", FINITE_SIZES)
def test_all_finite_against_numpy(isa, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 1e30).astype(np.float32)
    big = np.finfo(np.float32).max
    x[:4] = [big, -big, -0.0, 1e-45][:min(n, 4)]  # finite extremes: x * 0 is 0 for each
    assert _core.all_finite(x) is True
    # every position of a short array (head, vector body, tail); the ends and
    # a chunk boundary of a long one
    positions = range(n) if n <= 65 else sorted({0, min(1 << 16, n - 1), n // 2, n - 1})
    for pos in positions:
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[pos] = bad
            assert _core.all_finite(y) is bool(np.isfinite(y).all()) is False, (pos, bad)


def test_all_finite_same_answer_for_any_thread_count(isa):
    x = np.ones(5 * (1 << 16) + 3, np.float32)
    previous = _core.get_num_threads()
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            assert _core.all_finite(x)
            for pos in (0, x.size // 3, x.size - 1):
                y = x.copy()
                y[pos] = np.nan
                assert not _core.all_finite(y), (threads, pos)
    finally:
        _core.set_num_threads(previous)


def test_all_finite_takes_only_contiguous_float32():
    with pytest.raises(TypeError):
        _core.all_finite(np.ones(4))
    with pytest.raises(TypeError):
        _core.all_finite(np.ones((4, 4), np.float32)[:, ::2])
