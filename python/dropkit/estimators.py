"""scikit-learn estimators: MLPClassifier and MLPRegressor.

Parameter names follow scikit-learn's MLP where it has them; dropkit adds
dropout, input_dropout, dropout_mode, l2, weight_decay, penalize_bias and
n_threads. The objective minimised on a minibatch B is

    sum_{i in B} w_i loss_i / sum_{i in B} w_i
      + sum_layers [l1 |W|_1 + (l2 / 2) |W|^2] + sum_hidden activity_penalty(h)

(biases excluded unless penalize_bias); ``weight_decay`` is decoupled
(W -= lr * weight_decay * W after the gradient step, as AdamW), ``max_norm``
rescales each unit's incoming weights to norm <= c after every update. Note
that scikit-learn's ``alpha`` is divided by the batch size: alpha = l2 * batch_size.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from . import _core
from ._validation import all_finite, check_int, check_nonneg, check_rate, to_float32
from .network import SOLVERS, Dense, Network, parse_activation
from .optim import SCHEDULES, Schedule
from .penalties import ACTIVITY_PENALTIES

# hidden outputs with |h| above this count as active in history_
ACTIVE_THRESHOLD = 0.01


FLOAT32_MAX = float(np.finfo(np.float32).max)


HISTORY_KEYS = ("loss", "penalty", "val_loss", "val_score", "learning_rate", "time", "activity_penalty",
                "zero_fraction", "mean_activation", "active_fraction", "grad_norm")


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or weights; the model keeps the
    last finite weights it had."""


_NO_CONTEXT = contextlib.nullcontext()


def _fitted_binarizer(classes, y_type, sparse_input=False):
    """A LabelBinarizer in the state its fit would leave, without fitting:
    what predict and saving read of it, for labels encoded without it and
    for a model read from a file."""
    binarizer = LabelBinarizer()
    binarizer.classes_, binarizer.y_type_, binarizer.sparse_input_ = classes, y_type, sparse_input
    return binarizer


def _is_float32_c(X):
    """A float32 C-contiguous array: what the engine reads in place."""
    return X.dtype == np.float32 and X.flags.c_contiguous


def _plain_float32(X):
    """A plain input (_is_plain_input), already known finite, as C-contiguous
    float32: a float32 C-contiguous array as it is, without a second
    finiteness pass; others converted (float64 may still overflow float32)."""
    return X if _is_float32_c(X) else to_float32(X, "X")


@contextlib.contextmanager
def thread_count(n_threads):
    """Run the kernels on n_threads threads inside the block (None: leave as is)."""
    if n_threads is None:
        yield
        return
    previous = _core.get_num_threads()
    _core.set_num_threads(n_threads)
    try:
        yield
    finally:
        _core.set_num_threads(previous)


class _BaseMLP(BaseEstimator):
    _loss = None  # set per task

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", learning_rate_init=0.001,
                 learning_rate="constant", lr_decay=0.1, lr_step_epochs=30, lr_patience=5, batch_size="auto",
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8, rho=0.99,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, dropout=0.0,
                 input_dropout=0.0, dropout_mode="inverted", dropconnect=0.0, l1=0.0, l1_mode="proximal", l2=0.0,
                 weight_decay=None, max_norm=None, penalize_bias=False, activity_penalty=None, n_threads=None,
                 callbacks=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.lr_step_epochs = lr_step_epochs
        self.lr_patience = lr_patience
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.rho = rho
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.dropout_mode = dropout_mode
        self.dropconnect = dropconnect
        self.l1 = l1
        self.l1_mode = l1_mode
        self.l2 = l2
        self.weight_decay = weight_decay
        self.max_norm = max_norm
        self.penalize_bias = penalize_bias
        self.activity_penalty = activity_penalty
        self.n_threads = n_threads
        self.callbacks = callbacks

    # ------------------------------------------------------------ parameters

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes: expected an integer or a sequence of integers, got {sizes!r}") from None
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"hidden_layer_sizes: every size must be a positive integer, got {s!r}")
        return [int(s) for s in sizes]

    def _per_hidden(self, value, name, n_hidden, check, what="hidden layer"):
        """One value per hidden layer (or per `what`) from a scalar or a sequence."""
        if isinstance(value, (list, tuple)) and not (name == "activation" and _is_activation_pair(value)):
            if len(value) != n_hidden:
                raise ValueError(f"{name}: expected {n_hidden} values (one per {what}), got {len(value)}")
            return [check(v, name) for v in value]
        return [check(value, name)] * n_hidden

    def _validate_hyperparameters(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(f"learning_rate: expected one of {', '.join(SCHEDULES)}, got {self.learning_rate!r}")
        check_nonneg(self.learning_rate_init, "learning_rate_init", strict=True)
        check_nonneg(self.lr_decay, "lr_decay", strict=True)
        if self.lr_decay > 1:
            raise ValueError(f"lr_decay: expected a factor in (0, 1], got {self.lr_decay!r}")
        check_int(self.lr_step_epochs, "lr_step_epochs")
        check_int(self.lr_patience, "lr_patience")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_int(self.batch_size, "batch_size")
        check_int(self.max_iter, "max_iter")
        check_nonneg(self.tol, "tol")
        check_rate(self.momentum, "momentum")
        check_rate(self.beta_1, "beta_1")
        check_rate(self.beta_2, "beta_2")
        check_rate(self.rho, "rho")
        check_nonneg(self.epsilon, "epsilon", strict=True)
        check_rate(self.validation_fraction, "validation_fraction")
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("validation_fraction: must be > 0 with early_stopping=True")
        check_int(self.n_iter_no_change, "n_iter_no_change")
        check_rate(self.input_dropout, "input_dropout")
        if self.dropout_mode not in ("inverted", "standard"):
            raise ValueError(f"dropout_mode: expected 'inverted' or 'standard', got {self.dropout_mode!r}")
        if self.weight_decay is not None and not isinstance(self.weight_decay, (list, tuple)):
            check_nonneg(self.weight_decay, "weight_decay")
        for name in ("l1", "l2"):
            if not isinstance(getattr(self, name), (list, tuple)):
                check_nonneg(getattr(self, name), name)
        if self.l1_mode not in ("proximal", "subgradient"):
            raise ValueError(f"l1_mode: expected 'proximal' or 'subgradient', got {self.l1_mode!r}")
        if self.max_norm is not None and not isinstance(self.max_norm, (list, tuple)):
            check_nonneg(self.max_norm, "max_norm", strict=True)
        if self.n_threads is not None:
            check_int(self.n_threads, "n_threads")
        callbacks = [self.callbacks] if callable(self.callbacks) else self.callbacks
        if callbacks is not None and not (isinstance(callbacks, (list, tuple)) and all(map(callable, callbacks))):
            raise TypeError("callbacks: expected a callable or a list of callables f(model, info)")

    def _layers(self, n_outputs):
        sizes = self._hidden_sizes()
        acts = self._per_hidden(self.activation, "activation", len(sizes), lambda v, n: parse_activation(v, n))
        rates = self._per_hidden(self.dropout, "dropout", len(sizes), check_rate)
        input_rates = [check_rate(self.input_dropout, "input_dropout")] + rates
        connect = self._per_hidden(self.dropconnect, "dropconnect", len(sizes) + 1, check_rate, "layer")
        penalty = self.activity_penalty
        if penalty is not None and not isinstance(penalty, ACTIVITY_PENALTIES) and len(penalty) != len(sizes):
            raise ValueError(f"activity_penalty: expected one penalty (or None) per hidden layer, got {len(penalty)}")
        penalties = penalty if isinstance(penalty, (list, tuple)) else [penalty] * len(sizes)
        layers = [Dense(u, a if a[0] in ("leaky_relu", "prelu", "elu", "maxout") else a[0], r, c, p)
                  for u, a, r, c, p in zip(sizes, acts, input_rates, connect, penalties)]
        layers.append(Dense(n_outputs, "identity", input_rates[len(sizes)], connect[len(sizes)]))
        return layers

    def _weight_decay(self):
        if self.weight_decay is None:
            return 0.01 if self.solver == "adamw" else 0.0
        return self.weight_decay

    def _configure(self, net):
        """Push the optimizer and penalty settings into the network (they may
        have changed by set_params between calls)."""
        net.set_optimizer(self.solver, learning_rate=self.learning_rate_init, momentum=self.momentum,
                          nesterov=self.nesterovs_momentum, beta_1=self.beta_1, beta_2=self.beta_2,
                          epsilon=self.epsilon, rho=self.rho)
        net.set_penalties(l1=self.l1, l2=self.l2, weight_decay=self._weight_decay(), max_norm=self.max_norm,
                          l1_mode=self.l1_mode, penalize_bias=self.penalize_bias)

    # --------------------------------------------------------------- fitting

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_snapshot", None)  # scratch
        return state

    def _snapshot_buffer(self, params):
        """A copy of params in a buffer this estimator keeps (not pickled)."""
        buf = self.__dict__.get("_snapshot")
        if buf is None or buf.shape != params.shape:
            buf = self._snapshot = np.empty_like(params)
        np.copyto(buf, params)
        return buf

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        self._validate_hyperparameters()
        if incremental and self.early_stopping:
            raise ValueError("early_stopping: partial_fit does not support early_stopping=True")
        continuing = hasattr(self, "_network") and (incremental or self.warm_start)
        # a continuing fit on plain arrays: validate_data would pass them through
        # unchanged, and skipping it saves about half a millisecond a call, as
        # much as several minibatches of a small net
        if continuing and self._is_plain_target(X, y):
            X = _plain_float32(X)
        else:
            X, y = validate_data(self, X, y, reset=not continuing, multi_output=True,
                                 dtype=(np.float64, np.float32), y_numeric=self._loss == "squared")
            X = to_float32(X, "X")
        Y = self._encode_targets(y, continuing, classes)
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, X, dtype=np.float32)
            if (sw < 0).any() or not np.isfinite(sw).all():
                raise ValueError("sample_weight: expected finite non-negative weights")
            if sw.sum() <= 0:
                raise ValueError("sample_weight: the weights sum to zero")
            sw = np.ascontiguousarray(sw, dtype=np.float32)

        # a generator only where one is drawn from: seeding one costs a tenth
        # of a millisecond, more than a minibatch of a small net
        rng = check_random_state(self.random_state) if not continuing or self.early_stopping else None
        if not continuing:
            self._network = Network(X.shape[1], self._layers(Y.shape[1]), dropout_mode=self.dropout_mode,
                                    random_state=rng.randint(np.iinfo(np.int32).max))
            self._epochs_done = 0
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self.history_ = {key: [] for key in HISTORY_KEYS}
            self.best_loss_ = np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._no_improvement_count = 0
        elif self._network.n_outputs != Y.shape[1]:
            raise ValueError(f"y: expected {self._network.n_outputs} outputs as in the previous fit, got {Y.shape[1]}")
        net = self._network
        self._configure(net)

        X_val = Y_val = sw_val = None
        if self.early_stopping:
            stratify = y if (self._loss == "softmax_ce" or (self._loss == "binary_ce" and Y.shape[1] == 1)) else None
            parts = train_test_split(X, Y, *([sw] if sw is not None else []), test_size=self.validation_fraction,
                                     random_state=rng.randint(np.iinfo(np.int32).max), stratify=stratify)
            X, X_val, Y, Y_val = parts[:4]
            if sw is not None:
                sw, sw_val = parts[4], parts[5]
            if X_val.shape[0] < 2:
                raise ValueError("validation_fraction: too small, the validation set has fewer than 2 samples")
            self.best_validation_score_ = -np.inf
            self.validation_scores_ = []
            self._no_improvement_count = 0
            self._best_params = net.params.copy()

        batch_size = min(200, X.shape[0]) if self.batch_size == "auto" else min(self.batch_size, X.shape[0])
        epochs = 1 if incremental else self.max_iter
        schedule = Schedule(self.learning_rate, self.learning_rate_init, max_iter=self.max_iter, lr_decay=self.lr_decay,
                            lr_step_epochs=self.lr_step_epochs, lr_patience=self.lr_patience, tol=self.tol)
        if not incremental:
            self.best_loss_ = np.inf
            self._no_improvement_count = 0
        converged = False
        with thread_count(self.n_threads):
            try:
                for epoch in range(epochs):
                    lr = schedule.rate(epoch) if not incremental else self.learning_rate_init
                    net.learning_rate = lr
                    # the weights before the epoch; for partial_fit in a buffer kept
                    # across calls: a fresh copy faults its pages in anew each call
                    snapshot = self._snapshot_buffer(net.params) if incremental else net.params.copy()
                    start = time.perf_counter()
                    result = net._core.train_epoch(X, Y, sw, self._loss, batch_size, bool(self.shuffle),
                                                   self._epochs_done)
                    elapsed = time.perf_counter() - start
                    # the penalty, finiteness and diagnostics in one pass over the parameters
                    stats = net._core.param_stats()
                    penalty = stats["penalty"]
                    # an epoch that diverged in its first minibatch has summed no weight
                    loss = math.inf if result["diverged"] else result["loss_sum"] / result["weight_sum"] + penalty
                    if not abs(loss) <= FLOAT32_MAX or not stats["finite"]:
                        net.params[...] = snapshot
                        raise DivergenceError(
                            f"training diverged in epoch {self.n_iter_ + 1}: the loss is no longer finite in float32. "
                            "The weights from before that epoch were kept; lower learning_rate_init or add "
                            "regularization.")
                    self._epochs_done += 1
                    self.n_iter_ += 1
                    self.t_ += X.shape[0]
                    self.loss_ = loss
                    self.loss_curve_.append(loss)
                    self._record(loss, penalty, lr, elapsed, result, stats, X_val, Y_val, sw_val)
                    schedule.observe(self.history_["val_loss"][-1] if self.early_stopping else loss)
                    if self.verbose:
                        self._report()
                    converged = self._check_converged()
                    if self._callbacks_stop() or converged:
                        converged = True
                        break
            except BaseException:
                # Ctrl-C, divergence or a callback's exception: the engine stops
                # between steps and an epoch's bookkeeping is done before any
                # callback runs, so the weights and figures are whole: the
                # model predicts and can continue with partial_fit.
                self._finish(early_stop=False)
                raise
        if not incremental and not converged and self.n_iter_ >= self.max_iter:
            warnings.warn(f"Stopped at max_iter={self.max_iter} before the loss converged.", ConvergenceWarning)
        self._finish(early_stop=self.early_stopping and not incremental)
        return self

    def _record(self, loss, penalty, lr, elapsed, result, stats, X_val, Y_val, sw_val):
        h = self.history_
        net = self._network
        h["loss"].append(loss)
        h["penalty"].append(penalty)
        h["learning_rate"].append(lr)
        h["time"].append(elapsed)
        # diagnostics; the activations and gradients are those of the epoch's last minibatch
        n_hidden = len(net.layers) - 1
        h["activity_penalty"].append([s / max(result["batches"], 1) for s in result["activity_sum"][:n_hidden]])
        h["zero_fraction"].append(stats["zero_fraction"])
        mean_abs, active = net._core.last_batch_stats(ACTIVE_THRESHOLD)
        h["mean_activation"].append(list(mean_abs))
        h["active_fraction"].append(list(active))
        h["grad_norm"].append(stats["grad_norm"])
        if X_val is None:
            h["val_loss"].append(None)
            h["val_score"].append(None)
            return
        net = self._network
        h["val_loss"].append(net._core.mean_loss(X_val, Y_val, sw_val, self._loss))
        score = self._score_encoded(X_val, Y_val, sw_val)
        h["val_score"].append(score)
        self.validation_scores_.append(score)

    def _check_converged(self):
        """scikit-learn's rule: stop after n_iter_no_change epochs without an
        improvement of tol in the validation score (early stopping) or the loss."""
        if self.early_stopping:
            score = self.validation_scores_[-1]
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._network.params.copy()
        else:
            loss = self.loss_curve_[-1]
            best = np.inf if self.best_loss_ is None else self.best_loss_  # None after early stopping
            if loss > best - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(best, loss)
        if self._no_improvement_count > self.n_iter_no_change:
            if self.verbose:
                print(f"No improvement for {self.n_iter_no_change} epochs; stopping.")
            return True
        return False

    def _callbacks_stop(self):
        """Call each callback with (model, the epoch's figures); True from any stops training."""
        callbacks = self.callbacks
        if callbacks is None:
            return False
        if callable(callbacks):
            callbacks = [callbacks]
        info = {key: values[-1] for key, values in self.history_.items()}
        info["epoch"] = self.n_iter_
        stop = False
        for callback in callbacks:
            stop |= bool(callback(self, info))
        return stop

    def _finish(self, early_stop):
        if early_stop and hasattr(self, "_best_params"):
            self._network.params[...] = self._best_params
        if self.early_stopping:
            self.best_loss_ = None
        self.__dict__.pop("_best_params", None)

    def _report(self):
        h = self.history_
        line = f"Epoch {self.n_iter_}: loss = {h['loss'][-1]:.6f}"
        if h["val_loss"][-1] is not None:
            line += f", validation loss = {h['val_loss'][-1]:.6f}, validation score = {h['val_score'][-1]:.4f}"
        line += f", lr = {h['learning_rate'][-1]:.3g}, {h['time'][-1] * 1000:.1f} ms"
        print(line, flush=True)

    # ------------------------------------------------------------- prediction

    def _is_plain_shape(self, X):
        """True for a 2-d float ndarray with the fitted number of features,
        from an estimator fitted without feature names: what validate_data
        would pass through unchanged, if finite."""
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype in (np.float32, np.float64)
                and X.shape[0] > 0 and X.shape[1] == self.n_features_in_
                and not hasattr(self, "feature_names_in_"))

    def _is_plain_input(self, X):
        """A plain shape (above) of finite values. Skipping validate_data there
        saves a few hundred microseconds per call, which is most of predicting
        one sample."""
        return self._is_plain_shape(X) and all_finite(X)

    def _is_plain_target(self, X, y):
        """True for a plain X (_is_plain_input) with a 1-d ndarray of as many
        integer, boolean or finite float targets."""
        return (self._is_plain_input(X) and type(y) is np.ndarray and y.ndim == 1 and len(y) == X.shape[0]
                and (y.dtype.kind in "biu" or (y.dtype.kind == "f" and all_finite(y))))

    def _forward(self, X, mc_samples=None, random_state=None, link=None, proba=False):
        """The network's outputs for X; with mc_samples, the mean over that many
        stochastic passes (through `link` first, so probabilities are averaged);
        with proba, the float64 probabilities of predict_proba."""
        if "_network" not in self.__dict__:  # as __sklearn_is_fitted__, without check_is_fitted's cost
            check_is_fitted(self)
        # a plain float32 array goes to the engine as it is, which checks it
        # is finite in a pass of its own (cheaper than numpy's for few rows)
        plain = self._is_plain_shape(X)
        engine_checks = plain and mc_samples is None and _is_float32_c(X)
        if not engine_checks:
            if plain and all_finite(X):
                X = _plain_float32(X)
            else:
                X = to_float32(validate_data(self, X, reset=False, dtype=(np.float64, np.float32)), "X")
        # the pool's count already right (the common case): no generator-based
        # context, which costs as much as a tenth of predicting one sample
        same = self.n_threads is None or self.n_threads == _core.get_num_threads()
        with _NO_CONTEXT if same else thread_count(self.n_threads):
            if proba:
                return self._network._core.predict_proba(X, self._loss, self._is_binary(), engine_checks)
            if mc_samples is None:
                return self._network._core.predict(X, link, 0, 0, engine_checks)
            return self._network.predict(X, link, mc_samples=mc_samples, random_state=random_state)

    def hidden_activity(self, X):
        """Per hidden layer, the mean |output| and the fraction of outputs with
        |h| > 0.01 over X, without dropout: how sparse the representation is."""
        check_is_fitted(self)
        X = to_float32(validate_data(self, X, reset=False, dtype=(np.float64, np.float32)), "X")
        mean_abs, active = self._network._core.hidden_stats(X, ACTIVE_THRESHOLD)
        return {"mean_activation": list(mean_abs), "active_fraction": list(active)}

    # ----------------------------------------------------------- the weights

    @property
    def coefs_(self):
        """Per layer, the (n_in, n_out) weights: zero-copy views of the engine's buffer."""
        return self._network.weights

    @property
    def intercepts_(self):
        return self._network.biases

    @property
    def n_layers_(self):
        return len(self._network.layers) + 1

    @property
    def n_outputs_(self):
        return self._network.n_outputs

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_network")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def save(self, path):
        """Write the fitted model to ``path`` (JSON header + raw float32 arrays, no pickle)."""
        from .io import save
        save(self, path)

    # The fitted attributes beside the network that predict and partial_fit read.
    _STATE_ATTRIBUTES = ("n_features_in_", "feature_names_in_", "classes_", "out_activation_", "_y_ndim", "n_iter_",
                         "t_", "loss_", "loss_curve_", "history_", "best_loss_", "validation_scores_",
                         "best_validation_score_", "_epochs_done", "_no_improvement_count")

    def _get_state(self):
        """(meta, arrays) for dropkit.io: everything a fitted estimator needs to
        predict and to continue with partial_fit. meta holds plain values and
        small numpy arrays (labels, feature names); arrays the network's
        buffers. A random_state that is a generator object, and callbacks, are
        stored as None."""
        check_is_fitted(self)
        params = self.get_params(deep=False)
        if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
            params["random_state"] = None
        params["callbacks"] = None  # code is never stored in a model file
        config, arrays = self._network.state()
        meta = {"params": params, "network": config, "loss": self._loss,
                "attributes": {k: getattr(self, k) for k in self._STATE_ATTRIBUTES if k in self.__dict__}}
        if hasattr(self, "_binarizer"):
            meta["binarizer"] = {"y_type": self._binarizer.y_type_, "sparse_input": self._binarizer.sparse_input_}
        return meta, arrays

    def _set_state(self, meta, arrays):
        """Restore, on a new estimator, what :meth:`_get_state` captured."""
        self.set_params(**meta["params"])
        network = Network.from_state(meta["network"], arrays)
        unknown = set(meta["attributes"]) - set(self._STATE_ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown fitted attributes {sorted(unknown)}")
        for key, value in meta["attributes"].items():
            setattr(self, key, value)
        if hasattr(self, "history_"):
            # figures that files from earlier versions did not record read as None
            for key in HISTORY_KEYS:
                self.history_.setdefault(key, [None] * len(self.history_.get("loss", [])))
        if "binarizer" in meta:
            self._binarizer = _fitted_binarizer(self.classes_, meta["binarizer"]["y_type"],
                                                meta["binarizer"]["sparse_input"])
        if type(self)._loss is None:
            self._loss = meta["loss"]
        self._network = network


def _is_activation_pair(value):
    """("maxout", 3) is one activation; ["relu", ("maxout", 3)] is one per hidden layer."""
    return len(value) == 2 and isinstance(value[0], str) and (value[1] is None or isinstance(value[1], numbers.Number))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by dropkit's C++ engine.

    Multiclass targets use a softmax output with cross-entropy; binary targets
    a single logistic output; a 2-d indicator matrix is treated as multilabel
    (one logistic output per label). See the module docstring and README for
    every parameter.
    """

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y). ``classes`` is required on the first call."""
        if not hasattr(self, "_network"):
            if classes is None:
                raise ValueError("classes: must be given on the first call to partial_fit")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _encode_targets(self, y, continuing, classes):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self._plain_labels(y, continuing, classes):
            return self._encode_plain_labels(y, continuing)
        check_classification_targets(y)
        if continuing:
            labels = unique_labels(y)  # which also checks the labels' types agree
            if y.ndim == 1:
                self._check_seen(labels)
        else:
            target = type_of_target(y)
            self._binarizer = LabelBinarizer()
            self._binarizer.fit(classes if classes is not None else y)
            self._set_classes(self._binarizer.classes_, multilabel=target == "multilabel-indicator")
        return np.ascontiguousarray(self._binarizer.transform(y), dtype=np.float32)

    def _check_seen(self, labels):
        unknown = np.setdiff1d(labels, self.classes_)
        if len(unknown):
            raise ValueError(f"y: labels {list(unknown)} were not seen in the first fit; expected {list(self.classes_)}")

    def _set_classes(self, classes, multilabel):
        """classes_ and the output layer's loss for a first fit."""
        self.classes_ = classes
        if not multilabel and len(classes) < 2:
            raise ValueError(f"y: needs samples of at least 2 classes, got 1 class ({classes[0]!r})")
        self._loss = "binary_ce" if (multilabel or len(classes) == 2) else "softmax_ce"
        self.out_activation_ = "logistic" if self._loss == "binary_ce" else "softmax"

    def _plain_labels(self, y, continuing, classes):
        """True for the common case: a 1-d array of integer, boolean or string
        labels (not a continuous target, nothing multilabel), and, continuing,
        a model of single labels of the same kind."""
        if y.ndim != 1 or y.dtype.kind not in "biuU":
            return False
        if not continuing:
            return classes is None
        kinds = "U" if y.dtype.kind == "U" else "biu"
        return self._binarizer.y_type_ in ("binary", "multiclass") and self.classes_.dtype.kind in kinds

    def _encode_plain_labels(self, y, continuing):
        """What LabelBinarizer computes for plain labels, by numpy alone: its
        checks of the target's type cost a few milliseconds a fit, as much as
        an epoch on a small data set."""
        if continuing:
            index = np.minimum(np.searchsorted(self.classes_, y), len(self.classes_) - 1)
            unseen = self.classes_[index] != y
            if unseen.any():
                self._check_seen(np.unique(y[unseen]))
        else:
            classes, index = np.unique(y, return_inverse=True)
            self._set_classes(classes, multilabel=False)
            self._binarizer = _fitted_binarizer(classes, "binary" if len(classes) == 2 else "multiclass")
        if len(self.classes_) == 2:  # one column, 1 for the second class
            return (index == 1).astype(np.float32).reshape(-1, 1)
        Y = np.zeros((len(y), len(self.classes_)), np.float32)
        Y[np.arange(len(y)), index] = 1.0
        return Y

    def _score_encoded(self, X, Y, sw):
        proba = self._network._core.predict(X, self._loss)
        if self._loss == "softmax_ce":
            pred, true = proba.argmax(1), Y.argmax(1)
        else:
            pred, true = proba > 0.5, Y > 0.5
        return accuracy_score(true, pred, sample_weight=sw)

    def predict_proba(self, X, mc_samples=None, random_state=None):
        """Class probabilities (n_samples, n_classes); for multilabel targets,
        one probability per label.

        By default dropout and DropConnect are off (the weight-scaling rule).
        With ``mc_samples=K`` the probabilities are the mean of K stochastic
        passes with both on, masks drawn from ``random_state`` (Monte Carlo
        dropout: the network as an ensemble)."""
        if mc_samples is not None:
            p = self._forward(X, mc_samples, random_state, link=self._loss).astype(np.float64)
            if self._loss == "softmax_ce":
                p /= p.sum(axis=1, keepdims=True)  # the float32 average sums to 1 only to ~1e-7
            return np.hstack([1 - p, p]) if self._is_binary() else p
        # the softmax (or logistic) of the float32 logits, in float64
        return self._forward(X, proba=True)

    def predict_log_proba(self, X):
        z = self._forward(X).astype(np.float64)
        if self._loss == "softmax_ce":
            z -= z.max(axis=1, keepdims=True)
            return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        log_p, log_not_p = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        return np.hstack([log_not_p, log_p]) if self._is_binary() else log_p

    def predict(self, X, mc_samples=None, random_state=None):
        """Predicted labels; with ``mc_samples``, from the Monte Carlo average
        of the probabilities (see predict_proba)."""
        if mc_samples is not None:
            p = self._forward(X, mc_samples, random_state, link=self._loss)
            if self._loss == "softmax_ce":
                return self.classes_[p.argmax(axis=1)]
            z = np.where(p > 0.5, 1.0, -1.0)
        else:
            z = self._forward(X)
        if self._loss == "softmax_ce":
            return self.classes_[z.argmax(axis=1)]
        if self._is_binary():
            return self.classes_[(z[:, 0] > 0).astype(int)]
        return self._binarizer.inverse_transform((z > 0).astype(int))

    def _is_binary(self):
        return self._binarizer.y_type_ == "binary"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor (squared error, identity output) trained
    by dropkit's C++ engine. The loss is scikit-learn's: half the mean over
    samples and outputs of the squared residuals."""

    _loss = "squared"

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _encode_targets(self, y, continuing, classes):
        y = np.asarray(y)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        Y32 = to_float32(Y, "y")
        if not continuing:
            self._y_ndim = y.ndim
            self.out_activation_ = "identity"
        return Y32

    def _score_encoded(self, X, Y, sw):
        return r2_score(Y, self._network._core.predict(X, None), sample_weight=sw)

    def predict(self, X, mc_samples=None, random_state=None):
        """Predictions; with ``mc_samples=K``, the mean of K passes with
        dropout and DropConnect on (Monte Carlo dropout)."""
        out = self._forward(X, mc_samples, random_state).astype(np.float64)
        return out.ravel() if self._y_ndim == 1 else out
