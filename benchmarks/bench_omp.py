"""Batch OMP-k: dropkit.omp_encode against scikit-learn, side by side in one run.

    python benchmarks/bench_omp.py                      # 20000 signals, dim 256, 1024 atoms, k = 8 and 1, 2 threads
    python benchmarks/bench_omp.py --signals 2000       # a quick look

Signals are Gaussian, atoms Gaussian normalised to unit length (the cost of
OMP does not depend on the data beyond k). Both libraries start from X and
D and return the codes:

- dropkit: ``omp_encode(X, D, k)`` in float32: Gram matrix and correlations
  by dropkit's GEMM, then the per-signal pursuit, on ``--threads`` threads.
  Best of ``--repeat`` runs.
- scikit-learn ``orthogonal_mp_gram``: Gram = D D^T and Xy = D X^T by
  numpy (float64, BLAS limited to ``--threads`` threads), then
  ``orthogonal_mp_gram(Gram, Xy, n_nonzero_coefs=k)``, once (it is slow).
  Its pursuit runs in Python one signal at a time; "solver" is that part alone.
- scikit-learn ``sparse_encode(algorithm="omp", n_jobs=threads)``: the same
  solver split over ``--threads`` worker processes by joblib, the parallel
  way to run it (skip with ``--no-sparse-encode``).

Agreement: per signal, whether the same atoms were chosen, and the largest
coefficient difference over the code's largest coefficient.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import sklearn
from sklearn.decomposition import sparse_encode
from sklearn.linear_model import orthogonal_mp_gram
from threadpoolctl import threadpool_limits

import dropkit
from _machine import cpu_model




def timed(fn, repeat=1):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def agreement(H, ref):
    same = ((H != 0) == (ref != 0)).all(axis=1)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    err = (np.abs(H - ref) / scale)[same].max() if same.any() else np.nan
    return same.mean(), err


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--signals", type=int, default=20000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--atoms", type=int, default=1024)
    p.add_argument("--k", type=int, nargs="+", default=[8, 1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5, help="dropkit runs per setting (best is kept)")
    p.add_argument("--no-sparse-encode", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.signals, args.dim)).astype(np.float32)
    D = rng.standard_normal((args.atoms, args.dim))
    D = (D / np.linalg.norm(D, axis=1, keepdims=True)).astype(np.float32)
    X64, D64 = X.astype(np.float64), D.astype(np.float64)
    dropkit.set_num_threads(args.threads)

    print(f"CPU: {cpu_model()}; threads: {args.threads}; dropkit {dropkit.__version__} "
          f"({dropkit.simd_backend()}), scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
          f"Python {platform.python_version()}")
    print(f"{args.signals} signals of dim {args.dim}, {args.atoms} atoms\n")

    rows = []
    for k in args.k:
        omp_encode = lambda: dropkit.omp_encode(X, D, k)  # noqa: E731
        omp_encode()  # warm the thread pool and the allocator
        t_dk, H = timed(omp_encode, args.repeat)

        with threadpool_limits(args.threads):
            t_pre, (G, Xy) = timed(lambda: (D64 @ D64.T, D64 @ X64.T))
            t_solve, ref = timed(lambda: orthogonal_mp_gram(G, Xy, n_nonzero_coefs=k, copy_Xy=False))
        ref = ref.T.reshape(args.signals, args.atoms)
        same, err = agreement(H, ref)
        t_sk = t_pre + t_solve
        row = dict(k=k, dropkit=t_dk, sk=t_sk, sk_solve=t_solve, same=same, err=err, se=None)
        if not args.no_sparse_encode:
            with threadpool_limits(args.threads):
                row["se"], _ = timed(lambda: sparse_encode(X64, D64, algorithm="omp", n_nonzero_coefs=k,
                                                           n_jobs=args.threads))
        rows.append(row)
        print(f"k={k}: dropkit {t_dk:.3f} s, orthogonal_mp_gram {t_sk:.2f} s"
              + (f", sparse_encode {row['se']:.2f} s" if row["se"] is not None else ""), flush=True)

    print()
    print("| k | dropkit omp_encode | sklearn orthogonal_mp_gram (Gram + Xy + solver) | ratio | solver alone | ratio "
          "| sklearn sparse_encode n_jobs=%d | ratio | same atoms | max coef diff / code max |" % args.threads)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        se = (f"{r['se']:.2f} s | {r['se'] / r['dropkit']:.0f}x" if r["se"] is not None else "- | -")
        print(f"| {r['k']} | {r['dropkit']:.3f} s | {r['sk']:.2f} s | {r['sk'] / r['dropkit']:.0f}x "
              f"| {r['sk_solve']:.2f} s | {r['sk_solve'] / r['dropkit']:.0f}x | {se} "
              f"| {100 * r['same']:.2f}% | {r['err']:.1e} |")


if __name__ == "__main__":
    main()
