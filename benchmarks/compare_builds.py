"""Two builds of dropkit in one process, timed epoch by epoch in turn.

A change's effect on training is often a few percent, and a shared
machine's speed drifts by more from one second to the next: two processes,
or two runs of the suite, can disagree by 5 to 30%. Here both builds train
the same network on the same data in one process, alternating epochs, and
the figure is the median of the per-round time ratios (with its quartiles).

Build the two into separate directories; the second with another pybind11
internals version, so that both can register their types in one process:

    pip install --no-build-isolation --no-deps --target ../build-a .
    # ...change the code...
    pip install --no-build-isolation --no-deps --target ../build-b \\
        -C cmake.define.CMAKE_CXX_FLAGS=-DPYBIND11_INTERNALS_VERSION=13 .
    python benchmarks/compare_builds.py ../build-a ../build-b large --threads 2

Workloads: "large" (784-1024-1024-10, dropout 0.2/0.5, 12000 synthetic
samples; --hidden sets the hidden width), "digits" (64-256-256-10 on scikit-learn's digits, 10 epochs a
round) and "gemm" (the large net's products at batch 128, 20 ms or more of
calls a round, the median ratio and each build's best GFLOP/s per shape).
With --regularizer, the epoch workloads' hidden layers also carry one of
the regularization suite's options (an activity penalty, max-norm,
DropConnect, or ELU units). Compare a build with itself first to see the
noise (A/A).
"""
import argparse
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def load(build_dir, name, root):
    shutil.copytree(os.path.join(build_dir, "dropkit"), os.path.join(root, name))
    return importlib.import_module(name)


@contextlib.contextmanager
def two_builds(build_a, build_b):
    """Both builds imported, under names of their own, for the with block."""
    root = tempfile.mkdtemp()
    sys.path.insert(0, root)
    try:
        yield [load(build_a, "dropkit_build_a", root), load(build_b, "dropkit_build_b", root)]
    finally:
        sys.path.remove(root)
        shutil.rmtree(root, ignore_errors=True)


def workload(kind, hidden=None):
    if kind == "large":
        rng = np.random.default_rng(0)
        n = 12000
        X = rng.random((n, 784), dtype=np.float32)
        y = rng.integers(0, 10, n)
        width = hidden or 1024
        return X, y, [(width, 0.2), (width, 0.5)], 0.5, 1
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y, [(256, 0.0), (256, 0.0)], 0.0, 10


# --regularizer: (activation, extra Dense arguments for the hidden layers, extra Network arguments);
# the builds' own penalty classes are looked up by name
REGULARIZERS = {
    "none": ("relu", {}, {}),
    "student_t": ("relu", {"activity_penalty": ("StudentT", 1e-4)}, {}),
    "activity_l1": ("relu", {"activity_penalty": ("ActivityL1", 1e-4)}, {}),
    "kl": ("logistic", {"activity_penalty": ("KLSparsity", 0.05, 1e-3)}, {}),
    "max_norm": ("relu", {}, {"max_norm": 3.0}),
    "dropconnect": ("relu", {"dropconnect": 0.5}, {}),
    "elu": (("elu", 1.0), {}, {}),
}


def hidden_args(module, extra):
    out = dict(extra)
    if "activity_penalty" in out:
        name, *params = out["activity_penalty"]
        out["activity_penalty"] = getattr(module, name)(*params)
    return out


# (M, N, K, trans_a, trans_b) of the large net's products at batch 128
GEMM_SHAPES = {"X W 784": (128, 1024, 784, False, False), "X W 1024": (128, 1024, 1024, False, False),
               "dZ W^T 1024": (128, 1024, 1024, False, True), "X^T dZ 784": (784, 1024, 128, True, False),
               "X^T dZ 1024": (1024, 1024, 128, True, False)}


def compare_gemm(mods, rounds):
    cores = [importlib.import_module(m.__name__ + "._core") for m in mods]
    rng = np.random.default_rng(0)
    for what, (m, n, k, ta, tb) in GEMM_SHAPES.items():
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        inner = max(2, int(2e9 / (m * n * k)))
        times = [[], []]
        for r in range(rounds):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                t = time.perf_counter()
                for _ in range(inner):
                    cores[i].gemm(a, b, trans_a=ta, trans_b=tb, out=c)
                times[i].append((time.perf_counter() - t) / inner)
        a_t, b_t = np.array(times[0]), np.array(times[1])
        ratio = b_t / a_t
        print(f"{what:12s} {m}x{n}x{k}: A {2 * m * n * k / a_t.min() / 1e9:6.1f}, "
              f"B {2 * m * n * k / b_t.min() / 1e9:6.1f} GFLOP/s at best; B/A time median of rounds "
              f"{np.median(ratio):.3f} (quartiles {np.quantile(ratio, 0.25):.3f}-{np.quantile(ratio, 0.75):.3f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_a")
    ap.add_argument("build_b")
    ap.add_argument("workload", choices=["large", "digits", "gemm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="default: 128 (large), 32 (digits)")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--regularizer", choices=sorted(REGULARIZERS), default="none")
    ap.add_argument("--hidden", type=int, default=None, help="large: the hidden layers' width (default 1024)")
    ap.add_argument("--activation", default=None, help="the hidden layers' activation, as tanh or maxout:2 (default relu, or the regularizer's)")
    args = ap.parse_args()
    if args.workload == "gemm":
        with two_builds(args.build_a, args.build_b) as mods:
            for m in mods:
                m.set_num_threads(args.threads)
            print(f"gemm, {args.threads} thr, {args.rounds} rounds:")
            compare_gemm(mods, args.rounds)
        return
    batch = args.batch or (128 if args.workload == "large" else 32)
    X, y, hidden, out_dropout, epochs_per_round = workload(args.workload, args.hidden)
    Y = np.eye(10, dtype=np.float32)[y]
    with two_builds(args.build_a, args.build_b) as mods:
        nets = []
        act, dense_extra, net_extra = REGULARIZERS[args.regularizer]
        if args.activation:  # "tanh", or with its parameter: "maxout:2", "elu:0.5"
            name, _, param = args.activation.partition(":")
            act = (name, int(param) if name == "maxout" else float(param)) if param else name
        for m in mods:
            m.set_num_threads(args.threads)
            layers = [m.Dense(u, act, dropout=p, **hidden_args(m, dense_extra)) for u, p in hidden]
            layers.append(m.Dense(10, "identity", dropout=out_dropout))
            nets.append(m.Network(X.shape[1], layers, l2=1e-4, l1=1e-5, random_state=0, **net_extra))
        times = [[], []]
        for r in range(args.rounds):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):  # who goes first alternates
                t = time.perf_counter()
                for e in range(epochs_per_round):
                    nets[i].train_epoch(X, Y, loss="softmax_ce", batch_size=batch, epoch=r * epochs_per_round + e)
                times[i].append((time.perf_counter() - t) / epochs_per_round)
    a, b = np.array(times[0]), np.array(times[1])
    ratio = b / a
    widths = "-".join(str(u) for u, _ in hidden)
    print(f"{args.workload} {widths} {act} ({args.regularizer}), batch {batch}, {args.threads} thr, {args.rounds} rounds: "
          f"A median {np.median(a) * 1e3:.2f} ms, B median {np.median(b) * 1e3:.2f} ms an epoch; "
          f"B/A median of rounds {np.median(ratio):.3f} (quartiles {np.quantile(ratio, 0.25):.3f}-"
          f"{np.quantile(ratio, 0.75):.3f})")
    same = np.array_equal(nets[0].params, nets[1].params)
    print("models: bit for bit the same" if same else "models: differ (expected if the change alters arithmetic)")


if __name__ == "__main__":
    main()
