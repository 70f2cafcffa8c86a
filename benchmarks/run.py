"""Side-by-side speed of dropkit, PyTorch (CPU) and scikit-learn on the same work.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # about a minute: smaller samples, fewer repeats

Every workload is built in each library with the same shapes, data, batch size,
optimizer and thread count, and timed in this one process, runs of the
libraries interleaved so that load from other processes hits them alike. Each
figure is the minimum (for kernels) or median (for epochs) of repeated runs.
The table prints absolute times and dropkit's speed ratio to each peer
(peer time / dropkit time: above 1 means dropkit is faster).

PyTorch is optional (pip install torch); dropkit never imports it. A C
compiler (cc) is needed for the FMA peak probe (fma_peak.c).
"""
import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

import dropkit  # noqa: E402
from dropkit import _core  # noqa: E402
from _machine import cpu_model  # noqa: E402

try:
    import torch
    import torch.nn as tnn
except ImportError:  # the table then has no PyTorch column
    torch = None

import sklearn  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

warnings.filterwarnings("ignore")

ROWS = []  # (section, workload, dropkit, torch, torch_best, sklearn, unit, note)


def row(section, workload, dk, th=None, tb=None, sk=None, unit="ms", note=""):
    ROWS.append((section, workload, dk, th, tb, sk, unit, note))


def set_threads(n):
    _core.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


# PyTorch's OpenMP workers spin for milliseconds after each parallel call
# before they sleep; timed right after one, dropkit's threads shared the cores
# with them (a 1024-wide product ran a quarter slower at 2 threads). Each
# timing therefore starts after a pause, on a machine as idle as when that
# library runs alone.
SETTLE_S = 0.03
# numpy's OpenBLAS workers spin for about 0.1 s after each call (seen here:
# a core's worth of CPU for 0.08 s, 30 ms after a product); scikit-learn's
# fits at 2 threads are therefore timed last in their round, and followed by
# this longer pause.
BLAS_SETTLE_S = 0.2


def settle():
    time.sleep(SETTLE_S)


def timeit_min(fn, reps, inner=1):
    settle()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


# ----------------------------------------------------------------------------
# the machine


class FmaPeak:
    """The single-core FMA peak (GFLOP/s) of the ISA dropkit runs, from
    fma_peak.c. This machine's speed drifts from second to second, so the
    probe runs again beside each GEMM shape, and every percentage of peak
    uses the highest reading of the whole run: the percentages err low, not
    high (a single probe that fell in a slow second had inflated them)."""

    def __init__(self):
        self.readings = []
        self._tmp = tempfile.TemporaryDirectory()
        self._exe = None
        width = {"avx512": 16, "avx2": 8}.get(dropkit.simd_backend())
        if width is None:
            return
        flags = ["-mavx512f", "-DDK_WIDTH=16"] if width == 16 else ["-mavx2", "-mfma", "-DDK_WIDTH=8"]
        exe = os.path.join(self._tmp.name, "fma_peak")
        try:
            subprocess.run(["cc", "-O2", *flags, os.path.join(HERE, "fma_peak.c"), "-o", exe],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return
        self._exe = exe

    def measure(self):
        if self._exe is not None:
            out = subprocess.run([self._exe], check=True, capture_output=True, text=True).stdout.split()
            self.readings.append(float(out[1]))

    @property
    def best(self):
        return max(self.readings) if self.readings else None

    def describe(self):
        if not self.readings:
            return "not measured (no cc or no vector ISA)"
        return (f"{self.best:.1f} GFLOP/s, the highest of {len(self.readings)} probes spread over the GEMM "
                f"rows (lowest {min(self.readings):.1f})")


# ----------------------------------------------------------------------------
# kernels: GEMM at the layer shapes, dropout masks


def bench_gemm(quick, peak, threads_list):
    # (M, N, K, trans_a, trans_b, what) for 784-1024-1024-10 at batch 128
    shapes = [
        (1024, 1024, 1024, False, False, "square 1024"),
        (128, 1024, 784, False, False, "fwd  X W      layer 1"),
        (128, 1024, 1024, False, False, "fwd  X W      layer 2"),
        (128, 10, 1024, False, False, "fwd  X W      layer 3"),
        (128, 1024, 1024, False, True, "bwd  dZ W^T   layer 2"),
        (784, 1024, 128, True, False, "bwd  X^T dZ   layer 1"),
        (1024, 1024, 128, True, False, "bwd  X^T dZ   layer 2"),
    ]
    if quick:
        shapes = [s for s in shapes if s[5].startswith(("square", "fwd  X W      layer 2", "bwd  dZ", "bwd  X^T dZ   layer 2"))]
    rng = np.random.default_rng(0)
    reps = 5 if quick else 11
    measured = []  # rows wait for the last probe
    for threads in threads_list:
        set_threads(threads)
        for m, n, k, ta, tb, what in shapes:
            peak.measure()
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            inner = max(2, int(2e9 / (m * n * k)))  # back to back, 20 ms or more: steady state, as in training
            c = np.empty((m, n), np.float32)  # both libraries write into a preallocated output

            def dk_gemm():
                return _core.gemm(a, b, trans_a=ta, trans_b=tb, out=c)
            d = timeit_min(dk_gemm, 2, inner)
            t = None
            if torch is not None:
                A = torch.from_numpy(a).T if ta else torch.from_numpy(a)
                B = torch.from_numpy(b).T if tb else torch.from_numpy(b)
                out = torch.empty(m, n)
                t = timeit_min(lambda: torch.matmul(A, B, out=out), 2, inner)
            for _ in range(reps):  # interleaved repeats
                d = min(d, timeit_min(dk_gemm, 1, inner))
                if torch is not None:
                    t = min(t, timeit_min(lambda: torch.matmul(A, B, out=out), 1, inner))
            peak.measure()
            measured.append((f"{m}x{n}x{k} {what.split()[0]} {'T' if ta else ''}{'T' if tb else ''}"
                             f" ({what}), {threads} thr", d, t, 2.0 * m * n * k / d / 1e9, threads))
    for workload, d, t, gf, threads in measured:
        note = f"{gf:.0f} GFLOP/s"
        if peak.best:
            note += f" = {100 * gf / (peak.best * threads):.0f}% of {threads}x peak"
        row("GEMM", workload, d * 1e3, t * 1e3 if t else None, unit="ms", note=note)


def bench_masks(quick, threads_list):
    n = 128 * 1024  # one hidden layer's activations at batch 128
    x = np.ones(n, np.float32)
    reps = 30 if quick else 100
    for threads in threads_list:
        set_threads(threads)
        d = t = float("inf")
        drop = None
        if torch is not None:
            tx = torch.ones(n)
            drop = tnn.Dropout(0.5).train()
        for _ in range(5):
            d = min(d, timeit_min(lambda: _core.dropout_apply(x, 0.5, 2.0, 1, 0, 0), reps // 5))
            if drop is not None:
                t = min(t, timeit_min(lambda: drop(tx), reps // 5))
        row("Dropout", f"mask + apply, {n} elements, {threads} thr", d / n * 1e9,
            t / n * 1e9 if drop is not None else None, unit="ns/elem")


# ----------------------------------------------------------------------------
# training: the MNIST-shaped net and the small digits net


def mnist_like(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return X, y


def dropkit_large(batch, threads, max_iter=1, width=1024):
    return dropkit.MLPClassifier(hidden_layer_sizes=(width, width), activation="relu", solver="adam",
                                 learning_rate_init=1e-3, batch_size=batch, max_iter=max_iter, shuffle=True,
                                 random_state=0, tol=0.0, n_iter_no_change=10**6, dropout=0.5,
                                 input_dropout=0.2, l2=1e-4, l1=1e-5, l1_mode="subgradient", n_threads=threads)


class TorchTrainer:
    """The same net, loss, penalties and optimizer in PyTorch: nn.Dropout,
    Adam with weight_decay (L2 in the gradient, weights only, as dropkit's l2),
    and an explicit L1 term on the weights in the loss."""

    def __init__(self, sizes, dropout, input_dropout, l1, l2, fused=False, compiled=False):
        torch.manual_seed(0)
        layers = []
        for i in range(len(sizes) - 1):
            p = input_dropout if i == 0 else dropout
            if p > 0:
                layers.append(tnn.Dropout(p))
            layers.append(tnn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(tnn.ReLU())
        self.model = tnn.Sequential(*layers)
        weights = [m.weight for m in self.model if isinstance(m, tnn.Linear)]
        biases = [m.bias for m in self.model if isinstance(m, tnn.Linear)]
        self.weights = weights
        self.l1 = l1
        kw = {"fused": True} if fused else {}
        self.opt = torch.optim.Adam([{"params": weights, "weight_decay": l2},
                                     {"params": biases, "weight_decay": 0.0}], lr=1e-3, **kw)
        self.loss_fn = tnn.CrossEntropyLoss()
        self.step_fn = torch.compile(self._step) if compiled else self._step

    def _step(self, xb, yb):
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        if self.l1:
            loss = loss + self.l1 * sum(w.abs().sum() for w in self.weights)
        return loss

    def epoch(self, X, y, batch, limit=None):
        self.model.train()
        n = X.shape[0] if limit is None else limit
        perm = torch.randperm(X.shape[0])[:n]
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.step_fn(X[idx], y[idx])
            loss.backward()
            self.opt.step()


PIECE = 5120  # samples per timed piece of the large-net workloads


def epoch_time(piece, fn, *args):
    """fn(*args) trains on a piece of `piece` samples: its time scaled to an
    epoch of 60000."""
    settle()
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 60000 / piece


def bench_large(quick, peak):
    """Steady-state epoch time, from pieces of 5120 samples: each library in
    turn trains on the same piece (dropkit by partial_fit, PyTorch by an epoch
    over it), over and over, and each figure is the median per-sample time
    times 60000. Adjacent pieces see the same load from other processes, so
    the ratios hold even when the machine's speed drifts from second to
    second; one-time costs (first fit, torch.compile) are left out."""
    piece = PIECE
    reps = 4 if quick else 12
    X, y = mnist_like(piece * 2)
    pieces = [(X[:piece], y[:piece]), (X[piece:], y[piece:])]
    classes = np.arange(10)
    flops_epoch = 60000 * 2 * 3 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    note_floor = ""
    if peak.best:
        floor = flops_epoch / (2 * peak.best * 1e9)
        note_floor = f"floor at 2x peak {floor:.2f} s"
    tpieces = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in pieces] if torch is not None else []
    results = {}

    # the net at two batch sizes, and a narrower one: its layers
    # split over the threads in narrower groups of columns
    for width, batch in ((1024, 128), (1024, 512), (512, 128)):
        sizes = [784, width, width, 10]
        trainers = {}
        if torch is not None:
            trainers["eager"] = TorchTrainer(sizes, 0.5, 0.2, 1e-5, 1e-4)
            trainers["fused"] = TorchTrainer(sizes, 0.5, 0.2, 1e-5, 1e-4, fused=True)
            if not quick and (width, batch) == (1024, 128):
                try:
                    trainers["compiled"] = TorchTrainer(sizes, 0.5, 0.2, 1e-5, 1e-4, fused=True, compiled=True)
                    set_threads(2)
                    trainers["compiled"].epoch(*tpieces[0], batch, limit=batch * 4)  # compile outside the timing
                except Exception as e:  # no compiler, no triton: leave it out
                    print(f"torch.compile unavailable: {type(e).__name__}: {e}"[:200], file=sys.stderr)
                    trainers.pop("compiled", None)
        set_threads(2)
        clf = dropkit_large(batch, 2, width=width)
        clf.partial_fit(*pieces[0], classes=classes)  # the first fit's setup, outside the timing
        for tr in trainers.values():
            tr.epoch(*tpieces[0], batch)
        runs = {k: [] for k in ["dk", *trainers]}
        for r in range(reps):
            runs["dk"].append(epoch_time(piece, clf.partial_fit, *pieces[r % 2]))
            for name, tr in trainers.items():
                runs[name].append(epoch_time(piece, tr.epoch, *tpieces[r % 2], batch))
        med = {k: float(np.median(v)) for k, v in runs.items() if v}
        if width == 1024:
            results[batch] = med
        best_name = min((k for k in ("fused", "compiled") if k in med), key=lambda k: med[k], default=None)
        torch_best = med.get(best_name) if best_name else None
        note = f"torch best = {'fused Adam' if best_name == 'fused' else 'compile + fused Adam'}" if best_name else ""
        if (width, batch) == (1024, 128) and note_floor:
            note = (note + "; " if note else "") + note_floor
        row(f"Train 784-{width}-{width}-10", f"epoch, batch {batch}, 2 thr (median of {reps} pieces of {piece})",
            med["dk"], med.get("eager"), torch_best, None, unit="s", note=note)
    # threads: 1 vs 2 on the same pieces, alternately
    one, two = dropkit_large(128, 1), dropkit_large(128, 2)
    one.partial_fit(*pieces[0], classes=classes)
    two.partial_fit(*pieces[0], classes=classes)
    t1, t2 = [], []
    for r in range(reps):
        set_threads(1)
        t1.append(epoch_time(piece, one.partial_fit, *pieces[r % 2]))
        set_threads(2)
        t2.append(epoch_time(piece, two.partial_fit, *pieces[r % 2]))
    t1, t2 = float(np.median(t1)), float(np.median(t2))
    row("Threads", f"dropkit epoch, batch 128: 1 thr (median of {reps} pieces of {piece})", t1, unit="s",
        note=f"2 thr {t2:.2f} s, speed-up {t1 / t2:.2f}x")
    return results


def digits_models(max_iter, threads=1):
    """The digits net, 64-256-256-10, Adam with L2 1e-4, batch 32, on `threads`
    threads, in dropkit and scikit-learn (max_iter epochs per fit) and PyTorch."""
    dk = dropkit.MLPClassifier(hidden_layer_sizes=(256, 256), batch_size=32, max_iter=max_iter, l2=1e-4,
                               random_state=0, tol=0.0, n_iter_no_change=10**6, n_threads=threads)
    sk = SkMLP(hidden_layer_sizes=(256, 256), batch_size=32, max_iter=max_iter, alpha=1e-4, random_state=0,
               tol=0.0, n_iter_no_change=10**6)
    th = TorchTrainer([64, 256, 256, 10], 0.0, 0.0, 0.0, 1e-4) if torch is not None else None
    return dk, sk, th


def bench_small(quick, threads=1):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    # many short fits, the three libraries in turn: the machine's speed drifts
    # over seconds, and a median over many rounds sees all three alike
    epochs = 3 if quick else 5
    reps = 5 if quick else 15
    set_threads(threads)
    dk_t, sk_t, th_t = [], [], []
    trainer = None
    Xt = torch.from_numpy(X) if torch is not None else None
    yt = torch.from_numpy(y) if torch is not None else None
    # scikit-learn's MLP runs on numpy's BLAS: held to the same thread count
    with (threadpool_limits(limits=threads) if threadpool_limits else contextlib.nullcontext()):
        for _ in range(reps):
            # a fresh model of each library each round (for PyTorch too: a model
            # trained on for many rounds drifts into subnormal floats, which
            # PyTorch, without flush-to-zero, computes several times slower)
            clf, sk, trainer = digits_models(epochs, threads)
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            clf.fit(X, y)
            dk_t.append((time.perf_counter() - t) / epochs)
            if trainer is not None:
                time.sleep(SETTLE_S)
                t = time.perf_counter()
                for _ in range(epochs):
                    trainer.epoch(Xt, yt, 32)
                th_t.append((time.perf_counter() - t) / epochs)
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            sk.fit(X, y)
            sk_t.append((time.perf_counter() - t) / epochs)
            time.sleep(BLAS_SETTLE_S if threads > 1 else 0.0)
    med = lambda v: float(np.median(v)) * 1e3 if v else None  # noqa: E731
    row("Train digits 64-256-256-10",
        f"epoch (1797 samples), batch 32, {threads} thr, fresh fits of {epochs} epochs",
        med(dk_t), med(th_t), None, med(sk_t), unit="ms", note="Adam, L2 1e-4, no dropout")
    if not quick and threads == 1:
        bench_small_trained(X, y, Xt, yt)
    set_threads(1)
    return clf, sk, trainer, X


def bench_small_trained(X, y, Xt, yt, before=30, timed=5):
    """Epochs of a model already trained for a while: with L2 decay some
    weights become subnormal floats after about 25 epochs here, which the
    CPU computes several times slower unless flush-to-zero is on. dropkit's
    kernels set it; PyTorch does not, and scikit-learn keeps float32 data in
    float32 and runs numpy's BLAS without it."""
    clf, sk, trainer = digits_models(before)
    clf.fit(X, y)
    sk.fit(X, y)
    if trainer is not None:
        for _ in range(before):
            trainer.epoch(Xt, yt, 32)
    dk_t, sk_t, th_t = [], [], []
    clf.set_params(max_iter=1, warm_start=True)  # each fit: one more epoch from where it was
    sk.set_params(max_iter=1, warm_start=True)
    with (threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext()):
        for _ in range(timed):  # one more epoch of each, in turn
            t = time.perf_counter()
            clf.fit(X, y)
            dk_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            sk.fit(X, y)
            sk_t.append(time.perf_counter() - t)
            if trainer is not None:
                t = time.perf_counter()
                trainer.epoch(Xt, yt, 32)
                th_t.append(time.perf_counter() - t)
    med = lambda v: float(np.median(v)) * 1e3 if v else None  # noqa: E731
    row("Train digits 64-256-256-10", f"epoch after {before} epochs of training, batch 32, 1 thr", med(dk_t), med(th_t),
        None, med(sk_t), unit="ms", note="Adam, L2 1e-4: some weights subnormal by then; only dropkit flushes them")


def bench_predict(quick, clf, sk, trainer, X):
    x1 = X[:1].copy()
    n = 2000 if quick else 10000
    d = timeit_min(lambda: clf.predict_proba(x1), 5, n // 5)
    s = timeit_min(lambda: sk.predict_proba(x1), 5, n // 5)
    t = None
    if trainer is not None:
        model = trainer.model.eval()
        xt = torch.from_numpy(x1)

        def torch_proba():
            with torch.no_grad():
                return torch.softmax(model(xt), 1).numpy()
        t = timeit_min(torch_proba, 5, n // 5)
    core = timeit_min(lambda: clf._network._core.predict(x1, "softmax_ce"), 5, n // 5)
    row("Predict", "predict_proba, 1 sample, digits net", d * 1e6, t * 1e6 if t else None, None, s * 1e6,
        unit="us", note=f"C++ forward alone {core * 1e6:.1f} us")
    # a large batch through the large net, at GEMM speed
    Xb, yb = mnist_like(10000, seed=1)
    big = dropkit_large(512, 2)
    big.fit(Xb[:1024], yb[:1024])
    set_threads(2)
    d = timeit_min(lambda: big.predict_proba(Xb), 3)
    t = None
    if torch is not None:
        tm = TorchTrainer([784, 1024, 1024, 10], 0.5, 0.2, 0.0, 0.0).model.eval()
        xt = torch.from_numpy(Xb)

        def torch_big():
            with torch.no_grad():
                return torch.softmax(tm(xt), 1).numpy()
        t = timeit_min(torch_big, 3)
    flops = 2.0 * 10000 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    row("Predict", "predict_proba, 10000 samples, large net, 2 thr", d * 1e3, t * 1e3 if t else None, unit="ms",
        note=f"{flops / d / 1e9:.0f} GFLOP/s")


# ----------------------------------------------------------------------------
# the regularization toolbox: the large net with one option at a time

# name: (dropkit's estimator arguments, what it is)
TOOLBOX = {
    "plain": ({}, "relu, no regularizer"),
    "activity_l1": ({"activity_penalty": dropkit.ActivityL1(1e-4)}, "activity L1 1e-4 on the hidden outputs"),
    "student_t": ({"activity_penalty": dropkit.StudentT(1e-4)}, "Student-t activity penalty 1e-4"),
    "kl": ({"activation": "logistic", "activity_penalty": dropkit.KLSparsity(0.05, 1e-3)},
           "logistic units, KL sparsity to 0.05, 1e-3"),
    "max_norm": ({"max_norm": 3.0}, "max-norm 3 on every layer"),
    "dropconnect": ({"dropconnect": 0.5}, "DropConnect 0.5 on every layer"),
    "elu": ({"activation": ("elu", 1.0)}, "ELU units"),
    "maxout": ({"activation": ("maxout", 2), "hidden_layer_sizes": (512, 512)}, "maxout, 512 units of 2 pieces"),
}


class TorchToolbox:
    """The same net and option in PyTorch as its users write it: the activity
    penalties as terms of the loss, max-norm by torch.renorm after each step,
    DropConnect by F.dropout on the weights, maxout by a max over a view."""

    def __init__(self, kind):
        torch.manual_seed(0)
        self.kind = kind
        units, pieces = (512, 2) if kind == "maxout" else (1024, 1)
        self.linears = tnn.ModuleList([tnn.Linear(784, units * pieces), tnn.Linear(units, units * pieces),
                                       tnn.Linear(units, 10)])
        self.opt = torch.optim.Adam(self.linears.parameters(), lr=1e-3)
        self.loss_fn = tnn.CrossEntropyLoss()

    def _linear(self, lin, x):
        if self.kind == "dropconnect":
            return tnn.functional.linear(x, tnn.functional.dropout(lin.weight, 0.5, True), lin.bias)
        return lin(x)

    def _activation(self, z):
        if self.kind == "maxout":
            return z.view(z.shape[0], -1, 2).amax(-1)
        if self.kind == "kl":
            return torch.sigmoid(z)
        if self.kind == "elu":
            return tnn.functional.elu(z)
        return torch.relu(z)

    def _penalty(self, h):
        if self.kind == "activity_l1":
            return 1e-4 * h.abs().sum(1).mean()
        if self.kind == "student_t":
            return 1e-4 * torch.log1p(h * h).sum(1).mean()
        if self.kind == "kl":
            rho, q = 0.05, h.mean(0).clamp(1e-6, 1 - 1e-6)
            return 1e-3 * (rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))).sum()
        return 0.0

    def epoch(self, X, y, batch):
        perm = torch.randperm(X.shape[0])
        for s in range(0, X.shape[0], batch):
            idx = perm[s:s + batch]
            h, penalty = X[idx], 0.0
            for lin in self.linears[:-1]:
                h = self._activation(self._linear(lin, h))
                penalty = penalty + self._penalty(h)
            loss = self.loss_fn(self._linear(self.linears[-1], h), y[idx]) + penalty
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.kind == "max_norm":  # each unit's incoming weights: a row of nn.Linear's weight
                with torch.no_grad():
                    for lin in self.linears:
                        lin.weight.copy_(torch.renorm(lin.weight, 2, 0, 3.0))


def bench_toolbox(quick):
    """Each option on the large net (784-1024-1024-10, Adam, batch 128, 2
    threads), dropkit and PyTorch eager in turn on pieces of 5120 samples as
    in bench_large, every option once a round, so that the machine's drift
    reaches all alike; each figure the median per-sample time times 60000."""
    piece = PIECE
    reps = 2 if quick else 6
    kinds = ["plain", "student_t", "max_norm", "dropconnect"] if quick else list(TOOLBOX)
    X, y = mnist_like(piece, seed=1)
    Xt, yt = (torch.from_numpy(X), torch.from_numpy(y)) if torch is not None else (None, None)
    set_threads(2)
    models = {}
    for kind in kinds:
        clf = dropkit.MLPClassifier(**{**dict(hidden_layer_sizes=(1024, 1024), batch_size=128, max_iter=1,
                                              random_state=0, tol=0.0, n_iter_no_change=10**6, n_threads=2),
                                       **TOOLBOX[kind][0]})
        clf.partial_fit(X, y, classes=np.arange(10))  # setup outside the timing
        trainer = TorchToolbox(kind) if torch is not None else None
        if trainer is not None:
            trainer.epoch(Xt[:1280], yt[:1280], 128)
        models[kind] = (clf, trainer)
    times = {kind: ([], []) for kind in kinds}

    for _ in range(reps):
        for kind, (clf, trainer) in models.items():
            times[kind][0].append(epoch_time(piece, clf.partial_fit, X, y))
            if trainer is not None:
                times[kind][1].append(epoch_time(piece, trainer.epoch, Xt, yt, 128))
    med = {kind: (float(np.median(d)), float(np.median(t)) if t else None) for kind, (d, t) in times.items()}
    dk0, th0 = med["plain"]
    for kind in kinds:
        dk, th = med[kind]
        note = TOOLBOX[kind][1]
        if kind != "plain":
            note += f"; epoch against the plain net's: dropkit {dk / dk0:.2f}x"
            if th is not None:
                note += f", PyTorch {th / th0:.2f}x"
        row("Toolbox 784-1024-1024-10", f"epoch, batch 128, 2 thr: {kind} (median of {reps} pieces of {piece})",
            dk, th, None, None, unit="s", note=note)


# ----------------------------------------------------------------------------
# memory: peak RSS of a fit, in a fresh process that loads only dropkit

# VmHWM, not ru_maxrss: the latter carries the parent's high-water mark across exec.
RSS_CHILD = r"""
import sys, numpy as np, dropkit, warnings
warnings.filterwarnings("ignore")
def hwm_kb():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmHWM")).split()[1])
n = int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.random((n, 784), dtype=np.float32); y = rng.integers(0, 10, n)
base = hwm_kb()
clf = dropkit.MLPClassifier(hidden_layer_sizes=(1024, 1024), batch_size=128, max_iter=1, dropout=0.5,
                            input_dropout=0.2, l2=1e-4, l1=1e-5, random_state=0, n_threads=2)
clf.fit(X, y)
print(hwm_kb(), base)
"""


def bench_memory(quick):
    n = 6000 if quick else 60000
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(n)], check=True, capture_output=True, text=True)
    peak_kb, base_kb = (int(v) for v in out.stdout.split())
    params = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    state = 4 * params * 4  # parameters, gradients, Adam's m and v
    acts = 4 * 128 * (784 + 3 * (1024 + 1024 + 10)) * 2  # inputs, z, a, dz, d_in per layer, generously
    data = n * 784 * 4
    bound = data + 1.5 * (state + acts) + 100 * 2**20
    row("Memory", f"peak RSS of fit ({n} x 784 float32 data)", peak_kb / 1024, unit="MB",
        note=f"target <= {bound / 2**20:.0f} MB (data {data / 2**20:.0f} MB + 1.5 x state and activations "
             f"{(state + acts) / 2**20:.0f} MB + 100 MB); before fit (interpreter, numpy, scikit-learn, "
             f"dropkit, data) {base_kb / 1024:.0f} MB")


# ----------------------------------------------------------------------------
# the table


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("s",):
        return f"{v:.2f} s"
    if unit == "ms":
        return f"{v:.3f} ms" if v < 1 else f"{v:.1f} ms"
    if unit == "us":
        return f"{v:.1f} us"
    if unit == "ns/elem":
        return f"{v:.2f} ns"
    return f"{v:.0f} {unit}"


def ratio(peer, dk):
    return f"{peer / dk:.2f}x" if peer is not None and dk else "-"


def print_table(header):
    print(header)
    print()
    print("| section | workload | dropkit | torch eager | vs eager | torch best | vs best | scikit-learn | vs sklearn | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for section, workload, dk, th, tb, sk, unit, note in ROWS:
        print(f"| {section} | {workload} | {fmt(dk, unit)} | {fmt(th, unit)} | {ratio(th, dk)} | {fmt(tb, unit)} | "
              f"{ratio(tb, dk)} | {fmt(sk, unit)} | {ratio(sk, dk)} | {note} |")
    print()
    print("Ratios are peer time / dropkit time (above 1: dropkit is faster). For GEMM, "
          "'torch eager' is torch.matmul; both libraries write into a preallocated output.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about a minute: subsets and fewer repeats")
    args = ap.parse_args()
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    peak = FmaPeak()
    peak.measure()
    threads_avail = _core.default_num_threads()
    threads_list = [1, 2] if threads_avail >= 2 else [1]
    lines = [
        f"command: python benchmarks/run.py{' --quick' if args.quick else ''}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical CPUs, {threads_avail} usable; dropkit ISA: "
        f"{dropkit.simd_backend()} (available: {', '.join(_core.available_isas())})",
    ]
    bench_gemm(args.quick, peak, threads_list)
    lines += [
        f"FMA peak per core ({dropkit.simd_backend()}, fma_peak.c): {peak.describe()}",
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"torch {torch.__version__ if torch is not None else 'not installed'}, dropkit {dropkit.__version__}",
    ]
    bench_masks(args.quick, threads_list)
    clf, sk, trainer, X = bench_small(args.quick)
    bench_small(args.quick, threads=2)
    bench_predict(args.quick, clf, sk, trainer, X)
    bench_large(args.quick, peak)
    bench_toolbox(args.quick)
    bench_memory(args.quick)
    lines.append(f"wall time of this run: {time.perf_counter() - t0:.0f} s; load average (1 min) at start "
                 f"{load0:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print_table("\n".join(lines))


if __name__ == "__main__":
    main()
