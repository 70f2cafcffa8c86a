"""The regularization suite: weight penalties (L1 proximal and subgradient,
L2, elastic net, max-norm), activity penalties, DropConnect and Monte Carlo
dropout, through the kernels, Network and the estimators."""

import numpy as np
import pytest

from dropkit import ActivityL1, Dense, KLSparsity, MLPClassifier, MLPRegressor, Network, StudentT, _core
from dropkit import functional as F


def onehot(y, c):
    return np.eye(c, dtype=np.float32)[y]


# ----------------------------------------------------------------------------
# activity penalties: kernel against numpy, then whole-network gradients


def numpy_activity(h, penalty):
    h = h.astype(np.float64)
    B = h.shape[0]
    if isinstance(penalty, ActivityL1):
        return penalty.alpha * np.abs(h).sum() / B, penalty.alpha * np.sign(h) / B
    if isinstance(penalty, StudentT):
        return penalty.alpha * np.log1p(h ** 2).sum() / B, penalty.alpha * 2 * h / (1 + h ** 2) / B
    rho, q = penalty.rho, h.mean(axis=0)
    value = penalty.beta * (rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))).sum()
    grad = penalty.beta * (-rho / q + (1 - rho) / (1 - q)) / B
    return value, np.broadcast_to(grad, h.shape)


@pytest.mark.parametrize("penalty", [ActivityL1(0.3), StudentT(0.7), KLSparsity(0.1, 2.0)], ids=str)
# (300, 257) is split over threads by rows and, for kl, by columns
@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (33, 130), (5, 1023), (300, 257)])
def test_activity_penalty_kernel_matches_numpy(isa, penalty, shape):
    rng = np.random.default_rng(0)
    h = rng.uniform(0.01, 0.99, shape).astype(np.float32)
    if not isinstance(penalty, KLSparsity):
        h -= 0.5
    value, grad = F.activity_penalty(h, penalty)
    ref_value, ref_grad = numpy_activity(h, penalty)
    assert value == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_student_t_value_over_the_whole_float_range(isa):
    """log(1 + h^2) in float: accurate for tiny h (where 1 + h^2 rounds to
    1), for huge h (where h^2 overflows float) and everywhere between."""
    magnitudes = np.array([1e-30, 1e-12, 3e-5, 1e-3, 0.1, 0.7, 1.0, 1.5, 30.0, 6e4, 7e4, 1e10, 1e19, 1e20, 3e38])
    h = np.concatenate([magnitudes, -magnitudes, [0.0]]).astype(np.float32)[None, :]
    value, grad = F.activity_penalty(h, StudentT(1.0))
    ref_value, ref_grad = numpy_activity(h, StudentT(1.0))
    assert value == pytest.approx(ref_value, rel=1e-6)
    for x in magnitudes:  # each term alone, so that small ones are not lost in the sum
        one = np.array([[x]], np.float32)
        assert F.activity_penalty(one, StudentT(1.0))[0] == pytest.approx(np.log1p(np.float64(one) ** 2).item(),
                                                                          rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-30)


def test_activity_penalty_value_of_a_diverged_layer_is_nan(isa):
    """The kernel itself (functional refuses NaN input): a NaN output of a
    diverged layer shows in the loss instead of vanishing from it."""
    h = np.array([[0.3, np.nan, 0.2]], np.float32)
    for kind in ("l1", "student_t", "kl"):
        assert np.isnan(_core.activity_penalty(h, kind, 0.1, 0.1)[0]), kind


@pytest.mark.parametrize("penalty", [ActivityL1(0.3), StudentT(0.7), KLSparsity(0.1, 2.0)], ids=str)
def test_activity_penalty_same_bits_for_any_thread_count(isa, penalty):
    h = np.random.default_rng(3).uniform(0.01, 0.99, (300, 257)).astype(np.float32)
    previous = _core.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            runs.append(F.activity_penalty(h, penalty))
    finally:
        _core.set_num_threads(previous)
    for value, grad in runs[1:]:
        assert value == runs[0][0]
        assert np.array_equal(grad.view(np.uint32), runs[0][1].view(np.uint32))


def objective(net, X, Y):
    out = net.forward(X, training=True)
    total, dout = _core.loss(out, Y, None, "softmax_ce", 1.0 / len(X))
    return total / len(X) + sum(net._core.last_activity), dout


@pytest.mark.parametrize("penalties", [
    [ActivityL1(0.05), StudentT(0.1)],
    [KLSparsity(0.2, 0.5), KLSparsity(0.05, 1.0)],
], ids=["l1-studentt", "kl"])
def test_finite_difference_gradients_with_activity_penalties(isa, penalties):
    """Gradients of data loss + activity penalties, with dropout and
    DropConnect on too (masks are fixed within a step). Logistic outputs stay
    away from |h|'s kink at 0, where differences would straddle it."""
    act = "logistic"
    rng = np.random.default_rng(4)
    net = Network(6, [Dense(11, act, dropout=0.2, dropconnect=0.3, activity_penalty=penalties[0]),
                      Dense(9, act, dropout=0.3, activity_penalty=penalties[1]),
                      Dense(3, "identity", dropconnect=0.2)], random_state=2)
    X = rng.standard_normal((10, 6)).astype(np.float32)
    Y = onehot(rng.integers(0, 3, 10), 3)
    _, dout = objective(net, X, Y)
    net.zero_grad()
    net.backward(dout)
    grads = net.grads.copy()
    params = net.params
    h = 1e-2
    for i in rng.choice(params.size, 40, replace=False):
        old = params[i]
        params[i] = old + h
        up = objective(net, X, Y)[0]
        params[i] = old - h
        down = objective(net, X, Y)[0]
        params[i] = old
        numeric = (up - down) / (2 * h)
        assert abs(numeric - grads[i]) <= 2e-3 + 3e-2 * abs(numeric), (i, numeric, grads[i])


@pytest.mark.parametrize("mode", ["inverted", "standard"])
def test_backward_after_a_prediction_mode_forward_is_its_gradient(isa, mode):
    """forward(X) without training draws no masks, scales by the weight-
    scaling rule in standard mode and adds no activity penalty; backward then
    gives the gradient of that function (an input-saliency map, say), for the
    weights and for X, checked by finite differences."""
    rng = np.random.default_rng(5)
    net = Network(6, [Dense(11, "tanh", dropout=0.3, dropconnect=0.4, activity_penalty=StudentT(0.5)),
                      Dense(9, "tanh", dropout=0.5, dropconnect=0.2),
                      Dense(3, "identity", dropout=0.2)], dropout_mode=mode, random_state=2)
    X = rng.standard_normal((10, 6)).astype(np.float32)
    R = rng.standard_normal((10, 3)).astype(np.float32)
    net.forward(X, training=True)  # masks drawn and kept: the next pass must not use them
    net.forward(X)
    net.zero_grad()
    dX = net.backward(R)
    grads = net.grads.copy()
    objective = lambda: float((net.forward(X).astype(np.float64) * R).sum())  # noqa: E731
    params, h = net.params, 1e-2
    for i in rng.choice(params.size, 40, replace=False):
        old = params[i]
        params[i] = old + h
        up = objective()
        params[i] = old - h
        down = objective()
        params[i] = old
        numeric = (up - down) / (2 * h)
        assert abs(numeric - grads[i]) <= 2e-3 + 3e-2 * abs(numeric), (i, numeric, grads[i])
    for b, j in [(0, 0), (3, 5), (9, 2)]:
        Xp, Xm = X.copy(), X.copy()
        Xp[b, j] += h
        Xm[b, j] -= h
        numeric = float(((net.forward(Xp).astype(np.float64) - net.forward(Xm)) * R).sum()) / (2 * h)
        assert abs(numeric - dX[b, j]) <= 2e-3 + 3e-2 * abs(numeric), (b, j, numeric, dX[b, j])


# ----------------------------------------------------------------------------
# weight penalties in the optimizer pass


def one_step(solver, l1=0.0, l2=0.0, l1_mode="proximal", max_norm=None, lr=0.1):
    rng = np.random.default_rng(0)
    net = Network(9, [Dense(7, "identity")], solver=solver, learning_rate=lr, momentum=0.0, l1=l1, l2=l2,
                  l1_mode=l1_mode, max_norm=max_norm, random_state=0)
    X = rng.standard_normal((5, 9)).astype(np.float32)
    W0 = net.weights[0].astype(np.float64).copy()
    out = net.forward(X, training=True)
    dout = (out - 0.5) / 5
    net.zero_grad()
    net.backward(dout)
    G = X.T.astype(np.float64) @ dout
    net.step()
    return W0, G, net.weights[0]


def soft(w, t):
    return np.sign(w) * np.maximum(np.abs(w) - t, 0)


def test_proximal_l1_is_a_soft_threshold_after_the_sgd_step(isa):
    W0, G, W1 = one_step("sgd", l1=0.5, l2=0.01)
    expected = soft(W0 - 0.1 * (G + 0.01 * W0), 0.1 * 0.5)
    np.testing.assert_allclose(W1, expected, rtol=1e-5, atol=1e-6)
    assert (W1 == 0).sum() == (expected == 0).sum() > 0


def test_subgradient_l1_adds_the_sign_to_the_gradient(isa):
    W0, G, W1 = one_step("sgd", l1=0.05, l1_mode="subgradient")
    np.testing.assert_allclose(W1, W0 - 0.1 * (G + 0.05 * np.sign(W0)), rtol=1e-5, atol=1e-6)


def test_proximal_l1_with_adam_uses_the_per_coordinate_step(isa):
    lr, l1, eps = 0.01, 0.5, 1e-8
    W0, G, W1 = one_step("adam", l1=l1, lr=lr)
    m = 0.1 * G / (1 - 0.9)
    v = 0.001 * G ** 2 / (1 - 0.999)
    step = lr / (np.sqrt(v) + eps)
    np.testing.assert_allclose(W1, soft(W0 - step * m, step * l1), rtol=1e-4, atol=1e-6)


def test_exact_zeros_stay_zero_while_the_gradient_is_small():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 30)).astype(np.float32)
    Y = onehot((X[:, 0] > 0).astype(int), 2)
    net = Network(30, [Dense(2, "identity")], solver="sgd", learning_rate=0.1, momentum=0.0, l1=0.1,
                  random_state=0)
    zero_sets = []
    for epoch in range(60):
        net.train_epoch(X, Y, loss="softmax_ce", batch_size=200, epoch=epoch)
        zero_sets.append(net.weights[0] == 0)
    # the 29 irrelevant features end at exactly zero and stay there
    assert zero_sets[-1][1:].mean() > 0.9
    assert (zero_sets[-1] | ~zero_sets[-5]).all()


# (1000, 300) is split over threads by columns, slices of 256 and a remainder
@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (33, 300), (1000, 300)])
def test_max_norm_kernel_matches_numpy_for_any_thread_count(isa, shape):
    rng = np.random.default_rng(shape[1])
    W0 = rng.standard_normal(shape).astype(np.float32)
    W0[:, 0] *= 1e-3  # one column well inside the ball, the rest outside or near c
    c = float(np.median(np.linalg.norm(W0, axis=0)))
    norms = np.linalg.norm(W0.astype(np.float64), axis=0)
    expected = W0 * np.where(norms > c, c / np.maximum(norms, 1e-30), 1.0)
    previous = _core.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            W = W0.copy()
            _core.max_norm_columns(W, c)
            runs.append(W)
    finally:
        _core.set_num_threads(previous)
    np.testing.assert_allclose(runs[0], expected, rtol=2e-6, atol=1e-7)
    assert np.array_equal(runs[0][:, norms <= c * (1 - 1e-6)], W0[:, norms <= c * (1 - 1e-6)])  # untouched
    for other in runs[1:]:
        assert np.array_equal(other.view(np.uint32), runs[0].view(np.uint32))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_max_norm_holds_after_every_step(solver):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 20)).astype(np.float32) * 5
    Y = onehot(rng.integers(0, 4, 64), 4)
    c = 0.5
    net = Network(20, [Dense(16, "relu"), Dense(4, "identity")], solver=solver, learning_rate=0.5, max_norm=c,
                  random_state=0)
    for step in range(20):
        out = net.forward(X[step % 4 * 16:][:16], training=True)
        _, dout = F.softmax_cross_entropy(out, Y[step % 4 * 16:][:16])
        net.zero_grad()
        net.backward(dout)
        net.step()
        for W in net.weights:
            assert (np.linalg.norm(W, axis=0) <= c * (1 + 1e-5)).all()
    assert any(np.isclose(np.linalg.norm(W, axis=0), c, rtol=1e-4).any() for W in net.weights)


def test_penalty_value_and_norm():
    net = Network(5, [Dense(4, "relu"), Dense(3, "identity")], l1=[0.1, 0.2], l2=0.5, random_state=0)
    W = net.weights
    expected = sum(l1 * np.abs(w).sum() + 0.25 * (w.astype(np.float64) ** 2).sum() for l1, w in zip([0.1, 0.2], W))
    assert F.penalty_value(net) == pytest.approx(expected, rel=1e-5)
    assert F.norm(W[0], 1) == pytest.approx(np.abs(W[0]).sum(), rel=1e-6)
    assert F.norm(W[0], 2) == pytest.approx(np.linalg.norm(W[0]), rel=1e-6)
    with pytest.raises(ValueError, match="ord"):
        F.norm(W[0], 3)


# ----------------------------------------------------------------------------
# DropConnect and Monte Carlo dropout


def test_dropconnect_masks_weights_at_the_rate_and_predicts_with_the_mean():
    rate = 0.3
    net = Network(400, [Dense(50, "identity", dropconnect=rate)], random_state=0)
    net.biases[0][...] = 0
    W = net.weights[0].copy()
    eye = np.eye(400, dtype=np.float32)
    used = net.forward(eye, training=True)  # row i is weight row i after the mask
    dropped = used == 0
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(used[~dropped], W[~dropped] / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(net.forward(eye, training=True), used)  # one mask per step
    np.testing.assert_allclose(net.forward(eye), W, rtol=1e-6)  # prediction: the mean weights
    net.zero_grad()
    net.step()
    assert not np.array_equal(net.forward(eye, training=True) == 0, dropped)


@pytest.mark.parametrize("n_in, width", [(7, 5), (400, 50), (300, 530)])
def test_dropconnect_gradient_goes_through_the_forward_mask(isa, n_in, width):
    """dW = mask * (x^T dout) / (1 - rate), with the mask the forward pass
    drew (read off a forward of the identity in the same step), by
    Network.backward (which accumulates) and inside train_epoch alike."""
    rate = 0.4
    rng = np.random.default_rng(n_in)
    X = rng.standard_normal((16, n_in)).astype(np.float32)
    Y = rng.standard_normal((16, width)).astype(np.float32)
    eye = np.eye(n_in, dtype=np.float32)
    net = Network(n_in, [Dense(width, "identity", dropconnect=rate)], solver="sgd", momentum=0.0,
                  learning_rate=1.0, random_state=0)
    W, b = net.weights[0].copy(), net.biases[0].copy()
    kept = (net.forward(eye, training=True) - b) != 0
    out = net.forward(X, training=True)
    net.zero_grad()
    net.backward(out - Y)
    expected = np.where(kept, X.T.astype(np.float64) @ (out - Y) / (1 - rate), 0.0)
    np.testing.assert_allclose(net.grads[:W.size].reshape(W.shape), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())
    # train_epoch: one minibatch of MSE, an SGD step of rate 1 from the same weights and mask
    again = Network(n_in, [Dense(width, "identity", dropconnect=rate)], solver="sgd", momentum=0.0,
                    learning_rate=1.0, random_state=0)
    again.train_epoch(X, Y, loss="squared", batch_size=16, shuffle=False, epoch=0)
    dW = (W - again.weights[0]) * Y.size  # the squared loss is 0.5 (out - y)^2 averaged over every output
    np.testing.assert_allclose(dW, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_monte_carlo_prediction_is_seeded_and_converges_to_weight_scaling():
    rng = np.random.default_rng(0)
    net = Network(30, [Dense(5, "identity", dropout=0.5)], random_state=0)
    X = rng.standard_normal((4, 30)).astype(np.float32)
    a = net.predict(X, mc_samples=10, random_state=1)
    np.testing.assert_array_equal(a, net.predict(X, mc_samples=10, random_state=1))
    assert not np.array_equal(a, net.predict(X, mc_samples=10, random_state=2))
    # linear net: the mean over masks is the weight-scaling prediction
    many = net.predict(X, mc_samples=4000, random_state=3)
    np.testing.assert_allclose(many, net.predict(X), atol=0.05 * np.abs(net.predict(X)).max())


def test_estimator_mc_predictions(digits):
    X, y = digits
    clf = MLPClassifier((64,), dropout=0.5, dropconnect=[0.2, 0.0], max_iter=10, random_state=0).fit(X, y)
    p = clf.predict_proba(X[:50], mc_samples=20, random_state=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(p, clf.predict_proba(X[:50], mc_samples=20, random_state=0))
    agree = (clf.predict(X[:200], mc_samples=20, random_state=0) == clf.predict(X[:200])).mean()
    assert agree > 0.8
    reg = MLPRegressor((16,), dropout=0.3, max_iter=5, random_state=0).fit(X, y.astype(float))
    assert reg.predict(X[:5], mc_samples=5, random_state=0).shape == (5,)


# ----------------------------------------------------------------------------
# the estimators


def test_l1_reaches_exact_zeros_at_small_cost(digits):
    X, y = digits
    kwargs = dict(hidden_layer_sizes=(64,), max_iter=30, batch_size=32, random_state=0)
    dense = MLPClassifier(**kwargs).fit(X[:1200], y[:1200])
    sparse = MLPClassifier(l1=1e-3, **kwargs).fit(X[:1200], y[:1200])
    zeros = sparse.history_["zero_fraction"][-1]
    assert zeros[0] > 0.5
    assert sparse.history_["zero_fraction"][-1][0] == pytest.approx((sparse.coefs_[0] == 0).mean())
    assert sparse.score(X[1200:], y[1200:]) > dense.score(X[1200:], y[1200:]) - 0.05
    subgradient = MLPClassifier(l1=1e-3, l1_mode="subgradient", **kwargs).fit(X[:1200], y[:1200])
    assert subgradient.history_["zero_fraction"][-1][0] < 0.5 * zeros[0]


def test_activity_penalties_make_sparser_representations(digits):
    X, y = digits
    kwargs = dict(hidden_layer_sizes=(64,), max_iter=20, random_state=0)
    plain = MLPClassifier(**kwargs).fit(X, y).hidden_activity(X)
    l1 = MLPClassifier(activity_penalty=ActivityL1(0.05), **kwargs).fit(X, y).hidden_activity(X)
    assert l1["mean_activation"][0] < 0.5 * plain["mean_activation"][0]
    kl = MLPClassifier(activation="logistic", activity_penalty=KLSparsity(0.05, 1.0), learning_rate_init=0.01,
                       **{k: v for k, v in kwargs.items()}).fit(X, y)
    assert kl.hidden_activity(X)["mean_activation"][0] < 0.15
    assert len(kl.history_["activity_penalty"][-1]) == 1


def test_history_records_the_diagnostics(digits):
    X, y = digits
    clf = MLPClassifier((32, 16), l1=1e-4, l2=1e-4, activity_penalty=[StudentT(0.01), None], max_iter=3,
                        random_state=0).fit(X, y)
    h = clf.history_
    for key in ("zero_fraction", "grad_norm"):
        assert len(h[key]) == 3 and len(h[key][-1]) == 3
    for key in ("mean_activation", "active_fraction", "activity_penalty"):
        assert len(h[key][-1]) == 2
    assert h["activity_penalty"][-1][0] > 0 and h["activity_penalty"][-1][1] == 0
    assert all(g > 0 for g in h["grad_norm"][-1])
    assert 0 < h["active_fraction"][-1][0] <= 1
    assert h["penalty"][-1] == pytest.approx(F.penalty_value(clf), rel=1e-6)


def test_max_norm_through_the_estimator(digits):
    X, y = digits
    clf = MLPClassifier((32,), max_norm=1.0, learning_rate_init=0.05, max_iter=5, random_state=0).fit(X, y)
    for W in clf.coefs_:
        assert (np.linalg.norm(W, axis=0) <= 1.0 + 1e-5).all()


@pytest.mark.parametrize("params, name", [
    (dict(l1=-0.1), "l1"),
    (dict(l1_mode="truncated"), "l1_mode"),
    (dict(max_norm=0.0), "max_norm"),
    (dict(max_norm=-1.0), "max_norm"),
    (dict(dropconnect=1.0), "dropconnect"),
    (dict(dropconnect=[0.1]), "dropconnect"),
    (dict(activity_penalty=ActivityL1(-1.0)), "alpha"),
    (dict(activity_penalty=KLSparsity(1.5)), "rho"),
    (dict(activity_penalty=KLSparsity(0.0)), "rho"),
    (dict(activity_penalty=KLSparsity(0.1)), "KLSparsity"),  # relu outputs are not in (0, 1)
    (dict(activity_penalty="l1"), "activity_penalty"),
    (dict(activity_penalty=[None, None]), "activity_penalty"),
    (dict(activation=("maxout", 0)), "maxout"),
])
def test_bad_regularization_values_name_the_argument(params, name):
    X, y = np.random.rand(20, 3), np.arange(20) % 2
    with pytest.raises((ValueError, TypeError), match=name):
        MLPClassifier((4,), max_iter=2, **params).fit(X, y)
    with pytest.raises(ValueError, match="mc_samples"):
        MLPClassifier((4,), max_iter=1).fit(X, y).predict_proba(X, mc_samples=0)


def test_param_stats_match_numpy_and_catch_any_nonfinite_parameter(isa):
    """The figures recorded after each epoch (penalty, zero fraction and
    gradient norm per layer, and whether every parameter is finite) come from
    one pass over blocks of the parameters; a layer of 90,000 weights spans
    two blocks, and the figures must not depend on the thread count."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 300)).astype(np.float32)
    dout = rng.standard_normal((40, 3)).astype(np.float32)
    previous = _core.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            net = Network(300, [Dense(300, ("prelu", 0.1)), Dense(3, "identity")], l1=[1e-3, 0.0],
                          l2=[0.5, 0.25], penalize_bias=True, random_state=0)
            net.weights[0][:7] = 0.0
            net.forward(X, training=True)
            net.zero_grad()
            net.backward(dout)
            runs.append(net._core.param_stats())
        assert all(r == runs[0] for r in runs[1:])
        stats = runs[0]
        W = [w.astype(np.float64) for w in net.weights]
        b = [v.astype(np.float64) for v in net.biases]
        l1 = float(np.float32(1e-3))  # the strengths are float32
        expected = (l1 * np.abs(W[0]).sum() + 0.25 * (W[0] ** 2).sum() + l1 * np.abs(b[0]).sum()
                    + 0.25 * (b[0] ** 2).sum() + 0.125 * (W[1] ** 2).sum() + 0.125 * (b[1] ** 2).sum())
        assert stats["penalty"] == pytest.approx(expected, rel=1e-9)
        assert stats["penalty"] == net.penalty_value()
        assert stats["zero_fraction"] == [7 * 300 / W[0].size, 0.0]
        grads = net.grads
        norms = [np.linalg.norm(grads[o:o + n].astype(np.float64)) for o, n, _, _ in
                 (net._core.segment(i) for i in range(2))]
        np.testing.assert_allclose(stats["grad_norm"], norms, rtol=1e-9)
        assert stats["finite"]
        for part, index in ((net.weights[0], (299, 299)), (net.biases[1], 2), (net.slopes[0], 5)):
            for bad in (np.inf, -np.inf, np.nan):
                keep = part[index]
                part[index] = bad
                assert not net._core.param_stats()["finite"], (part.shape, bad)
                part[index] = keep
        assert net._core.param_stats()["finite"]
    finally:
        _core.set_num_threads(previous)
