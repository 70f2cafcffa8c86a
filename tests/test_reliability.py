"""Reliability: callbacks that fail, concurrency, forked workers, memory,
the instruction-set override, and property-based bad input."""
import multiprocessing
import os
import subprocess
import tempfile
import sys
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

import dropkit
from dropkit import MLPClassifier, MLPRegressor, functional as F


# ----------------------------------------------------------------------------
# callbacks


def test_callbacks_see_every_epoch_and_can_stop(digits):
    X, y = digits
    seen = []
    clf = MLPClassifier((16,), max_iter=50, random_state=0,
                        callbacks=lambda model, info: seen.append(info["epoch"]) or info["epoch"] == 4)
    clf.fit(X, y)
    assert seen == [1, 2, 3, 4] and clf.n_iter_ == 4


def test_a_failing_callback_leaves_a_whole_model(digits):
    X, y = digits

    def explode(model, info):
        if info["epoch"] == 3:
            raise RuntimeError("user code failed")

    clf = MLPClassifier((16,), max_iter=20, early_stopping=True, random_state=0, callbacks=[explode])
    with pytest.raises(RuntimeError, match="user code failed"):
        clf.fit(X, y)
    assert clf.n_iter_ == 3 == len(clf.loss_curve_) == len(clf.history_["loss"]) == len(clf.validation_scores_)
    assert np.isfinite(clf.predict_proba(X)).all()
    clf.set_params(callbacks=None, early_stopping=False)
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 4
    with pytest.raises(TypeError, match="callbacks"):
        MLPClassifier(callbacks=[1]).fit(X, y)


# ----------------------------------------------------------------------------
# threads and processes


def fit_digits(X, y, seed):
    return MLPClassifier((32,), dropout=0.2, max_iter=4, random_state=seed).fit(X, y)


def test_two_fits_in_two_threads_equal_two_fits_in_a_row(digits):
    X, y = digits
    sequential = [fit_digits(X, y, s).coefs_[0].copy() for s in (0, 1)]
    results = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, fit_digits(X, y, s).coefs_[0].copy()))
               for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (0, 1):
        np.testing.assert_array_equal(results[s], sequential[s])


def test_many_threads_predict_with_one_model(digits):
    X, y = digits
    clf = fit_digits(X, y, 0)
    expected = clf.predict_proba(X)
    outputs = [None] * 8

    def work(i):
        for _ in range(5):
            outputs[i] = clf.predict_proba(X)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


def _child_work(queue):
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier((64,), max_iter=2, random_state=0).fit(X / 16.0, y)
    queue.put(float(clf.score(X / 16.0, y)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_workers_use_the_kernels(digits):
    X, y = digits
    fit_digits(X, y, 0)  # the parent's thread pool is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_work, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    scores = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    X, y = load_digits(return_X_y=True)
    expected = MLPClassifier((64,), max_iter=2, random_state=0).fit(X / 16.0, y).score(X / 16.0, y)
    assert scores == [expected, expected]


def test_joblib_workers_in_a_grid_search(digits):
    from sklearn.model_selection import cross_val_score
    X, y = digits
    est = MLPClassifier((16,), max_iter=3, random_state=0)
    parallel = cross_val_score(est, X, y, cv=2, n_jobs=2)
    np.testing.assert_array_equal(parallel, cross_val_score(est, X, y, cv=2, n_jobs=1))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's quarantine keeps freed memory resident; the plain run measures this")
def test_repeated_fit_and_predict_do_not_grow_memory(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    for _ in range(30):  # warm up allocators and caches
        MLPClassifier((32,), max_iter=2, random_state=0).fit(X, y).predict_proba(X)
    before = rss_bytes()
    for i in range(300):
        MLPClassifier((32,), dropout=0.1, max_iter=2, random_state=i).fit(X, y).predict_proba(X)
    growth = rss_bytes() - before
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 fits"


def test_fit_on_float32_data_allocates_nothing_the_size_of_the_data():
    # float32 C-contiguous data is used in place: checking it for NaN and
    # infinity must not build a mask a quarter of its size (numpy's
    # allocations are what tracemalloc sees)
    rng = np.random.default_rng(0)
    X = rng.random((4000, 2000), dtype=np.float32)
    y = rng.integers(0, 3, 4000)
    tracemalloc.start()
    try:
        MLPClassifier((8,), max_iter=1, random_state=0).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 16, f"fit allocated {peak / 2**20:.1f} MiB beside {X.nbytes / 2**20:.0f} MiB of data"


def test_the_isa_can_be_forced_lower_by_environment():
    code = "import dropkit; print(dropkit.simd_backend())"
    env = dict(os.environ, DROPKIT_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"
    env["DROPKIT_ISA"] = "sse9"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == dropkit.available_isas()[0] and "DROPKIT_ISA" in out.stderr


# ----------------------------------------------------------------------------
# property-based bad input


DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_, np.complex64, object, "U3"]


@st.composite
def arrays(draw, max_rows=6, max_cols=5):
    rows = draw(st.integers(0, max_rows))
    cols = draw(st.integers(0, max_cols))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(st.lists(st.sampled_from([0.0, 1.0, -2.5, 0.5, 3.0, np.nan, np.inf, 1e300]),
                           min_size=rows * cols, max_size=rows * cols))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = np.array(values, dtype=np.float64).reshape(rows, cols)
        if dtype == "U3":
            arr = base.astype(str).astype("U3")
        elif dtype == object:
            arr = base.astype(object)
        else:
            arr = base.astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly", "list", "memmap"]))
    if layout == "memmap" and arr.dtype != object and arr.size:
        path = os.path.join(tempfile.mkdtemp(), "x.npy")
        np.save(path, arr)
        arr = np.load(path, mmap_mode="r")
    elif layout == "f":
        arr = np.asfortranarray(arr)
    elif layout == "strided":
        arr = np.repeat(arr, 2, axis=1)[:, ::2]
    elif layout == "readonly":
        arr = arr.copy()
        arr.setflags(write=False)
    elif layout == "list":
        arr = arr.tolist()
    return arr


FIT_NAMES = ("X", "y", "sample", "class", "feature", "float32", "NaN", "infinity", "dtype", "array", "Unknown label",
             "2D", "complex", "numeric", "could not convert", "string")


def check_clean_failure(exc):
    message = str(exc)
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)
    assert any(name.lower() in message.lower() for name in FIT_NAMES), message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X=arrays(), labels=st.lists(st.integers(0, 2), min_size=0, max_size=6), regress=st.booleans())
def test_fit_and_predict_either_work_or_fail_cleanly(X, labels, regress):
    n = len(X) if isinstance(X, list) else X.shape[0]
    y = np.array((labels * 3)[:n], dtype=float if regress else int)
    est = (MLPRegressor if regress else MLPClassifier)((3,), max_iter=2, random_state=0)
    try:
        with np.errstate(all="ignore"):
            est.fit(X, y)
    except Exception as exc:  # noqa: BLE001 - the assertion is on the type and message
        check_clean_failure(exc)
        return
    out = est.predict(X)
    assert len(out) == n
    if not regress:
        assert set(np.unique(out)) <= set(np.unique(y))
        assert np.isfinite(est.predict_proba(X)).all()
    else:
        assert np.isfinite(out).all()


@settings(max_examples=60, deadline=None)
@given(z=arrays(max_rows=4, max_cols=4), name=st.sampled_from(["relu", "tanh", "sigmoid", "elu", "swish", 3]))
def test_functional_either_works_or_fails_cleanly(z, name):
    try:
        out = F.activation(z, name)
    except (ValueError, TypeError) as exc:
        assert any(k in str(exc) for k in ("z", "name", "activation")), str(exc)
        return
    assert out.shape == np.asarray(z).shape and out.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(params=st.fixed_dictionaries({}, optional={
    "dropout": st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, float("nan"), "x", [0.1, 0.2]]),
    "l1": st.sampled_from([-1.0, 0.0, 1e-4, float("inf"), None]),
    "l2": st.sampled_from([-1.0, 0.0, 1e-4, "big"]),
    "max_norm": st.sampled_from([None, 0.0, -1.0, 3.0]),
    "batch_size": st.sampled_from([0, 1, 5, "auto", 2.5, -3]),
    "learning_rate_init": st.sampled_from([0.0, -1.0, 1e-3, float("nan")]),
    "hidden_layer_sizes": st.sampled_from([(), (3,), (0,), (2, -1), "7", 4]),
    "activation": st.sampled_from(["relu", "tanh", ("maxout", 2), ("leaky_relu", "x"), "softmax", None]),
    "solver": st.sampled_from(["adam", "sgd", "lbfgs", None]),
}))
def test_hyperparameters_either_work_or_name_themselves(params):
    X, y = np.random.default_rng(0).random((12, 3)), np.arange(12) % 2
    try:
        MLPClassifier(max_iter=2, random_state=0, **params).fit(X, y).predict(X)
    except (ValueError, TypeError) as exc:
        assert any(name in str(exc) for name in params), (params, str(exc))


def test_pandas_dataframes_work_like_arrays(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(64)])
    clf = MLPClassifier((16,), max_iter=3, random_state=0).fit(frame, pd.Series(y))
    assert list(clf.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(clf.predict(frame), MLPClassifier((16,), max_iter=3, random_state=0).fit(X, y).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame.rename(columns={"pixel0": "other"}))


@pytest.mark.skipif(os.environ.get("DROPKIT_BIG_TESTS") != "1",
                    reason="needs ~17 GB of memory: set DROPKIT_BIG_TESTS=1")
def test_inputs_past_2_to_the_31_elements():
    """Offsets into X are 64-bit: predict on more than 2**31 float32 values."""
    rng = np.random.default_rng(0)
    small = rng.random((200, 64)).astype(np.float32)
    clf = MLPClassifier((16,), max_iter=2, random_state=0).fit(small, np.arange(200) % 3)
    rows = 2**31 // 64 + 1024
    X = np.empty((rows, 64), np.float32)
    X[:] = small[np.arange(rows) % 200]  # each block of 200 rows repeats `small`
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(proba[-200:], proba[:200][(np.arange(rows - 200, rows) % 200)])


FUNCTIONAL_CALLS = {
    "dense": lambda a, b: F.dense(a, b),
    "gemm": lambda a, b: F.gemm(a, b),
    "activation_grad": lambda a, b: F.activation_grad(a, b, None, "tanh"),
    "maxout": lambda a, b: F.maxout(a, 2),
    "dropout": lambda a, b: F.dropout(a, 0.5, seed=0),
    "softmax": lambda a, b: F.softmax(a),
    "softmax_cross_entropy": lambda a, b: F.softmax_cross_entropy(a, b),
    "binary_cross_entropy": lambda a, b: F.binary_cross_entropy(a, b),
    "squared_error": lambda a, b: F.squared_error(a, b),
    "norm": lambda a, b: F.norm(a, 1),
    "activity_penalty": lambda a, b: F.activity_penalty(a, dropkit.StudentT(0.1)),
    "network_forward": lambda a, b: dropkit.Network(5, [dropkit.Dense(3)]).forward(a),
    "network_predict": lambda a, b: dropkit.Network(5, [dropkit.Dense(3)]).predict(a, mc_samples=2),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(FUNCTIONAL_CALLS)), a=arrays(max_rows=4, max_cols=5),
       b=arrays(max_rows=5, max_cols=4))
def test_every_array_function_works_or_fails_cleanly(name, a, b):
    """Any pair of odd arrays: a result, or ValueError/TypeError; never a crash."""
    try:
        with np.errstate(all="ignore"):
            out = FUNCTIONAL_CALLS[name](a, b)
    except (ValueError, TypeError) as exc:
        assert str(exc), name
        return
    assert out is not None


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=400), keep=st.integers(0, 4000))
def test_loading_arbitrary_bytes_fails_cleanly(tmp_path_factory, data, keep):
    """Random bytes, and a real model file cut or spliced with them."""
    path = tmp_path_factory.mktemp("files") / "model.dkm"
    real = _saved_model_bytes()
    for content in (data, real[:keep] + data, real[:keep] + data + real[keep + len(data):]):
        path.write_bytes(content)
        if content == real:
            continue
        with pytest.raises(ValueError):
            dropkit.load(path)


_MODEL_BYTES = []


def _saved_model_bytes():
    if not _MODEL_BYTES:
        X, y = load_digits(return_X_y=True)
        path = os.path.join(tempfile.mkdtemp(), "m.dkm")
        MLPClassifier((8,), max_iter=1, random_state=0).fit(X[:100], y[:100]).save(path)
        with open(path, "rb") as f:
            _MODEL_BYTES.append(f.read())
    return _MODEL_BYTES[0]
