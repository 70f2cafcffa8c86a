"""Sparse coding by orthogonal matching pursuit: omp_encode and OMPFeatures.

``omp_encode(X, D, k)`` finds, for each row x of X, codes h with at most k
non-zeros that greedily minimise ||x - h D||^2 over the atoms (rows) of D.
It runs Batch-OMP (Rubinstein, Zibulevsky & Elad 2008) in C++: the
correlations D x and the Gram matrix D D^T come from dropkit's GEMM, the
small Cholesky systems are solved in float64, and signals are split across
threads (the codes do not depend on the thread count).

``OMPFeatures`` is the feature extractor of Coates & Ng ("The importance of
encoding versus training with sparse coding and vector quantization", ICML
2011) as a scikit-learn transformer: it learns a dictionary from the data
and encodes with OMP-k, optionally splitting each code into its positive and
negative parts.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._validation import as_float32_matrix, check_int, check_nonneg, to_float32
from .estimators import thread_count

__all__ = ["omp_encode", "OMPFeatures"]

# Atoms must have unit norm to this relative tolerance (float32 rows
# normalised in any precision are within ~1e-7).
UNIT_NORM_RTOL = 1e-4


def _check_dictionary(D, n_features):
    D = as_float32_matrix(D, "D")
    if D.shape[1] != n_features:
        raise ValueError(f"D: atoms have {D.shape[1]} features but X has {n_features}; "
                         "expected D of shape (n_atoms, n_features)")
    norms = np.sqrt(np.einsum("ij,ij->i", D, D, dtype=np.float64))
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_NORM_RTOL)
    if bad.size:
        j = bad[0]
        raise ValueError(f"D: atoms (rows) must have unit L2 norm; {bad.size} do not, e.g. row {j} has norm "
                         f"{norms[j]:.6g}. Normalise them first, e.g. D / np.linalg.norm(D, axis=1, keepdims=True) "
                         "(dropkit does not do it for you: the codes would then refer to other atoms than yours)")
    return D


def _check_k(k, n_atoms):
    k = check_int(k, "k")
    if k > n_atoms:
        raise ValueError(f"k: expected at most n_atoms = {n_atoms} non-zeros per code, got {k}")
    return k


def omp_encode(X, D, k, *, tol=None, n_threads=None, output="dense"):
    """Sparse codes of the rows of X over the dictionary D by orthogonal matching pursuit.

    For each signal x (a row of X), picks at most ``k`` atoms (rows of D) one
    at a time, each time the atom most correlated with the current residual,
    and sets their coefficients to the least-squares fit of x, so that
    ``x ~ h @ D`` with ``h`` having at most k non-zeros.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The signals.
    D : array-like of shape (n_atoms, n_features)
        The dictionary. Every row must have unit L2 norm (to 1e-4 relative);
        otherwise ValueError: normalising silently would change what the codes
        mean.
    k : int
        Largest number of non-zeros per code, 1 <= k <= n_atoms. A code can
        have fewer: when the residual is already zero (to float32 precision),
        when the next atom is in the span of those chosen, when ``tol`` is
        reached, and never more than n_features.
    tol : float or None
        Stop a signal once its squared residual norm ||x - h D||^2 is at most
        ``tol`` (scikit-learn's meaning of ``tol`` in ``orthogonal_mp_gram``).
        A signal with ||x||^2 <= tol gets an all-zero code. The residual is
        tracked as ||x||^2 - ||L^-1 D_I x||^2 in float64 from float32
        correlations, so it is accurate to about 1e-6 ||x||^2.
    n_threads : int or None
        Threads for this call (default: dropkit's setting, see ``set_num_threads``).
    output : {"dense", "csr"}
        A dense float32 array, or a ``scipy.sparse.csr_matrix`` with sorted
        column indices (use it when n_atoms is large).

    Returns
    -------
    H : ndarray or csr_matrix of shape (n_samples, n_atoms), float32
        Zero signals get zero codes. When D is orthonormal, H holds the k
        largest correlations D x of each signal (in absolute value).

    Notes
    -----
    Memory: for k > 1 the Gram matrix, n_atoms^2 floats, plus per thread
    about min(k, n_features) * n_atoms floats; MemoryError if that fails.

    Atoms are chosen by largest |correlation| with the residual, the first
    atom on exact ties (as ``numpy.argmax`` and scikit-learn). Correlations
    are float32, so atoms whose correlations differ by less than about
    1e-6 ||x|| may be chosen in another order than a float64 implementation.
    """
    X = as_float32_matrix(X, "X")
    D = _check_dictionary(D, X.shape[1])
    k = _check_k(k, D.shape[0])
    if tol is not None:
        tol = check_nonneg(tol, "tol")
    if n_threads is not None:
        n_threads = check_int(n_threads, "n_threads")
    if output not in ("dense", "csr"):
        raise ValueError(f"output: expected 'dense' or 'csr', got {output!r}")
    with thread_count(n_threads):
        if output == "dense":
            return _core.omp_encode(X, D, k, tol)
        atoms, coefs, count = _core.omp_encode(X, D, k, tol, output="lists")
    used = atoms >= 0  # each row's atoms come first, ascending, then -1
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    return sp.csr_matrix((coefs[used], atoms[used], indptr), shape=(X.shape[0], D.shape[0]))


def _normalise_rows(A, rng):
    """Rows scaled to unit norm; rows that are (numerically) zero are replaced
    by random unit vectors."""
    A = np.asarray(A, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1)
    scale = norms.max() if norms.size else 0.0
    dead = norms <= 1e-10 * max(scale, 1e-30)
    out = np.empty_like(A)
    out[~dead] = A[~dead] / norms[~dead, None]
    if dead.any():
        R = rng.standard_normal((int(dead.sum()), A.shape[1]))
        out[dead] = R / np.linalg.norm(R, axis=1, keepdims=True)
    return out


class OMPFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Features from a learned dictionary and OMP-k encoding (Coates & Ng, 2011).

    ``fit`` learns ``n_atoms`` unit-norm atoms by alternating OMP-k encoding
    of X with a dictionary update, ``n_iter`` times:

    - k = 1: gain-shape vector quantisation (spherical k-means) as in Coates &
      Ng: D <- H^T X + D, rows renormalised.
    - k > 1: the least-squares dictionary D = argmin ||X - H D||^2 for the
      current codes H, rows renormalised.

    In both, an atom no sample uses is re-seeded with the (normalised)
    residual of the worst-coded sample not already used for re-seeding.
    ``transform`` returns the OMP-k codes of X over ``components_``; with
    ``split_sign`` each code h becomes [max(0, h), max(0, -h)], so a linear
    model or an MLP can weigh both signs of an atom differently.

    Parameters
    ----------
    n_atoms : int, default=256
        Dictionary size.
    k : int, default=1
        Non-zeros per code, in fitting and in transform (1 <= k <= n_atoms).
    split_sign : bool, default=True
        Output (n_samples, 2 * n_atoms) [max(0, h), max(0, -h)] instead of h.
    n_iter : int, default=10
        Dictionary-update iterations; 0 keeps the initial atoms (randomly
        chosen samples, normalised), which Coates & Ng found to be a fair
        baseline.
    whiten : bool, default=False
        ZCA-whiten the data before learning and encoding (mean removed, then
        multiplied by V diag(1 / sqrt(e + eps)) V^T from the covariance's
        eigendecomposition). Without it X is encoded as given, so scale or
        centre it first if its features differ in scale.
    whiten_eps : float, default=0.1
        The whitening regulariser eps as a fraction of the mean eigenvalue
        (0.1 as in Coates & Ng, whose normalised patches have mean variance 1).
    random_state : int, RandomState or None
        Seeds the initial atoms and any random re-seeding.
    n_threads : int or None
        Threads for the encoder (default: dropkit's setting).

    Attributes
    ----------
    components_ : ndarray of shape (n_atoms, n_features_in_), float32
        The dictionary, one unit-norm atom per row.
    mean_, whitening_ : ndarray or None
        The whitening transform (None when ``whiten=False``).
    error_ : ndarray of shape (n_iter_,)
        Mean squared residual ||x - h D||^2 of the (whitened) training data
        under the dictionary before each update.
    n_iter_ : int
        Updates done.
    n_features_in_, feature_names_in_ : as in scikit-learn.

    Notes
    -----
    Computation is float32; ``transform`` returns float32 whatever the input
    dtype.
    """

    def __init__(self, n_atoms=256, k=1, *, split_sign=True, n_iter=10, whiten=False, whiten_eps=0.1,
                 random_state=None, n_threads=None):
        self.n_atoms = n_atoms
        self.k = k
        self.split_sign = split_sign
        self.n_iter = n_iter
        self.whiten = whiten
        self.whiten_eps = whiten_eps
        self.random_state = random_state
        self.n_threads = n_threads

    # ---------------------------------------------------------------- fitting

    def _validate_params(self):
        n_atoms = check_int(self.n_atoms, "n_atoms")
        k = _check_k(self.k, n_atoms)
        n_iter = check_int(self.n_iter, "n_iter", minimum=0)
        for name in ("split_sign", "whiten"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        check_nonneg(self.whiten_eps, "whiten_eps", strict=True)
        if self.n_threads is not None:
            check_int(self.n_threads, "n_threads")
        return n_atoms, k, n_iter

    def fit(self, X, y=None):
        """Learn the dictionary (and the whitening) from X. Returns self."""
        n_atoms, k, n_iter = self._validate_params()
        X = validate_data(self, X, dtype=(np.float64, np.float32))
        X = to_float32(X, "X")
        rng = check_random_state(self.random_state)
        if self.whiten:
            self.mean_, self.whitening_ = self._zca(X)
            X = self._apply_whitening(X)
        else:
            self.mean_ = self.whitening_ = None

        D = self._initial_atoms(X, n_atoms, rng)
        errors = []
        with thread_count(self.n_threads):
            for _ in range(n_iter):
                H = omp_encode(X, D, k, output="csr")
                residual = X - (H @ D)
                errors.append(float(np.einsum("ij,ij->", residual, residual, dtype=np.float64)) / X.shape[0])
                D = self._update(X, H, D, residual, k, rng)
        self.components_ = D
        self.error_ = np.asarray(errors)
        self.n_iter_ = n_iter
        return self

    def _zca(self, X):
        mean = X.mean(axis=0, dtype=np.float64)
        Xc = X - mean
        cov = (Xc.T @ Xc) / X.shape[0]
        eigval, eigvec = np.linalg.eigh(cov)
        eigval = np.maximum(eigval, 0.0)
        level = eigval.mean()
        eps = self.whiten_eps * (level if level > 0 else 1.0)
        W = (eigvec / np.sqrt(eigval + eps)) @ eigvec.T
        return mean.astype(np.float32), W.astype(np.float32)

    def _apply_whitening(self, X):
        return np.ascontiguousarray((X - self.mean_) @ self.whitening_, dtype=np.float32)

    @staticmethod
    def _initial_atoms(X, n_atoms, rng):
        """Randomly chosen samples, normalised (random directions past the
        number of samples or for zero samples)."""
        n = X.shape[0]
        rows = rng.choice(n, size=min(n, n_atoms), replace=False)
        A = np.zeros((n_atoms, X.shape[1]))
        A[:rows.size] = X[rows]
        return _normalise_rows(A, rng).astype(np.float32)

    @staticmethod
    def _update(X, H, D, residual, k, rng):
        Ht = H.T.tocsr().astype(np.float64)
        HtX = Ht @ X.astype(np.float64)
        if k == 1:
            # Coates & Ng's gain-shape VQ step: D <- S^T X + D
            new = HtX + D
        else:
            # (H^T H + ridge I) D = H^T X; the ridge keeps unused atoms solvable
            HtH = (Ht @ H.astype(np.float64)).toarray()
            HtH[np.diag_indices_from(HtH)] += 1e-6 * max(np.trace(HtH) / HtH.shape[0], 1e-12)
            new = scipy.linalg.cho_solve(scipy.linalg.cho_factor(HtH), HtX)
        used = np.diff(Ht.indptr) > 0
        new = _normalise_rows(new, rng)
        dead = np.flatnonzero(~used)
        if dead.size:
            err = np.einsum("ij,ij->i", residual, residual, dtype=np.float64)
            worst = np.argsort(-err, kind="stable")[:dead.size]
            seeds = np.zeros((dead.size, X.shape[1]))
            seeds[:worst.size] = residual[worst]
            new[dead] = _normalise_rows(seeds, rng)
        return new.astype(np.float32)

    # ---------------------------------------------------------------- encoding

    def transform(self, X):
        """OMP-k codes of X: (n_samples, n_atoms), or (n_samples, 2 n_atoms)
        [max(0, h), max(0, -h)] with split_sign; float32."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        X = to_float32(X, "X")
        if self.whitening_ is not None:
            X = self._apply_whitening(X)
        k = _check_k(self.k, self.components_.shape[0])
        n_threads = None if self.n_threads is None else check_int(self.n_threads, "n_threads")
        H = omp_encode(X, self.components_, k, n_threads=n_threads)
        if not self.split_sign:
            return H
        out = np.empty((H.shape[0], 2 * H.shape[1]), dtype=np.float32)
        np.maximum(H, 0.0, out=out[:, :H.shape[1]])
        np.negative(H, out=H)
        np.maximum(H, 0.0, out=out[:, H.shape[1]:])
        return out

    @property
    def _n_features_out(self):
        return self.components_.shape[0] * (2 if self.split_sign else 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
