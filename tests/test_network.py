"""The layer-level Network: finite-difference gradients of whole networks for
every activation and loss, dropout in the engine, determinism."""
import numpy as np
import pytest

import dropkit
from dropkit import Dense, Network, _core

ACTIVATIONS = ["identity", "logistic", "tanh", "relu", ("leaky_relu", 0.1), ("prelu", 0.3), ("elu", 0.8),
               ("maxout", 3)]
LOSSES = ["softmax_ce", "binary_ce", "squared"]


def targets(loss, rng, B, C):
    if loss == "softmax_ce":
        return np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
    if loss == "binary_ce":
        return (rng.random((B, C)) < 0.5).astype(np.float32)
    return rng.standard_normal((B, C)).astype(np.float32)


def batch_loss(net, X, Y, loss, training=True):
    out = net.forward(X, training=training)
    total, dz = _core.loss(out, Y, None, loss, 1.0 / len(X))
    return total / len(X), dz


def check_gradients(net, X, Y, loss, n_checks=40, h=1e-2, seed=0):
    """Analytic gradients of the mean loss against central differences in float64."""
    _, dout = batch_loss(net, X, Y, loss)
    net.zero_grad()
    dX = net.backward(dout)
    grads = net.grads.copy()
    params = net.params
    rng = np.random.default_rng(seed)
    idx = rng.choice(params.size, size=min(n_checks, params.size), replace=False)
    for i in idx:
        old = params[i]
        params[i] = old + h
        up, _ = batch_loss(net, X, Y, loss)
        params[i] = old - h
        down, _ = batch_loss(net, X, Y, loss)
        params[i] = old
        numeric = (up - down) / (2 * h)
        assert abs(numeric - grads[i]) <= 2e-3 + 3e-2 * abs(numeric), (i, numeric, grads[i])
    # the input gradient too, on a few entries
    for _ in range(5):
        b, j = rng.integers(0, X.shape[0]), rng.integers(0, X.shape[1])
        Xp, Xm = X.copy(), X.copy()
        Xp[b, j] += h
        Xm[b, j] -= h
        numeric = (batch_loss(net, Xp, Y, loss)[0] - batch_loss(net, Xm, Y, loss)[0]) / (2 * h)
        assert abs(numeric - dX[b, j]) <= 2e-3 + 3e-2 * abs(numeric), ("dX", b, j, numeric, dX[b, j])


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("loss", LOSSES)
def test_finite_difference_gradients(isa, activation, loss):
    rng = np.random.default_rng(1)
    B, n_in, C = 9, 7, 4
    # Differences of float32 outputs need h ~ 1e-2 to rise above rounding;
    # piecewise-linear activations take h = 1e-4 so that no unit crosses its
    # kink (at this seed some pre-activations are within 3e-4 of zero).
    net = Network(n_in, [Dense(13, activation), Dense(5, activation), Dense(C, "identity")],
                  random_state=3)
    X = rng.standard_normal((B, n_in)).astype(np.float32)
    kinked = activation in ("relu", ("leaky_relu", 0.1), ("prelu", 0.3), ("maxout", 3))
    check_gradients(net, X, targets(loss, rng, B, C), loss, h=1e-4 if kinked else 1e-2)


@pytest.mark.parametrize("mode", ["inverted", "standard"])
@pytest.mark.parametrize("hidden", [("tanh", "logistic"), ("relu", "relu")])
def test_gradients_with_dropout(isa, mode, hidden):
    """Masks are keyed by the step count, so a forward pass repeated within a
    step sees the same mask and finite differences apply with dropout on.
    relu reads the mask going back off the next layer's dropped input."""
    rng = np.random.default_rng(2)
    net = Network(6, [Dense(17, hidden[0], dropout=0.3), Dense(11, hidden[1], dropout=0.5),
                      Dense(3, "identity", 0.2)], dropout_mode=mode, random_state=5)
    X = rng.standard_normal((8, 6)).astype(np.float32)
    check_gradients(net, X, targets("softmax_ce", rng, 8, 3), "softmax_ce", h=1e-4 if hidden[0] == "relu" else 1e-2)


def test_gradients_same_bits_for_any_thread_count_at_a_wide_batch(isa):
    """At a batch of 128 and 600 units the bias gradients (column sums),
    the activation derivatives and the products all split over threads."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((128, 300)).astype(np.float32)
    dout = rng.standard_normal((128, 4)).astype(np.float32)
    previous = _core.get_num_threads()
    grads = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            net = Network(300, [Dense(600, ("prelu", 0.2), dropout=0.1), Dense(600, "tanh", dropout=0.3),
                                Dense(4, "identity", dropout=0.2)], random_state=4)
            net.forward(X, training=True)
            net.zero_grad()
            dX = net.backward(dout)
            grads.append((net.grads.copy(), dX))
    finally:
        _core.set_num_threads(previous)
    for g, dX in grads[1:]:
        assert np.array_equal(g, grads[0][0]) and np.array_equal(dX, grads[0][1])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_dropout_split_over_threads_keeps_the_documented_masks(isa, threads):
    """At several threads each takes a group of columns of the product, whose
    epilogue drops them for the next layer, and a share of the rows going
    back: a layer 500 wide gives spans that start and end inside a step of
    the generator. Every element must still get its documented mask."""
    rng = np.random.default_rng(6)
    B, n_in, H, C = 64, 200, 500, 3
    net = Network(n_in, [Dense(H, "tanh"), Dense(C, "identity", dropout=0.4)], random_state=3)
    X = rng.standard_normal((B, n_in)).astype(np.float32)
    dout = rng.standard_normal((B, C)).astype(np.float32)
    previous = _core.get_num_threads()
    try:
        _core.set_num_threads(threads)
        out = net.forward(X, training=True)
        net.zero_grad()
        dX = net.backward(dout)
    finally:
        _core.set_num_threads(previous)
    mask = dropkit.functional.dropout_mask((B, H), 0.4, seed=int(net._core.seed), stream=8, step=0)
    W0, b0, W1, b1 = (a.astype(np.float64) for a in (net.weights[0], net.biases[0], net.weights[1], net.biases[1]))
    h = np.tanh(X @ W0 + b0)
    np.testing.assert_allclose(out, (h * mask) @ W1 + b1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dX, ((dout @ W1.T) * mask * (1 - h ** 2)) @ W0.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden", ["relu", "tanh", ("maxout", 2)])
@pytest.mark.parametrize("B, H", [(7, 75), (40, 7)])
def test_hidden_dropout_matches_numpy_with_the_documented_masks(isa, hidden, B, H):
    """The next layer's input dropout is applied in the product's epilogue
    going forward and joined with the activation derivative going back: both
    must use the mask functional.dropout_mask documents for (seed, layer, step),
    at a width past one vector step of the generator and not a multiple of it,
    and at a width so narrow that the product is computed as its transpose."""
    rng = np.random.default_rng(4)
    n_in, C = 5, 3
    net = Network(n_in, [Dense(H, hidden), Dense(C, "identity", dropout=0.4)], random_state=2)
    X = rng.standard_normal((B, n_in)).astype(np.float32)
    dout = rng.standard_normal((B, C)).astype(np.float32)
    out = net.forward(X, training=True)
    net.zero_grad()
    dX = net.backward(dout)
    seed = int(net._core.seed)
    mask = dropkit.functional.dropout_mask((B, H), 0.4, seed=seed, stream=8, step=0).astype(np.float64)
    W0, b0, W1, b1 = (a.astype(np.float64) for a in (net.weights[0], net.biases[0], net.weights[1], net.biases[1]))
    z = X @ W0 + b0
    if hidden == "relu":
        h, dh_dz = np.maximum(z, 0), (z > 0).astype(np.float64)
    elif hidden == "tanh":
        h = np.tanh(z)
        dh_dz = 1 - h ** 2
    else:
        pieces = z.reshape(B, H, 2)
        h = pieces.max(axis=2)
        dh_dz = None
    np.testing.assert_allclose(out, (h * mask) @ W1 + b1, rtol=2e-5, atol=2e-5)
    dh = (dout @ W1.T) * mask
    w_off, w_size, _, _ = net._core.segment(1)
    dW1 = net.grads[w_off:w_off + w_size].reshape(H, C)
    np.testing.assert_allclose(dW1, (h * mask).T @ dout, rtol=2e-5, atol=2e-5)  # the dropped input
    if dh_dz is not None:
        dz = dh * dh_dz
    else:
        winner = pieces.argmax(axis=2)
        dz = np.zeros((B, H, 2))
        np.put_along_axis(dz, winner[..., None], dh[..., None], axis=2)
        dz = dz.reshape(B, 2 * H)
    np.testing.assert_allclose(dX, dz @ W0.T, rtol=2e-5, atol=2e-5)


def test_dropout_masks_change_per_step_and_are_off_at_prediction():
    net = Network(50, [Dense(40, "identity", dropout=0.5)], random_state=0)
    X = np.ones((20, 50), np.float32)
    a = net.forward(X, training=True)
    b = net.forward(X, training=True)
    np.testing.assert_array_equal(a, b)  # same step: same mask
    net.zero_grad()
    net.step()
    c = net.forward(X, training=True)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(net.forward(X), net.forward(X))
    expected = X @ net.weights[0] + net.biases[0]
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-5, atol=1e-5)


def test_inverted_dropout_keeps_the_expected_activation():
    """Averaged over many masks, inverted dropout's training output equals the
    prediction output (linear net), and standard dropout's equals it after the
    keep-probability scaling applied at prediction."""
    for mode in ("inverted", "standard"):
        net = Network(200, [Dense(3, "identity", dropout=0.4)], dropout_mode=mode, random_state=0)
        net.biases[0][...] = 0
        X = np.ones((500, 200), np.float32)
        mean_train = net.forward(X, training=True).mean(axis=0)
        predicted = net.forward(X)[0]
        if mode == "standard":
            np.testing.assert_allclose(predicted, 0.6 * (X[0] @ net.weights[0]), rtol=1e-5)
        # 500 rows x 200 inputs of masks: the mean is within a few percent
        np.testing.assert_allclose(mean_train, predicted, rtol=0.05, atol=0.05 * np.abs(predicted).max())


def test_weights_are_zero_copy_views():
    net = Network(4, [Dense(3, "relu"), Dense(2, "identity")], random_state=0)
    w = net.weights[0]
    w[...] = 0.5
    assert (net.params[: w.size] == 0.5).all()
    X = np.ones((1, 4), np.float32)
    before = net.forward(X)
    net.biases[1][...] += 1.0
    np.testing.assert_allclose(net.forward(X), before + 1.0, rtol=1e-6)
    # a view keeps the engine alive after the network object is gone
    del net
    w[...] = 0.25
    assert (w == 0.25).all()


def test_sgd_step_matches_numpy():
    net = Network(5, [Dense(4, "identity")], solver="sgd", learning_rate=0.1, momentum=0.0, l2=0.01, random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 5)).astype(np.float32)
    W0, b0 = net.weights[0].copy(), net.biases[0].copy()
    out = net.forward(X, training=True)
    dout = (out - 1.0) / 6
    net.zero_grad()
    net.backward(dout)
    net.step()
    gW = X.T.astype(np.float64) @ dout + 0.01 * W0
    gb = dout.sum(0)
    np.testing.assert_allclose(net.weights[0], W0 - 0.1 * gW, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.biases[0], b0 - 0.1 * gb, rtol=1e-5, atol=1e-6)


def make_data(n=300, d=20, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = np.eye(c, dtype=np.float32)[(X[:, :c]).argmax(1)]
    return X, Y


def train(n_threads, isa_name=None, seed=0):
    previous = _core.get_num_threads()
    dropkit.set_num_threads(n_threads)
    try:
        X, Y = make_data()
        net = Network(20, [Dense(64, "relu", dropout=0.1), Dense(48, "tanh", dropout=0.5),
                           Dense(3, "identity", dropout=0.3)], random_state=seed)
        for epoch in range(3):
            net.train_epoch(X, Y, loss="softmax_ce", batch_size=32, epoch=epoch)
        return net.params.copy()
    finally:
        _core.set_num_threads(previous)


def test_same_seed_same_model_across_runs_and_thread_counts(isa):
    a = train(1)
    np.testing.assert_array_equal(a, train(1))
    np.testing.assert_array_equal(a, train(2))
    assert not np.array_equal(a, train(1, seed=1))


def test_small_net_trains_to_the_same_bits_at_any_thread_count(isa):
    """A small net's products at a batch of 32 split over threads, with each
    thread keeping the same rows of the weights and Adam's state from step to
    step; the model must not depend on the split."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 64)).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 200)]
    previous = _core.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            net = Network(64, [Dense(256, "relu", dropout=0.2), Dense(256, "relu", dropout=0.2),
                               Dense(10, "identity")], random_state=3)
            net.set_optimizer("adam", learning_rate=1e-3)
            net.set_penalties(l2=1e-4)
            for epoch in range(2):
                net.train_epoch(X, Y, loss="softmax_ce", batch_size=32, epoch=epoch)
            runs.append(net.params.copy())
    finally:
        _core.set_num_threads(previous)
    for other in runs[1:]:
        assert np.array_equal(runs[0].view(np.uint32), other.view(np.uint32))


def test_results_agree_across_isas():
    previous = _core.simd_backend()
    results = {}
    try:
        for name in _core.available_isas():
            _core.set_isa(name)
            results[name] = train(1)
    finally:
        _core.set_isa(previous)
    reference = results["scalar"]
    for name, params in results.items():
        # FMA contraction and summation order differ by ISA: float32 rounding,
        # amplified a little by 3 epochs of training
        np.testing.assert_allclose(params, reference, rtol=1e-3, atol=1e-3, err_msg=name)


def test_train_epoch_learns_and_rejects_bad_shapes():
    X, Y = make_data()
    net = Network(20, [Dense(32, "relu"), Dense(3, "identity")], learning_rate=1e-2, random_state=0)
    first = net.train_epoch(X, Y, loss="softmax_ce", batch_size=16, epoch=0)
    for epoch in range(1, 10):
        last = net.train_epoch(X, Y, loss="softmax_ce", batch_size=16, epoch=epoch)
    assert last < 0.5 * first
    with pytest.raises(ValueError, match="X"):
        net.train_epoch(X[:, :5], Y, loss="softmax_ce")
    with pytest.raises(ValueError, match="Y"):
        net.train_epoch(X, Y[:, :2], loss="softmax_ce")
    with pytest.raises(ValueError, match="loss"):
        net.train_epoch(X, Y, loss="hinge")
    with pytest.raises(ValueError, match="X"):
        net.forward(np.full((2, 20), np.nan))


def test_divergence_is_reported():
    X, Y = make_data()
    net = Network(20, [Dense(32, "relu"), Dense(3, "identity")], solver="sgd", learning_rate=1e6, momentum=0.0,
                  random_state=0)
    with pytest.raises(FloatingPointError):
        for epoch in range(20):
            net.train_epoch(X * 1e3, Y, loss="softmax_ce", batch_size=32, epoch=epoch)


FUSED_STEP_CASES = {
    "adam, proximal l1, l2": dict(solver="adam", l1=1e-3, l2=1e-2),
    "adam, subgradient l1, decay": dict(solver="adam", l1=1e-3, l1_mode="subgradient", weight_decay=1e-2),
    "sgd, nesterov": dict(solver="sgd", momentum=0.9, l1=1e-3, l2=1e-2),
    "sgd, plain": dict(solver="sgd", momentum=0.0, weight_decay=1e-2),
    "rmsprop": dict(solver="rmsprop", l2=1e-2, l1=1e-3),
    "adagrad": dict(solver="adagrad", l1=1e-3, l1_mode="subgradient"),
    # max-norm after fused updates, the middle layer's through DropConnect's
    # mask too; norms small enough to bind
    "adam, max-norm and dropconnect": dict(solver="adam", l2=1e-2, max_norm=[0.5, 1.0, 0.3]),
}


@pytest.mark.parametrize("case", FUSED_STEP_CASES)
@pytest.mark.parametrize("n_in, width", [(23, 37), (300, 256), (200, 100)], ids=["edges", "wide", "grid"])
@pytest.mark.parametrize("batch_size", [32, 300])
@pytest.mark.parametrize("threads", [1, 2])
def test_epoch_matches_steps_taken_one_call_at_a_time(isa, case, n_in, width, batch_size, threads):
    """train_epoch updates most weights inside their gradient's product; the
    model must be bit for bit the one of forward, backward and step called in
    turn (separate passes), for every optimizer and L1 form, at tile edges
    (23 inputs, 37 units), over one panel of the batch and over two (300
    rows), with the sums kept apart or, for a wide layer, in the gradient,
    and with the threads' shares planned each way (shared packed operand for
    the wide layer, an even grid for 200 x 100)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((700, n_in)).astype(np.float32)
    Y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 700)]
    layers = [Dense(width, "relu", dropout=0.2), Dense(29, "tanh", dropout=0.5, dropconnect=0.3),
              Dense(4, "identity", dropout=0.1)]
    args = dict(FUSED_STEP_CASES[case], learning_rate=1e-2, random_state=0)
    previous = _core.get_num_threads()
    dropkit.set_num_threads(threads)
    try:
        fused, steps = Network(n_in, layers, **args), Network(n_in, layers, **args)
        for epoch in range(2):
            fused.train_epoch(X, Y, loss="softmax_ce", batch_size=batch_size, shuffle=False, epoch=epoch)
            for start in range(0, len(X), batch_size):
                xb, yb = X[start:start + batch_size], Y[start:start + batch_size]
                out = steps.forward(xb, training=True)
                _, dout = _core.loss(out, yb, None, "softmax_ce", 1.0 / len(xb))
                steps.zero_grad()
                steps.backward(dout)
                steps.step()
    finally:
        _core.set_num_threads(previous)
    assert fused.step_count == steps.step_count
    np.testing.assert_array_equal(fused.params, steps.params)
    # the last batch of an epoch is stepped apart: its gradients stay readable
    np.testing.assert_array_equal(fused.grads, steps.grads)


@pytest.mark.parametrize("bad, match", [
    (dict(layers=[]), "layers"),
    (dict(layers=[Dense(0)]), "units"),
    (dict(layers=[Dense(3, "swish")]), "activation"),
    (dict(layers=[Dense(3, ("maxout", 1))]), "maxout"),
    (dict(layers=[Dense(3, dropout=1.0)]), "dropout"),
    (dict(layers=[Dense(3)], solver="lbfgs"), "solver"),
    (dict(layers=[Dense(3)], learning_rate=-1), "learning_rate"),
    (dict(layers=[Dense(3)], l2=[0.1, 0.2]), "l2"),
    (dict(layers=[Dense(3)], dropout_mode="gaussian"), "dropout_mode"),
])
def test_bad_arguments_name_themselves(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Network(4, **bad)


def test_pickle_round_trip():
    import pickle
    X, Y = make_data()
    net = Network(20, [Dense(16, ("prelu", 0.2)), Dense(3, "identity", dropout=0.2)], random_state=0)
    net.train_epoch(X, Y, loss="softmax_ce", epoch=0)
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.predict(X), net.predict(X))
    net.train_epoch(X, Y, loss="softmax_ce", epoch=1)
    clone.train_epoch(X, Y, loss="softmax_ce", epoch=1)
    np.testing.assert_array_equal(clone.params, net.params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64-converted"])
def test_backward_uses_the_input_forward_saw(dtype):
    """backward computes the first layer's weight gradient from forward's input,
    so that input must not be read again from the caller's memory: the caller
    may overwrite its array before backward, and a converted copy (from
    float64) is freed as soon as forward returns."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 5)).astype(dtype)
    dout = rng.standard_normal((6, 3)).astype(np.float32)
    expected = X.astype(np.float64).T @ dout  # dL/dW of a linear layer
    net = Network(5, [Dense(3, "identity")], random_state=0)
    net.forward(X, training=True)
    X[...] = 0.0
    junk = [np.full((6, 5), 1e6, dtype=np.float32) for _ in range(50)]  # reuse freed memory
    net.zero_grad()
    net.backward(dout)
    weight_grad = net.grads[:15].reshape(5, 3)  # the layout: weights, then bias
    np.testing.assert_allclose(weight_grad, expected, rtol=1e-5, atol=1e-5)
    del junk
