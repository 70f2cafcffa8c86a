"""MLPClassifier and MLPRegressor as a user sees them."""
import copy
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression
from sklearn.model_selection import train_test_split

import dropkit
from dropkit import DivergenceError, MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_digits_with_dropout_and_l2_reaches_high_accuracy(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((128, 128), dropout=0.2, input_dropout=0.1, l2=1e-4, max_iter=40, batch_size=64,
                        random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.n_iter_ == len(clf.loss_curve_) == len(clf.history_["loss"])
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert [w.shape for w in clf.coefs_] == [(64, 128), (128, 128), (128, 10)]
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X_test))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_test)), proba, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
def test_every_solver_learns(digits, solver):
    X_train, X_test, y_train, y_test = digits
    lr = {"sgd": 0.05, "adagrad": 0.05}.get(solver, 0.003)
    clf = MLPClassifier((64,), solver=solver, learning_rate_init=lr, max_iter=15, batch_size=32,
                        random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.9, solver


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu", "leaky_relu", "prelu", "elu",
                                        ("maxout", 3), ["relu", ("leaky_relu", 0.2)]], ids=str)
def test_every_activation_learns(digits, activation):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((48, 32), activation=activation, learning_rate_init=0.005, max_iter=20, random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.9


def test_dropout_modes_predict_alike(digits):
    """Standard dropout scales by the keep probability at prediction, inverted
    dropout scales in training; trained from the same seed both work."""
    X_train, X_test, y_train, y_test = digits
    scores = {}
    for mode in ("inverted", "standard"):
        clf = MLPClassifier((128,), dropout=0.5, input_dropout=0.2, dropout_mode=mode, max_iter=30,
                            learning_rate_init=0.003, random_state=0).fit(X_train, y_train)
        scores[mode] = clf.score(X_test, y_test)
    assert min(scores.values()) >= 0.93, scores


def test_early_stopping_restores_the_best_weights(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((64,), early_stopping=True, n_iter_no_change=3, validation_fraction=0.2,
                        learning_rate_init=0.02, max_iter=200, random_state=0).fit(X_train, y_train)
    assert clf.n_iter_ < 200
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert all(v is not None for v in clf.history_["val_loss"])
    # the weights kept are those of the best epoch, not of the last one
    best_epoch = int(np.argmax(clf.validation_scores_))
    assert best_epoch < clf.n_iter_ - 1
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X_train, y_train)


def test_partial_fit_and_warm_start_continue(digits):
    X_train, X_test, y_train, y_test = digits
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X_train, y_train)
    clf = MLPClassifier((32,), learning_rate_init=0.01, random_state=0)
    clf.partial_fit(X_train[:100], y_train[:100], classes=np.arange(10))
    first = [w.copy() for w in clf.coefs_]
    for _ in range(10):
        clf.partial_fit(X_train, y_train)
    assert clf.n_iter_ == 11
    assert not np.allclose(first[0], clf.coefs_[0])
    assert clf.score(X_test, y_test) > 0.85

    warm = MLPClassifier((32,), max_iter=3, warm_start=True, random_state=0).fit(X_train, y_train)
    after_first = warm.coefs_[0].copy()
    warm.fit(X_train, y_train)
    assert warm.n_iter_ == 6
    cold = MLPClassifier((32,), max_iter=3, random_state=0).fit(X_train, y_train)
    np.testing.assert_array_equal(cold.coefs_[0], after_first)


def test_same_random_state_same_model_whatever_the_thread_count(digits):
    X_train, _, y_train, _ = digits
    before = dropkit.get_num_threads()
    fits = [MLPClassifier((64,), dropout=0.3, max_iter=3, n_threads=n, random_state=7).fit(X_train, y_train)
            for n in (1, 2, 1)]
    for other in fits[1:]:
        for a, b in zip(fits[0].coefs_, other.coefs_):
            np.testing.assert_array_equal(a, b)
    assert dropkit.get_num_threads() == before  # n_threads holds only inside fit


def test_binary_multilabel_and_string_labels():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    binary = MLPClassifier((16,), max_iter=30, random_state=0).fit(X, y % 2)
    assert binary.out_activation_ == "logistic"
    assert binary.predict_proba(X).shape == (len(X), 2)
    assert binary.score(X, y % 2) > 0.9

    names = np.array(["zero", "one", "two"])[y % 3]
    clf = MLPClassifier((16,), max_iter=30, random_state=0).fit(X, names)
    assert set(clf.predict(X)) <= set(names)

    Xm, Ym = make_multilabel_classification(n_samples=300, n_classes=4, random_state=0)
    multi = MLPClassifier((32,), max_iter=50, random_state=0).fit(Xm, Ym)
    assert multi.predict(Xm).shape == Ym.shape
    assert multi.predict_proba(Xm).shape == Ym.shape
    assert multi.score(Xm, Ym) > 0.3  # subset accuracy


def test_continuing_fits_check_their_input_as_the_first_does(digits):
    # plain arrays take a quicker route than scikit-learn's validation on
    # continuing fits: the same model either way, the same refusals
    X_train, _, y_train, _ = digits
    quick = MLPClassifier((16,), random_state=0).partial_fit(X_train[:50], y_train[:50], classes=np.arange(10))
    checked = copy.deepcopy(quick)
    quick.partial_fit(X_train[50:150], y_train[50:150])
    checked.partial_fit(X_train[50:150].tolist(), y_train[50:150].tolist())
    assert all(np.array_equal(a, b) for a, b in zip(quick.coefs_, checked.coefs_))
    before = [w.copy() for w in quick.coefs_]
    with_nan = X_train[:20].copy()
    with_nan[3, 5] = np.nan
    for X, y, message in [(with_nan, y_train[:20], "NaN"), (X_train[:20, :10], y_train[:20], "10 features"),
                          (X_train[:20], y_train[:19], "inconsistent numbers of samples")]:
        with pytest.raises(ValueError, match=message):
            quick.partial_fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(quick.coefs_, before))
    reg = MLPRegressor((8,), random_state=0).partial_fit(X_train[:50], y_train[:50].astype(float))
    with pytest.raises(ValueError, match="infinity"):
        reg.partial_fit(X_train[:3], np.array([1.0, np.inf, 2.0]))


@pytest.mark.parametrize("labels, unseen", [(np.array([3, -1, 7]), 99), (np.array([0, 5]), 1),
                                            (np.array([2, 9, 4], np.uint8), 99), (np.array([True, False]), None),
                                            (np.array(["b", "a", "c"]), "zz"), (np.array(["yes", "no"]), "maybe")])
def test_plain_labels_encoded_as_label_binarizer_does(labels, unseen):
    from sklearn.preprocessing import LabelBinarizer
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 6))
    y = labels[rng.integers(0, len(labels), 90)]
    clf = MLPClassifier((8,), max_iter=2, random_state=0)
    Y = clf._encode_targets(y, False, None)
    lb = LabelBinarizer().fit(y)
    np.testing.assert_array_equal(Y, lb.transform(y).astype(np.float32))
    assert clf.classes_.dtype == lb.classes_.dtype and np.array_equal(clf.classes_, lb.classes_)
    assert clf._binarizer.y_type_ == lb.y_type_
    clf.fit(X, y)
    assert set(clf.predict(X)) <= set(labels)
    clf.partial_fit(X[:10], y[:10])  # continuing: encoded against the fitted classes
    if unseen is not None:
        with pytest.raises(ValueError, match="were not seen in the first fit"):
            clf.partial_fit(X[:2], np.array([labels[0], unseen]))


def test_predict_proba_is_the_float64_softmax_or_logistic_of_the_logits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xm, Ym = make_multilabel_classification(n_samples=300, n_classes=4, random_state=0)
    for clf, data in [(MLPClassifier((32,), max_iter=5, random_state=0).fit(X, y), X),
                      (MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y % 2), X),
                      (MLPClassifier((16,), max_iter=5, random_state=0).fit(Xm, Ym), Xm)]:
        p = clf.predict_proba(data)
        assert p.dtype == np.float64
        # predict_log_proba takes numpy's route from the same logits
        np.testing.assert_allclose(p, np.exp(clf.predict_log_proba(data)), rtol=1e-12, atol=1e-300)
        if p.shape[1] != Ym.shape[1]:  # one distribution per sample
            np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
        # one sample through the one-row path: the same logits, so the same bits
        np.testing.assert_array_equal(clf.predict_proba(data[3:4]), p[3:4])
    core, x32 = clf._network._core, Xm[:2].astype(np.float32)
    with pytest.raises(ValueError, match="loss: squared error has no probabilities"):
        core.predict_proba(x32, "squared")
    with pytest.raises(ValueError, match="two_columns: only for one binary output"):
        core.predict_proba(x32, "binary_ce", True)


def test_regressor_one_and_many_outputs():
    X, y = make_regression(n_samples=400, n_features=8, n_targets=1, noise=1.0, random_state=0)
    y = y / y.std()
    reg = MLPRegressor((64,), max_iter=100, learning_rate_init=0.01, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (400,)
    assert reg.score(X, y) > 0.95
    X2, Y2 = make_regression(n_samples=400, n_features=8, n_targets=3, random_state=1)
    Y2 = Y2 / Y2.std(axis=0)
    reg2 = MLPRegressor((64,), max_iter=100, learning_rate_init=0.01, random_state=0).fit(X2, Y2)
    assert reg2.predict(X2).shape == (400, 3)
    assert reg2.score(X2, Y2) > 0.9


def test_l2_and_weight_decay_shrink_the_weights(digits):
    X_train, _, y_train, _ = digits
    kwargs = dict(hidden_layer_sizes=(64,), max_iter=10, batch_size=32, random_state=0)
    plain = MLPClassifier(**kwargs).fit(X_train, y_train)
    l2 = MLPClassifier(l2=1e-2, **kwargs).fit(X_train, y_train)
    decay = MLPClassifier(weight_decay=1.0, **kwargs).fit(X_train, y_train)
    norm = lambda m: sum(float((w ** 2).sum()) for w in m.coefs_)
    assert norm(l2) < 0.8 * norm(plain)
    assert norm(decay) < 0.8 * norm(plain)
    assert l2.history_["penalty"][-1] == pytest.approx(0.5 * 1e-2 * norm(l2), rel=1e-4)
    # biases are not penalised unless asked
    assert plain.history_["penalty"][-1] == 0.0


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "plateau", "adaptive"])
def test_learning_rate_schedules(digits, schedule):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier((16,), learning_rate=schedule, lr_step_epochs=2, lr_decay=0.5, lr_patience=1,
                        max_iter=6, tol=10.0, n_iter_no_change=100, random_state=0).fit(X_train, y_train)
    rates = clf.history_["learning_rate"]
    assert rates[0] == pytest.approx(0.001)
    if schedule == "constant":
        assert rates == [0.001] * 6
    elif schedule == "step":
        assert rates == pytest.approx([0.001, 0.001, 0.0005, 0.0005, 0.00025, 0.00025])
    elif schedule == "cosine":
        assert all(a > b for a, b in zip(rates, rates[1:]))
    else:  # tol=10 makes every epoch a plateau
        assert rates[-1] < rates[0]


def test_coefs_are_views_into_the_model(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier((16,), max_iter=5, random_state=0).fit(X_train, y_train)
    before = clf.predict_proba(X_test)
    clf.coefs_[1][...] = 0.0
    clf.intercepts_[1][...] = 0.0
    np.testing.assert_allclose(clf.predict_proba(X_test), 0.1, rtol=1e-6)
    assert not np.allclose(before, 0.1)


def test_verbose_reports_every_epoch(digits, capsys):
    X_train, _, y_train, _ = digits
    MLPClassifier((8,), max_iter=3, verbose=True, random_state=0).fit(X_train, y_train)
    out = capsys.readouterr().out
    assert out.count("Epoch") == 3 and "loss" in out


def test_divergence_stops_with_an_error_and_keeps_finite_weights():
    X, y = make_regression(n_samples=300, n_features=8, random_state=0)
    reg = MLPRegressor((32,), solver="sgd", learning_rate_init=0.5, max_iter=50, random_state=0)
    with pytest.raises(DivergenceError, match="diverged"):
        reg.fit(X, y)
    assert reg.n_iter_ < 50
    assert all(np.isfinite(w).all() for w in reg.coefs_)
    assert np.isfinite(reg.predict(X)).all()


def test_partial_fit_divergence_keeps_the_weights_from_before_the_call():
    X, y = make_regression(n_samples=300, n_features=8, random_state=0)
    reg = MLPRegressor((32,), solver="sgd", learning_rate_init=1e-3, random_state=0)
    for _ in range(3):  # stable calls first: the kept copy of the weights is refreshed each call
        reg.partial_fit(X, y)
    reg.set_params(learning_rate_init=5.0)
    diverged = False
    for _ in range(50):
        before = [w.copy() for w in reg.coefs_]
        try:
            reg.partial_fit(X, y * 1e3)
        except DivergenceError:
            diverged = True
            break
    assert diverged
    assert all(np.array_equal(w, b) for w, b in zip(reg.coefs_, before))
    assert "_snapshot" not in pickle.loads(pickle.dumps(reg)).__dict__  # scratch, not state


def test_ctrl_c_leaves_a_usable_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 100)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    # n_iter_no_change: no stop by convergence before the signal, however fast the machine
    clf = MLPClassifier((256, 256), batch_size=32, max_iter=1000, n_iter_no_change=1000, random_state=0)
    # Python's own handler, which a process started in the background (SIGINT ignored) lacks
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - started < 30
    assert clf.n_iter_ < 1000
    assert np.isfinite(clf.coefs_[0]).all()
    assert clf.predict(X[:10]).shape == (10,)
    clf.partial_fit(X[:500], y[:500])


BAD_PARAMS = [
    (dict(solver="lbfgs"), "solver"),
    (dict(activation="swish"), "activation"),
    (dict(activation=["relu", "tanh"]), "activation"),
    (dict(activation=("maxout", 1)), "maxout"),
    (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), "hidden_layer_sizes"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=[0.1, 0.2]), "dropout"),
    (dict(input_dropout=1.5), "input_dropout"),
    (dict(dropout_mode="gaussian"), "dropout_mode"),
    (dict(l2=-1.0), "l2"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(learning_rate_init=0.0), "learning_rate_init"),
    (dict(learning_rate="invscaling"), "learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_iter=0), "max_iter"),
    (dict(momentum=1.0), "momentum"),
    (dict(beta_2=1.0), "beta_2"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(n_threads=0), "n_threads"),
    (dict(l2=float("nan")), "l2"),
]


@pytest.mark.parametrize("params, name", BAD_PARAMS, ids=[p[1] + str(i) for i, p in enumerate(BAD_PARAMS)])
def test_bad_hyperparameters_name_the_argument(params, name):
    X, y = np.random.rand(20, 3), np.arange(20) % 2
    with pytest.raises((ValueError, TypeError), match=name):
        MLPClassifier(hidden_layer_sizes=params.pop("hidden_layer_sizes", (4,)), **params).fit(X, y)


def test_bad_data_raises_clear_errors():
    X, y = np.random.rand(20, 3), np.arange(20) % 2
    clf = MLPClassifier((4,), max_iter=2)
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.where(X > 0.5, np.nan, X), y)
    with pytest.raises(ValueError, match="infinity|NaN"):
        clf.fit(np.where(X > 0.5, np.inf, X), y)
    with pytest.raises(ValueError, match="class"):
        clf.fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="2D|2-d"):
        clf.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="sample"):
        clf.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="float32"):
        clf.fit(X * 1e300, y)
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X, y, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, np.random.rand(20))
    clf.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.random.rand(5, 4))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"y\b"):
        MLPRegressor((4,), max_iter=2).fit(X, np.full(20, 1e300))


def test_non_finite_float32_input_to_predictions_is_refused():
    # float32 C-contiguous input goes to the engine unconverted, and the
    # engine checks it: every prediction method, either estimator, any row
    X, y = np.random.default_rng(0).random((20, 3)).astype(np.float32), np.arange(20) % 2
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    reg = MLPRegressor((4,), max_iter=2, random_state=0).fit(X, y.astype(float))
    expected = clf.predict_proba(X)
    for bad_value in (np.nan, np.inf, -np.inf):
        for row in (0, 19):
            bad = X.copy()
            bad[row, 2] = bad_value
            for predict in (clf.predict, clf.predict_proba, clf.predict_log_proba, reg.predict):
                with pytest.raises(ValueError, match="X: contains NaN or infinity"):
                    predict(bad)
    np.testing.assert_array_equal(clf.predict_proba(X), expected)  # the model is untouched


def test_odd_but_valid_inputs_work():
    rng = np.random.default_rng(0)
    X = rng.random((30, 4))
    y = np.arange(30) % 3
    clf = MLPClassifier((4,), max_iter=3, random_state=0)
    # Fortran order, non-contiguous, read-only, int and float32 inputs, lists
    clf.fit(np.asfortranarray(X), y)
    reference = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict_proba(np.asfortranarray(X)), reference)
    wide = np.hstack([X, X])[:, ::2]
    clf.fit(wide, y)
    readonly = X.copy()
    readonly.setflags(write=False)
    clf.fit(readonly, y)
    clf.fit(X.astype(np.float32), y)
    clf.fit((X * 10).astype(int), y)
    clf.fit(X.tolist(), y.tolist())
    assert clf.predict(X[:1]).shape == (1,)


@pytest.mark.parametrize("omp, expected", [("1", 1), ("100000", None), ("abc", None), ("", None)])
def test_default_thread_count_honours_omp_num_threads(omp, expected):
    """joblib's worker processes set OMP_NUM_THREADS to their share of the
    CPUs; dropkit's default must follow it, or n_jobs processes would each
    start a thread per CPU. Unset or invalid values leave the CPU count."""
    env = dict(os.environ, OMP_NUM_THREADS=omp)
    out = subprocess.run([sys.executable, "-c", "import dropkit; print(dropkit.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    cpus = len(os.sched_getaffinity(0))
    assert int(out) == (expected if expected is not None else cpus)
