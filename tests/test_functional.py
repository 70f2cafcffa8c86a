"""dropkit.functional: results against numpy (and scikit-learn's metrics),
shapes, and a clear error for each kind of bad argument."""
import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_squared_error

from dropkit import functional as F

U32 = 2.0**-24


def sigmoid64(z):
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64)))


def softmax64(z):
    z = np.asarray(z, np.float64)
    return np.exp(z - np.logaddexp.reduce(z, axis=-1, keepdims=True))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------
# gemm and dense


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm(isa, rng, trans_a, trans_b):
    a = rng.standard_normal((7, 17))
    b = rng.standard_normal((17, 33))
    c = F.gemm(a.T if trans_a else a, b.T if trans_b else b, trans_a=trans_a, trans_b=trans_b, alpha=2.0)
    assert c.dtype == np.float32 and c.shape == (7, 33)
    # float64 inputs are rounded to float32 first: a relative error of u per
    # factor, plus the float32 sum of 17 terms
    bound = (2 + 2 * 17) * U32 * 2.0 * (np.abs(a) @ np.abs(b))
    assert np.all(np.abs(c - 2.0 * a @ b) <= bound)


def test_gemm_accepts_lists_and_does_not_modify_inputs():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    a_before = a.copy()
    c = F.gemm(a, [[1.0], [0.0], [-1.0]])
    assert np.array_equal(c, np.float32([[-2.0], [-2.0]]))
    assert np.array_equal(a, a_before)


@pytest.mark.parametrize("name,kwargs,ref", [
    ("identity", {}, lambda z: z),
    ("sigmoid", {}, sigmoid64),
    ("logistic", {}, sigmoid64),
    ("tanh", {}, np.tanh),
    ("relu", {}, lambda z: np.maximum(z, 0)),
    ("leaky_relu", {"slope": 0.25}, lambda z: np.where(z > 0, z, 0.25 * z)),
    ("elu", {"alpha": 0.5}, lambda z: np.where(z > 0, z, 0.5 * np.expm1(np.minimum(z, 0)))),
])
def test_dense(isa, rng, name, kwargs, ref):
    x = rng.standard_normal((9, 15)).astype(np.float32)
    w = rng.standard_normal((15, 17)).astype(np.float32)
    b = rng.standard_normal(17).astype(np.float32)
    a, z = F.dense(x, w, b, name, return_z=True, **kwargs)
    assert a.shape == z.shape == (9, 17) and a.dtype == np.float32
    z64 = x.astype(np.float64) @ w + b
    assert np.all(np.abs(z - z64) <= 20 * U32 * (np.abs(x) @ np.abs(w) + np.abs(b)))
    # the activation, judged on the z the kernel produced
    assert np.allclose(a, ref(z.astype(np.float64)), rtol=1e-6, atol=4e-7)
    assert np.array_equal(F.dense(x, w, b, name, **kwargs), a)


def test_dense_prelu_and_no_bias(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    slopes = np.float32([0.0, 0.1, 0.2, 0.3, -0.5])
    a, z = F.dense(x, w, activation="prelu", slopes=slopes, return_z=True)
    assert np.allclose(z, x @ w, rtol=1e-6, atol=1e-6)
    assert np.array_equal(a, np.where(z > 0, z, slopes * z))


# ----------------------------------------------------------------------------
# activations


@pytest.mark.parametrize("shape", [(17,), (3, 17), (2, 3, 17)])
def test_activation_any_leading_shape(rng, shape):
    z = rng.standard_normal(shape)
    slopes = np.linspace(0, 0.5, 17)
    a = F.activation(z, "prelu", slopes=slopes)
    assert a.shape == shape
    expected = np.where(z > 0, z, slopes * z)
    assert np.allclose(a, expected, rtol=2 * U32, atol=1e-7)
    assert np.allclose(F.activation(z, "tanh"), np.tanh(z), atol=4e-7)


@pytest.mark.parametrize("name,kwargs", [("sigmoid", {}), ("tanh", {}), ("relu", {}),
                                         ("leaky_relu", {"slope": 0.1}), ("elu", {"alpha": 1.5}),
                                         ("identity", {})])
def test_activation_grad_matches_finite_differences(isa, rng, name, kwargs):
    z = rng.uniform(-3, 3, (5, 17))
    z[np.abs(z) < 0.05] = 0.5  # away from kinks
    da = rng.standard_normal(z.shape)
    a = F.activation(z, name, **kwargs)
    dz = F.activation_grad(da, z, a, name, **kwargs)
    assert dz.shape == z.shape and dz.dtype == np.float32
    h = 1e-3
    # finite differences of the float32 function are noisy at ~1e-7 / h
    fd = (F.activation(z + h, name, **kwargs).astype(np.float64)
          - F.activation(z - h, name, **kwargs)) / (2 * h)
    assert np.allclose(dz, da * fd, atol=5e-4 * np.abs(da).max())
    # a may be left out; it is recomputed with the same kernel
    assert np.array_equal(F.activation_grad(da, z, None, name, **kwargs), dz)


def test_activation_grad_prelu_returns_slope_gradient(rng):
    z = rng.standard_normal((6, 2, 5))
    da = rng.standard_normal(z.shape)
    slopes = rng.uniform(0, 0.3, 5)
    dz, dslopes = F.activation_grad(da, z, None, "prelu", slopes=slopes)
    assert dz.shape == z.shape and dslopes.shape == (5,)
    z32, da32 = z.astype(np.float32), da.astype(np.float32)
    assert np.allclose(dz, np.where(z32 > 0, da32, slopes.astype(np.float32) * da32), rtol=2 * U32)
    expected = np.where(z32 > 0, 0.0, da32.astype(np.float64) * z32).reshape(-1, 5).sum(axis=0)
    assert np.allclose(dslopes, expected, rtol=1e-6, atol=1e-6)


def test_empty_arrays_keep_their_shape():
    for shape in [(0,), (0, 5), (5, 0), (2, 0, 3)]:
        z = np.zeros(shape)
        assert F.activation(z, "elu").shape == shape
        assert F.activation_grad(z, z, None, "tanh").shape == shape
        assert F.sigmoid(z).shape == shape
        assert F.dropout(z, 0.5, seed=0).shape == shape
    assert F.dense(np.zeros((0, 3)), W).shape == (0, 5)
    assert np.array_equal(F.dense(np.zeros((2, 0)), np.zeros((0, 5)), np.ones(5)), np.ones((2, 5)))
    assert F.softmax(np.zeros((0, 4))).shape == (0, 4)


def test_activation_nan_propagates():
    z = np.float32([[np.nan, 1.0]])
    for name in ("sigmoid", "tanh", "relu", "elu", "leaky_relu"):
        assert np.isnan(F.activation(z, name)[0, 0]), name
    assert np.isnan(F.softmax(z)).all()
    assert np.isnan(F.sigmoid(z)[0, 0])


# ----------------------------------------------------------------------------
# maxout


def test_maxout_and_grad(rng):
    z = rng.integers(-2, 3, (5, 12)).astype(np.float64)
    a, argmax = F.maxout(z, 3, return_argmax=True)
    groups = z.reshape(5, 4, 3)
    assert np.array_equal(a, groups.max(axis=2))
    assert np.array_equal(argmax, groups.argmax(axis=2))
    assert np.array_equal(F.maxout(z, 3), a)
    da = rng.standard_normal((5, 4))
    dz = F.maxout_grad(da, argmax, 3)
    expected = np.zeros((5, 4, 3), np.float32)
    np.put_along_axis(expected, argmax[..., None].astype(np.int64), da[..., None].astype(np.float32), axis=2)
    assert np.array_equal(dz, expected.reshape(5, 12))


# ----------------------------------------------------------------------------
# dropout


def test_dropout_inverted_and_standard(isa):
    x = np.arange(1, 1025, dtype=np.float32).reshape(32, 32)
    inv = F.dropout(x, 0.25, seed=3)
    std = F.dropout(x, 0.25, seed=3, mode="standard")
    kept = std != 0
    assert np.array_equal(std[kept], x[kept])
    assert np.array_equal(inv[kept], x[kept] * np.float32(1 / 0.75))
    assert np.array_equal(inv == 0, ~kept)
    mask = F.dropout_mask(x.shape, 0.25, seed=3)
    assert mask.shape == x.shape and set(np.unique(mask)) <= {0.0, np.float32(1 / 0.75)}
    assert np.array_equal(inv, x * mask)
    assert np.array_equal(F.dropout_mask(x.shape, 0.25, seed=3, mode="standard"), kept.astype(np.float32))


def test_dropout_keeps_the_expectation():
    x = np.ones(200_000, np.float32)
    out = F.dropout(x, 0.5, seed=11, step=2, stream=1)
    # mean of 2 * Bernoulli(1/2) over 2e5 draws: sd = 1 / sqrt(2e5) = 0.0022
    assert abs(out.mean() - 1.0) < 5 * 0.0022
    assert abs(np.mean(out == 0) - 0.5) < 5 * 0.0011


def test_dropout_is_deterministic_and_keyed():
    x = np.ones((16, 64), np.float32)
    ref = F.dropout(x, 0.5, seed=1, step=2, stream=3)
    assert np.array_equal(ref, F.dropout(x, 0.5, seed=1, step=2, stream=3))
    for change in ({"seed": 2}, {"step": 3}, {"stream": 4}):
        args = {"seed": 1, "step": 2, "stream": 3, **change}
        assert not np.array_equal(ref, F.dropout(x, 0.5, **args)), change


def test_dropout_rate_zero_is_identity_and_mask_shapes():
    x = np.float32([[1.5, -2.0, 3.0]])
    assert np.array_equal(F.dropout(x, 0.0, seed=0), x)
    assert F.dropout(np.float32(2.0), 0.0, seed=0).shape == ()
    assert F.dropout(x.T, 0.0, seed=0).flags.c_contiguous
    assert F.dropout_mask(7, 0.5, seed=0).shape == (7,)
    assert F.dropout_mask((), 0.5, seed=0).shape == ()
    assert F.dropout_mask((2, 0, 3), 0.5, seed=0).shape == (2, 0, 3)
    assert F.dropout_mask([3, np.int64(4)], 0.5, seed=0).shape == (3, 4)


# ----------------------------------------------------------------------------
# output links and losses


def test_softmax_and_sigmoid(isa, rng):
    z = rng.standard_normal((7, 17)) * 5
    p = F.softmax(z)
    assert p.shape == (7, 17) and np.allclose(p.sum(axis=1), 1, atol=1e-6)
    assert np.allclose(p, softmax64(z.astype(np.float32)), rtol=4e-6, atol=1e-9)
    assert np.allclose(F.softmax(z[0]), p[0])
    assert np.allclose(F.softmax([[1e4, -1e4, 0.0]]), [[1, 0, 0]])
    s = F.sigmoid(z.reshape(7, 17, 1))
    assert s.shape == (7, 17, 1)
    assert np.allclose(s[..., 0], sigmoid64(z.astype(np.float32)), rtol=4e-7, atol=2e-7)
    assert np.allclose(F.sigmoid([-1e4, 0.0, 1e4]), [0.0, 0.5, 1.0])


def numeric_grad(f, z, h=1e-4):
    """central differences of a float64 function of z"""
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = h
        g[i] = (f(z + e) - f(z - e)) / (2 * h)
    return g


def ce_mean(z, y, w):
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    return np.sum(w * -(y * logp).sum(axis=1)) / w.sum()


def test_softmax_cross_entropy(isa, rng):
    z = rng.standard_normal((9, 4)).astype(np.float32) * 3
    labels = rng.integers(0, 4, 9)
    w = rng.uniform(0.1, 2, 9)
    onehot = np.eye(4)[labels]
    loss, dz = F.softmax_cross_entropy(z, labels, sample_weight=w)
    loss2, dz2 = F.softmax_cross_entropy(z, onehot, sample_weight=w)
    assert loss == loss2 and np.array_equal(dz, dz2)
    assert dz.shape == (9, 4) and dz.dtype == np.float32
    z64 = z.astype(np.float64)
    w32 = w.astype(np.float32).astype(np.float64)
    assert loss == pytest.approx(ce_mean(z64, onehot, w32), rel=1e-6)
    assert loss == pytest.approx(log_loss(labels, softmax64(z64), sample_weight=w32, labels=range(4)), rel=1e-6)
    assert np.allclose(dz, numeric_grad(lambda zz: ce_mean(zz, onehot, w32), z64), atol=1e-6)
    # unweighted: the plain mean
    loss, _ = F.softmax_cross_entropy(z, labels)
    assert loss == pytest.approx(ce_mean(z64, onehot, np.ones(9)), rel=1e-6)


def test_softmax_cross_entropy_soft_targets_and_weights(rng):
    z = rng.standard_normal((5, 3))
    y = rng.dirichlet(np.ones(3), 5)
    w = np.float32([1.0, 0.0, 2.0, 1.0, 0.5])
    loss, dz = F.softmax_cross_entropy(z, y, w)
    assert np.all(dz[1] == 0)  # a zero-weight row gets no gradient
    # scaling every weight by the same factor changes nothing
    loss3, dz3 = F.softmax_cross_entropy(z, y, 3 * w)
    assert loss3 == pytest.approx(loss, rel=1e-6) and np.allclose(dz3, dz, rtol=1e-6, atol=1e-9)


def test_cross_entropies_stable_at_large_logits():
    z = np.float32([[1e4, -1e4], [-1e4, 1e4]])
    loss, dz = F.softmax_cross_entropy(z, [1, 1])
    assert loss == pytest.approx(1e4) and np.all(np.isfinite(dz))
    assert np.allclose(dz, [[0.5, -0.5], [0.0, 0.0]])
    loss, dz = F.binary_cross_entropy(z, np.float32([[0, 1], [1, 1]]))
    # rows: softplus(1e4) + (softplus(-1e4) + 1e4) = 2e4 and (softplus(-1e4) + 1e4) + 0 = 1e4
    assert loss == pytest.approx((2e4 + 1e4) / 2)
    assert np.allclose(dz, [[0.5, -0.5], [-0.5, 0.0]])


def bce_mean(z, y, w):
    return np.sum(w * (np.logaddexp(0, z) - y * z).sum(axis=1)) / w.sum()


def test_binary_cross_entropy(isa, rng):
    z = rng.standard_normal((8, 3)) * 2
    y = (rng.random((8, 3)) < 0.5).astype(np.float64)
    w = rng.uniform(0.5, 1.5, 8).astype(np.float32).astype(np.float64)
    loss, dz = F.binary_cross_entropy(z, y, w)
    loss_b, dz_b = F.binary_cross_entropy(z, y > 0.5, w)  # bool targets count as 0 and 1
    assert loss_b == loss and np.array_equal(dz_b, dz)
    z64 = z.astype(np.float32).astype(np.float64)
    assert loss == pytest.approx(bce_mean(z64, y, w), rel=1e-6)
    assert np.allclose(dz, numeric_grad(lambda zz: bce_mean(zz, y, w), z64), atol=1e-6)
    # a 1-d z is one output per sample; the gradient keeps z's shape
    loss1, dz1 = F.binary_cross_entropy(z[:, 0], y[:, 0])
    assert dz1.shape == (8,)
    assert loss1 == pytest.approx(bce_mean(z64[:, :1], y[:, :1], np.ones(8)), rel=1e-6)


def test_squared_error_is_scikit_learns(isa, rng):
    z = rng.standard_normal((10, 3))
    y = rng.standard_normal((10, 3))
    w = rng.uniform(0, 2, 10).astype(np.float32).astype(np.float64)
    z64, y64 = z.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    loss, dz = F.squared_error(z, y)
    assert loss == pytest.approx(mean_squared_error(y64, z64) / 2, rel=1e-6)
    loss, dz = F.squared_error(z, y, sample_weight=w)
    assert loss == pytest.approx(mean_squared_error(y64, z64, sample_weight=w) / 2, rel=1e-6)

    def mean_sq(zz):
        return np.sum(w * ((zz - y64) ** 2).sum(axis=1) / 6) / w.sum()

    assert np.allclose(dz, numeric_grad(mean_sq, z64), atol=1e-6)
    loss1, dz1 = F.squared_error(z[:, 0], y[:, 0])
    assert dz1.shape == (10,) and loss1 == pytest.approx(np.mean((z64[:, 0] - y64[:, 0]) ** 2) / 2, rel=1e-6)


# ----------------------------------------------------------------------------
# bad input: the exception type and the argument it names

X = np.ones((4, 3), np.float32)
W = np.ones((3, 5), np.float32)
Z = np.zeros((4, 5), np.float32)


@pytest.mark.parametrize("call,exc,match", [
    # gemm
    (lambda: F.gemm(np.ones(3), W), ValueError, "a: expected a 2-d array, got 1-d"),
    (lambda: F.gemm(X, X), ValueError, "b: inner dimensions do not match"),
    (lambda: F.gemm(X, W, trans_a=1), TypeError, "trans_a: expected a bool"),
    (lambda: F.gemm(X, W, alpha=float("nan")), ValueError, "alpha: must be finite"),
    (lambda: F.gemm(X + 1j, W), TypeError, "a: expected a real-valued numeric array, got dtype complex"),
    (lambda: F.gemm([["a", "b", "c"]], W), TypeError, "a: expected a real-valued numeric array"),
    (lambda: F.gemm([[1.0, 2.0], [3.0]], W), ValueError, "a: cannot be read as an array"),
    # dense
    (lambda: F.dense(np.ones(3), W), ValueError, "x: expected a 2-d array"),
    (lambda: F.dense(X, np.ones((4, 5))), ValueError, "w: expected 3 rows to match x's 3 columns"),
    (lambda: F.dense(X, W, np.ones(4)), ValueError, r"b: expected shape \(5,\)"),
    (lambda: F.dense(X, W, np.ones((1, 5))), ValueError, "b: expected a 1-d array"),
    (lambda: F.dense(X, W, None, "swish"), ValueError, "activation: unknown name 'swish'"),
    (lambda: F.dense(X, W, None, None), TypeError, "activation: expected a string"),
    (lambda: F.dense(X, W, None, "prelu"), ValueError, "slopes: prelu needs one slope per unit"),
    (lambda: F.dense(X, W, None, "prelu", slopes=np.ones(3)), ValueError, r"slopes: expected shape \(5,\)"),
    (lambda: F.dense(X, W, None, "prelu", slopes=np.full(5, np.nan)), ValueError, "slopes: contains NaN"),
    (lambda: F.dense(X, W, None, "relu", slopes=np.ones(5)), ValueError, "slopes: only prelu"),
    (lambda: F.dense(X, W, None, "elu", alpha=float("inf")), ValueError, "alpha: must be finite"),
    (lambda: F.dense(X, W, None, "leaky_relu", slope="0.1"), TypeError, "slope: expected a real number"),
    (lambda: F.dense(X, W, return_z="yes"), TypeError, "return_z: expected a bool"),
    # activations
    (lambda: F.activation(np.float32(1.0), "relu"), ValueError, "z: expected at least a 1-d array"),
    (lambda: F.activation(Z, "gelu"), ValueError, "activation: unknown name 'gelu'"),
    (lambda: F.activation_grad(Z, np.zeros((4, 4)), None, "relu"), ValueError, "z: expected the shape of da"),
    (lambda: F.activation_grad(Z, Z, np.zeros(5), "relu"), ValueError, "a: expected the shape of da"),
    (lambda: F.activation_grad(Z, Z, Z, "prelu", slopes=np.ones(4)), ValueError, r"slopes: expected shape \(5,\)"),
    # maxout
    (lambda: F.maxout(Z, 2), ValueError, "z: the number of columns .5. must be a multiple of k=2"),
    (lambda: F.maxout(Z, 0), ValueError, "k: must be in"),
    (lambda: F.maxout(Z, 2.5), TypeError, "k: expected an integer"),
    (lambda: F.maxout(Z, True), TypeError, "k: expected an integer, got bool"),
    (lambda: F.maxout(np.ones(4), 2), ValueError, "z: expected a 2-d array"),
    (lambda: F.maxout_grad(Z, np.zeros((4, 5), np.int32) + 2, 2), ValueError, r"argmax: entries must be in \[0, 2\)"),
    (lambda: F.maxout_grad(Z, np.zeros((4, 5)), 2), TypeError, "argmax: expected an integer array"),
    (lambda: F.maxout_grad(Z, np.zeros((4, 4), np.int32), 2), ValueError, "argmax: expected the shape of da"),
    # dropout
    (lambda: F.dropout(X, 1.0, seed=0), ValueError, "rate: must be < 1.0"),
    (lambda: F.dropout(X, -0.1, seed=0), ValueError, "rate: must be >= 0.0"),
    (lambda: F.dropout(X, float("nan"), seed=0), ValueError, "rate: must be finite"),
    (lambda: F.dropout(X, "0.5", seed=0), TypeError, "rate: expected a real number"),
    (lambda: F.dropout(X, True, seed=0), TypeError, "rate: expected a real number, got bool"),
    (lambda: F.dropout(X, 0.5), TypeError, "seed"),
    (lambda: F.dropout(X, 0.5, seed=-1), ValueError, "seed: must be in"),
    (lambda: F.dropout(X, 0.5, seed=2**64), ValueError, "seed: must be in"),
    (lambda: F.dropout(X, 0.5, seed=1.5), TypeError, "seed: expected an integer"),
    (lambda: F.dropout(X, 0.5, seed=0, step=2**32), ValueError, "step: must be in"),
    (lambda: F.dropout(X, 0.5, seed=0, stream=-1), ValueError, "stream: must be in"),
    (lambda: F.dropout(X, 0.5, seed=0, mode="gaussian"), ValueError, "mode: unknown name 'gaussian'"),
    (lambda: F.dropout(np.array(["a"]), 0.5, seed=0), TypeError, "x: expected a real-valued"),
    (lambda: F.dropout_mask((2, -1), 0.5, seed=0), ValueError, "shape: must be in"),
    (lambda: F.dropout_mask("ab", 0.5, seed=0), TypeError, "shape: expected an int or a tuple of ints"),
    (lambda: F.dropout_mask(2.0, 0.5, seed=0), TypeError, "shape: expected an int or a tuple of ints"),
    # links
    (lambda: F.softmax(np.ones((2, 2, 2))), ValueError, "z: expected a 1-d or 2-d array, got 3-d"),
    (lambda: F.softmax(np.ones((2, 0))), ValueError, "z: softmax needs at least one column"),
    (lambda: F.sigmoid(None), TypeError, "z: expected a real-valued numeric array, got dtype object"),
    # losses
    (lambda: F.softmax_cross_entropy(np.ones(5), [0]), ValueError, "z: expected a 2-d array"),
    (lambda: F.softmax_cross_entropy(np.ones((0, 3)), np.ones((0, 3))), ValueError, "z: expected at least one sample"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 5]), ValueError, r"y: class labels must be integers in \[0, 5\)"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, -1]), ValueError, "y: class labels must be integers"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 0.5]), ValueError, "y: class labels must be integers"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2]), ValueError, "y: expected 4 class labels"),
    (lambda: F.softmax_cross_entropy(Z, np.array(["a"] * 4)), TypeError, "y: expected integer class labels"),
    (lambda: F.softmax_cross_entropy(Z, np.ones((4, 4))), ValueError, r"y: expected the shape of z \(4, 5\)"),
    (lambda: F.softmax_cross_entropy(Z, -np.ones((4, 5))), ValueError, "y: target probabilities must be non-negative"),
    (lambda: F.softmax_cross_entropy(Z, np.full((4, 5), np.nan)), ValueError, "y: contains NaN or inf"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 3], np.ones(3)), ValueError, r"sample_weight: expected shape \(4,\)"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 3], -np.ones(4)), ValueError, "sample_weight: must be non-negative"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 3], np.zeros(4)), ValueError, "sample_weight: must not all be zero"),
    (lambda: F.softmax_cross_entropy(Z, [0, 1, 2, 3], [1, 1, np.inf, 1]), ValueError, "sample_weight: contains NaN"),
    (lambda: F.binary_cross_entropy(Z, np.full((4, 5), 1.5)), ValueError, r"y: binary targets must be in \[0, 1\]"),
    (lambda: F.binary_cross_entropy(Z, np.ones(4)), ValueError, "y: expected the shape of z"),
    (lambda: F.squared_error(np.ones((2, 2, 2)), np.ones((2, 2, 2))), ValueError, "z: expected a 1-d or 2-d array"),
    (lambda: F.squared_error(Z, np.full((4, 5), 1e39)), ValueError, "y: contains NaN or inf .or values too large"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
