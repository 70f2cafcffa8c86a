"""omp_encode and OMPFeatures: against scikit-learn's orthogonal_mp_gram and a
plain float64 numpy OMP, on every instruction set, at awkward sizes."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import orthogonal_mp_gram
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import dropkit
from dropkit import MLPClassifier, OMPFeatures, omp_encode

# Agreement with a float64 OMP: each coefficient within 1e-4 of the largest
# coefficient of its code (float32 correlations carry ~1e-7 relative error,
# amplified by the conditioning of the chosen atoms).
COEF_RTOL = 1e-4
# A signal whose path meets two atoms with |correlations| closer than this
# (relative to ||x||) may legitimately choose either: float32 correlations are
# good to ~1e-6 ||x||. Only such near-ties may choose other atoms.
TIE = 1e-5


def unit_rows(A):
    A = np.asarray(A, dtype=np.float64)
    return (A / np.linalg.norm(A, axis=1, keepdims=True)).astype(np.float32)


def random_problem(n, d, m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), unit_rows(rng.standard_normal((m, d)))


def numpy_omp(X, D, k, tol=None):
    """Plain OMP in float64 on the residual, with lstsq for the coefficients.
    Returns the codes and, per signal, the smallest gap between the best and
    the second-best |correlation| met along the path, over ||x||."""
    X, D = np.asarray(X, np.float64), np.asarray(D, np.float64)
    H = np.zeros((X.shape[0], D.shape[0]))
    gaps = np.full(X.shape[0], np.inf)
    for i, x in enumerate(X):
        norm = np.linalg.norm(x)
        r, chosen = x.copy(), []
        while len(chosen) < min(k, D.shape[1]):
            if tol is not None and r @ r <= tol:
                break
            c = np.abs(D @ r)
            c[chosen] = -1.0
            order = np.argsort(-c, kind="stable")
            if c[order[0]] <= 1e-5 * norm:
                break
            if len(order) > 1:
                gaps[i] = min(gaps[i], (c[order[0]] - c[order[1]]) / norm)
            chosen.append(order[0])
            coef, *_ = np.linalg.lstsq(D[chosen].T, x, rcond=None)
            r = x - coef @ D[chosen]
        if chosen:
            H[i, chosen] = coef
    return H, gaps


def sklearn_omp(X, D, k):
    D64, X64 = D.astype(np.float64), X.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "orthogonal matching pursuit ended prematurely"
        H = orthogonal_mp_gram(D64 @ D64.T, D64 @ X64.T, n_nonzero_coefs=k)
    return np.atleast_2d(H.T) if X.shape[0] > 1 else H[None, :]


def assert_codes_agree(H, ref, gaps, max_tie_fraction=0.05):
    """Same atoms except at near-ties (which must be rare), and the same
    coefficients wherever the atoms are the same."""
    differs = ((H != 0) != (ref != 0)).any(axis=1)
    assert (gaps[differs] < TIE).all(), f"other atoms chosen for signals {np.flatnonzero(differs & (gaps >= TIE))}"
    assert differs.mean() <= max_tie_fraction, f"{differs.sum()} of {len(differs)} signals chose other atoms"
    H, ref = H[~differs], ref[~differs]
    scale = np.abs(ref).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    worst = (np.abs(H - ref) / scale).max()
    assert worst <= COEF_RTOL, f"coefficients differ by {worst:.2e} of the code's largest"


@pytest.fixture(scope="module")
def standardized_digits(digits):
    X, y = digits
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def learned_dictionary(standardized_digits):
    X, _ = standardized_digits
    D = OMPFeatures(96, k=4, n_iter=5, random_state=0).fit(X).components_
    return X[:150], D


# ----------------------------------------------------------------------------
# against scikit-learn


@pytest.mark.parametrize("k", [1, 2, 8, 32])
def test_matches_sklearn_on_random_dictionary(isa, k):
    X, D = random_problem(80, 45, 131, seed=k)
    H = omp_encode(X, D, k)
    assert H.dtype == np.float32 and H.shape == (80, 131)
    assert ((H != 0).sum(axis=1) == k).all()
    _, gaps = numpy_omp(X, D, k)
    assert_codes_agree(H, sklearn_omp(X, D, k), gaps)


@pytest.mark.parametrize("k", [1, 2, 8, 32])
def test_matches_sklearn_on_learned_dictionary(isa, learned_dictionary, k):
    X, D = learned_dictionary
    H = omp_encode(X, D, k)
    _, gaps = numpy_omp(X, D, k)
    assert_codes_agree(H, sklearn_omp(X, D, k), gaps)


def test_matches_sklearn_with_tol(isa):
    X, D = random_problem(60, 30, 70, seed=3)
    norms2 = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    tol = 0.2 * float(norms2.mean())
    H = omp_encode(X, D, D.shape[0], tol=tol)
    D64 = D.astype(np.float64)
    ref = orthogonal_mp_gram(D64 @ D64.T, D64 @ X.T.astype(np.float64), tol=tol, norms_squared=norms2).T
    _, gaps = numpy_omp(X, D, D.shape[0], tol=tol)
    assert_codes_agree(H, ref, gaps)
    residual = X.astype(np.float64) - H.astype(np.float64) @ D64
    assert (np.einsum("ij,ij->i", residual, residual) <= tol * (1 + 1e-4)).all()
    assert ((H != 0).sum(axis=1) < 30).all()


# ----------------------------------------------------------------------------
# against a plain numpy OMP


@pytest.mark.parametrize("n, d, m, k", [(1, 1, 1, 1), (3, 1, 4, 2), (7, 15, 17, 3), (5, 16, 16, 16),
                                        (9, 17, 63, 5), (4, 100, 65, 7), (40, 24, 129, 9), (6, 33, 1023, 4)])
def test_matches_numpy_at_awkward_sizes(isa, n, d, m, k):
    X, D = random_problem(n, d, m, seed=n + d + m)
    H = omp_encode(X, D, k)
    ref, gaps = numpy_omp(X, D, k)
    assert_codes_agree(H, ref, gaps, max_tie_fraction=0.2 if d == 1 else 0.05)
    assert ((H != 0).sum(axis=1) <= min(k, d)).all()


def test_orthonormal_dictionary_gives_top_k_correlations(isa):
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    D = Q[:27].astype(np.float32)  # 27 orthonormal atoms in 40 dimensions
    X = rng.standard_normal((50, 40)).astype(np.float32)
    corr = X.astype(np.float64) @ D.T.astype(np.float64)
    for k in (1, 5, 27):
        H = omp_encode(X, D, k)
        top = np.argsort(-np.abs(corr), axis=1, kind="stable")[:, :k]
        expected = np.zeros_like(corr)
        np.put_along_axis(expected, top, np.take_along_axis(corr, top, axis=1), axis=1)
        np.testing.assert_allclose(H, expected, rtol=0, atol=1e-5)


def test_exactly_sparse_signals_are_recovered_and_stop(isa):
    rng = np.random.default_rng(2)
    D = unit_rows(rng.standard_normal((200, 64)))
    truth = np.zeros((30, 200), dtype=np.float32)
    for row in truth:
        row[rng.choice(200, 4, replace=False)] = rng.uniform(1, 3, 4) * rng.choice([-1, 1], 4)
    X = truth @ D
    H = omp_encode(X, D, 10)  # room for 10, but the residual is zero after 4
    np.testing.assert_allclose(H, truth, rtol=0, atol=1e-4)
    assert ((H != 0).sum(axis=1) == 4).all()


def test_zero_signals_give_zero_codes(isa):
    X, D = random_problem(12, 20, 50)
    X[[0, 5, 11]] = 0.0
    for k in (1, 3):
        for tol in (None, 0.5):
            H = omp_encode(X, D, k, tol=tol)
            assert np.isfinite(H).all()
            assert not H[[0, 5, 11]].any()
            assert (H[[1, 2]] != 0).any()
            C = omp_encode(X, D, k, tol=tol, output="csr")
            assert C.getrow(5).nnz == 0


def test_small_signal_below_tol_gets_no_atoms():
    X, D = random_problem(4, 10, 20)
    H = omp_encode(X, D, 3, tol=1e9)
    assert not H.any()


def test_duplicate_atoms_stay_finite(isa):
    X, D = random_problem(30, 8, 12)
    D = np.vstack([D, D[:4], -D[4:6]])
    H = omp_encode(X, D, 8)
    assert np.isfinite(H).all()
    ref, gaps = numpy_omp(X, D, 8)
    residual = X - H @ D
    ref_residual = X - ref @ D
    np.testing.assert_allclose(np.linalg.norm(residual, axis=1), np.linalg.norm(ref_residual, axis=1), atol=1e-3)


def test_codes_do_not_depend_on_thread_count(isa):
    X, D = random_problem(301, 40, 150, seed=7)
    for k in (1, 6):
        codes = [omp_encode(X, D, k, n_threads=t) for t in (1, 2, 3)]
        for other in codes[1:]:
            np.testing.assert_array_equal(codes[0], other)
        # and not on which rows come along in the same call
        np.testing.assert_array_equal(omp_encode(X[100:117], D, k), codes[0][100:117])


def test_csr_output_matches_dense(isa):
    X, D = random_problem(64, 20, 90, seed=4)
    for k, tol in ((1, None), (5, None), (20, 5.0)):
        dense = omp_encode(X, D, k, tol=tol)
        C = omp_encode(X, D, k, tol=tol, output="csr")
        assert sp.issparse(C) and C.format == "csr" and C.dtype == np.float32
        assert C.has_sorted_indices
        assert C.nnz == np.count_nonzero(dense)
        np.testing.assert_array_equal(C.toarray(), dense)


def test_threads_setting_is_restored():
    before = dropkit.get_num_threads()
    X, D = random_problem(10, 5, 7)
    omp_encode(X, D, 2, n_threads=1)
    assert dropkit.get_num_threads() == before


# ----------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(k=0), ValueError, "^k:"),
    (dict(k=31), ValueError, "^k: expected at most n_atoms = 30"),
    (dict(k=2.5), TypeError, "^k:"),
    (dict(k=True), TypeError, "^k:"),
    (dict(tol=-1.0), ValueError, "^tol:"),
    (dict(tol=float("nan")), ValueError, "^tol:"),
    (dict(n_threads=0), ValueError, "^n_threads:"),
    (dict(output="coo"), ValueError, "^output:"),
])
def test_bad_arguments(kwargs, error, pattern):
    X, D = random_problem(5, 8, 30)
    args = dict(k=2)
    args.update(kwargs)
    k = args.pop("k")
    with pytest.raises(error, match=pattern):
        omp_encode(X, D, k, **args)


def test_bad_arrays():
    X, D = random_problem(5, 8, 30)
    cases = [
        (X, D * 2.0, "^D: atoms \\(rows\\) must have unit L2 norm"),
        (X, np.vstack([D, np.zeros((1, 8), np.float32)]), "^D: atoms \\(rows\\) must have unit L2 norm"),
        (X, D[:, :7], "^D: atoms have 7 features but X has 8"),
        (X, np.zeros((0, 8), np.float32), "^D: empty"),
        (np.where(np.eye(5, 8) > 0, np.nan, X), D, "^X: contains NaN"),
        (X, np.where(np.eye(30, 8) > 0, np.inf, D), "^D: contains NaN or infinity"),
        (X[0], D, "^X: expected a 2-d array"),
        (np.zeros((0, 8)), D, "^X: empty"),
    ]
    for Xb, Db, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            omp_encode(Xb, Db, 2)


def test_slightly_unnormalised_atoms_are_accepted():
    X, D = random_problem(6, 12, 20)
    np.testing.assert_allclose(omp_encode(X, D * (1 + 3e-5), 3), omp_encode(X, D, 3), rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------
# OMPFeatures


@pytest.mark.parametrize("k", [1, 3])
def test_features_are_split_sign_codes(standardized_digits, k):
    X, _ = standardized_digits
    f = OMPFeatures(40, k=k, n_iter=4, random_state=0).fit(X)
    assert f.components_.shape == (40, 64) and f.components_.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f.components_, axis=1), 1.0, atol=1e-6)
    F = f.transform(X[:100])
    H = omp_encode(X[:100], f.components_, k)
    assert F.shape == (100, 80) and F.dtype == np.float32
    np.testing.assert_array_equal(F, np.hstack([np.maximum(H, 0), np.maximum(-H, 0)]))
    f.set_params(split_sign=False)
    np.testing.assert_array_equal(f.transform(X[:100]), H)
    assert len(f.get_feature_names_out()) == 40


@pytest.mark.parametrize("k", [1, 4])
def test_learning_lowers_the_coding_error(standardized_digits, k):
    X, _ = standardized_digits
    f = OMPFeatures(64, k=k, n_iter=8, random_state=0).fit(X)
    assert f.n_iter_ == 8 and len(f.error_) == 8
    assert f.error_[-1] < 0.8 * f.error_[0]
    if k == 1:  # a power-iteration step per atom: the error cannot rise (to float32 noise)
        assert (np.diff(f.error_) <= 1e-5 * f.error_[0]).all()
    H = omp_encode(X, f.components_, k)
    final = np.mean(np.sum((X - H @ f.components_) ** 2, axis=1))
    assert final <= f.error_[-1] * (1 + 1e-3)


def test_unused_atoms_are_reseeded_from_the_worst_coded_sample():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 5)).astype(np.float32)
    D = unit_rows(rng.standard_normal((3, 5)))
    H = sp.csr_matrix(np.array([[1, 0.5, 0], [0, 1, 0], [2, 0, 0], [0, 1, 0], [1, 0, 0], [0, 3, 0]],
                               dtype=np.float32))  # atom 2 unused
    residual = X - H @ D
    worst = np.argmax(np.sum(residual ** 2, axis=1))
    new = OMPFeatures._update(X, H, D, residual, k=2, rng=np.random.RandomState(0))
    np.testing.assert_allclose(new[2], residual[worst] / np.linalg.norm(residual[worst]), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-6)


def test_more_atoms_than_samples_and_constant_data():
    X = np.ones((5, 3))
    f = OMPFeatures(12, k=2, n_iter=3, random_state=0).fit(X)
    assert np.isfinite(f.components_).all()
    np.testing.assert_allclose(np.linalg.norm(f.components_, axis=1), 1.0, atol=1e-6)
    assert np.isfinite(f.transform(X)).all()


def test_whitening_decorrelates():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    X = rng.standard_normal((2000, 6)) @ (np.arange(1.0, 7.0)[:, None] * Q) + 3.0
    f = OMPFeatures(8, n_iter=1, whiten=True, whiten_eps=1e-6, random_state=0).fit(X)
    Xw = f._apply_whitening(X.astype(np.float32))
    np.testing.assert_allclose(np.cov(Xw.T, bias=True), np.eye(6), atol=1e-3)
    assert OMPFeatures(8, n_iter=1).fit(X).whitening_ is None


def test_fit_is_deterministic_and_thread_independent(standardized_digits):
    X, _ = standardized_digits
    a = OMPFeatures(32, k=2, n_iter=3, random_state=5, n_threads=1).fit(X).components_
    b = OMPFeatures(32, k=2, n_iter=3, random_state=5, n_threads=2).fit(X).components_
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params, error, pattern", [
    (dict(n_atoms=0), ValueError, "^n_atoms:"),
    (dict(n_atoms=4, k=5), ValueError, "^k: expected at most n_atoms = 4"),
    (dict(k=0), ValueError, "^k:"),
    (dict(n_iter=-1), ValueError, "^n_iter:"),
    (dict(split_sign="yes"), TypeError, "^split_sign:"),
    (dict(whiten_eps=0.0), ValueError, "^whiten_eps:"),
    (dict(n_threads=0), ValueError, "^n_threads:"),
])
def test_features_bad_parameters(params, error, pattern):
    with pytest.raises(error, match=pattern):
        OMPFeatures(**params).fit(np.random.default_rng(0).standard_normal((20, 4)))


def test_pipeline_with_mlp_and_grid_search(standardized_digits):
    X, y = standardized_digits
    pipe = make_pipeline(OMPFeatures(64, random_state=0, n_iter=3),
                         MLPClassifier((64,), max_iter=30, random_state=0))
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.9
    search = GridSearchCV(pipe, {"ompfeatures__k": [1, 2]}, cv=2).fit(X[:600], y[:600])
    assert search.best_params_["ompfeatures__k"] in (1, 2)


# scikit-learn's checks fit on ~30 samples with 2-5 features; n_atoms=6 keeps
# them quick. float64 input gives float32 codes by design (compute is float32),
# declared with the preserves_dtype tag rather than listed as a failure.
@parametrize_with_checks([OMPFeatures(6, n_iter=3, random_state=0),
                          OMPFeatures(6, k=2, split_sign=False, whiten=True, n_iter=2, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
