"""The layer-level API: a network you drive from your own training loop.

A :class:`Network` is a stack of :class:`Dense` layers over one flat float32
buffer each for parameters, gradients and optimizer state (the C++ engine owns
them; the arrays you get here are zero-copy views). Use it as::

    net = dropkit.Network(64, [Dense(256, "relu"), Dense(10, "identity", dropout=0.5)],
                          solver="adam", learning_rate=1e-3, random_state=0)
    out = net.forward(X, training=True)           # (B, 10)
    loss, dout = dropkit.functional.softmax_cross_entropy(out, Y)
    net.zero_grad(); net.backward(dout); net.step()

The estimators in :mod:`dropkit.estimators` are built on the same class.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _core
from ._validation import as_float32_matrix, check_rate, check_nonneg
from .penalties import activity_spec, penalty_from_spec

ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout")
# The parameter each activation takes, and its default.
ACTIVATION_DEFAULT_PARAM = {"leaky_relu": 0.01, "prelu": 0.25, "elu": 1.0, "maxout": 2}
SOLVERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")


def parse_activation(spec, name="activation"):
    """Return (name, param) from a name or a (name, param) pair.

    The parameter is the slope of leaky_relu, the initial slope of prelu, the
    alpha of elu and the number of pieces of maxout.
    """
    if isinstance(spec, str):
        act, param = spec, None
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        act, param = spec
    else:
        raise ValueError(f"{name}: expected a name or a (name, parameter) pair, got {spec!r}")
    if act == "sigmoid":
        act = "logistic"
    if act not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    if param is None:
        param = ACTIVATION_DEFAULT_PARAM.get(act, 0.0)
    if act == "maxout":
        if not isinstance(param, numbers.Integral) or isinstance(param, bool) or param < 2:
            raise ValueError(f"{name}: maxout needs an integer number of pieces >= 2, got {param!r}")
        param = int(param)
    else:
        if not isinstance(param, numbers.Real) or isinstance(param, bool) or not np.isfinite(param):
            raise ValueError(f"{name}: the parameter of {act} must be a finite number, got {param!r}")
        if act == "elu" and param < 0:
            raise ValueError(f"{name}: elu's alpha must be >= 0, got {param!r}")
        param = float(param)
    return act, param


@dataclass
class Dense:
    """A dense layer: ``units`` outputs, an activation (a name or a
    (name, parameter) pair, see :func:`parse_activation`), the dropout rate
    applied to the layer's *input* during training, the DropConnect rate of
    its weights (one mask per step; prediction uses the mean weights), and an
    activity penalty on its output (see :mod:`dropkit.penalties`)."""

    units: int
    activation: object = "relu"
    dropout: float = 0.0
    dropconnect: float = 0.0
    activity_penalty: object = None

    def spec(self, index):
        if not isinstance(self.units, numbers.Integral) or isinstance(self.units, bool) or self.units < 1:
            raise ValueError(f"layers[{index}].units: expected a positive integer, got {self.units!r}")
        act, param = parse_activation(self.activation, f"layers[{index}].activation")
        check_rate(self.dropout, f"layers[{index}].dropout")
        check_rate(self.dropconnect, f"layers[{index}].dropconnect")
        spec = {"units": int(self.units), "activation": "sigmoid" if act == "logistic" else act,
                "dropout": float(self.dropout), "dropconnect": float(self.dropconnect),
                "activity": activity_spec(self.activity_penalty, f"layers[{index}].activity_penalty", act)}
        if act == "maxout":
            spec["pieces"] = param
        else:
            spec["param"] = param
        return spec


class Network:
    """A multilayer perceptron for custom training loops (see the module docstring).

    Parameters mirror the estimators: ``solver`` one of sgd, adam, adamw,
    adagrad, rmsprop; ``l1`` (a proximal soft-threshold step after each update
    with ``l1_mode="proximal"``, or l1 * sign(W) in the gradient with
    ``"subgradient"``), ``l2`` (L2 in the gradient: g += l2 * W),
    ``weight_decay`` (decoupled: W -= lr * weight_decay * W) and ``max_norm``
    (each unit's incoming weight vector rescaled to norm <= c after each
    update), each a float or one value per layer; biases are not penalised
    unless ``penalize_bias``.
    ``dropout_mode`` is "inverted" (kept units scaled by 1/(1-rate) in
    training) or "standard" (no scaling in training, inputs scaled by the keep
    probability at prediction).
    """

    def __init__(self, n_inputs, layers, *, solver="adam", learning_rate=1e-3, momentum=0.9,
                 nesterov=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8, rho=0.99, l1=0.0, l2=0.0,
                 weight_decay=0.0, max_norm=None, l1_mode="proximal", penalize_bias=False,
                 dropout_mode="inverted", random_state=None):
        if not isinstance(n_inputs, numbers.Integral) or isinstance(n_inputs, bool) or n_inputs < 1:
            raise ValueError(f"n_inputs: expected a positive integer, got {n_inputs!r}")
        layers = [Dense(**l) if isinstance(l, dict) else l for l in layers]
        if not layers or not all(isinstance(l, Dense) for l in layers):
            raise ValueError("layers: expected a non-empty list of dropkit.Dense")
        if dropout_mode not in ("inverted", "standard"):
            raise ValueError(f"dropout_mode: expected 'inverted' or 'standard', got {dropout_mode!r}")
        self.layers = list(layers)
        self.dropout_mode = dropout_mode
        rng = np.random.default_rng(random_state)
        seed = int(rng.integers(0, 2**63 - 1))
        self._core = _core.Network(int(n_inputs), [l.spec(i) for i, l in enumerate(self.layers)],
                                   dropout_mode, seed)
        self._init_weights(rng)
        self.set_optimizer(solver, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                           beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, rho=rho)
        self.set_penalties(l1=l1, l2=l2, weight_decay=weight_decay, max_norm=max_norm, l1_mode=l1_mode,
                           penalize_bias=penalize_bias)

    # ------------------------------------------------------------------ setup

    def _init_weights(self, rng):
        # Glorot uniform as scikit-learn's MLP: bound sqrt(6 / (fan_in + fan_out)),
        # sqrt(2 / ...) for the logistic function.
        for i, layer in enumerate(self.layers):
            w, b = self._core.weight(i), self._core.bias(i)
            fan_in, fan_out = w.shape
            factor = 2.0 if parse_activation(layer.activation)[0] == "logistic" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            # a block of rows at a time: the same draws in the same order as one
            # call, without a float64 copy of the whole layer at the peak of fit
            rows = max(1, 2**16 // w.shape[1])
            for r in range(0, fan_in, rows):
                w[r:r + rows] = rng.uniform(-bound, bound, w[r:r + rows].shape)
            b[...] = rng.uniform(-bound, bound, b.shape)

    def set_optimizer(self, solver, *, learning_rate=1e-3, momentum=0.9, nesterov=True, beta_1=0.9,
                      beta_2=0.999, epsilon=1e-8, rho=0.99):
        """Choose the optimizer and its hyperparameters; its state is kept."""
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {solver!r}")
        check_nonneg(learning_rate, "learning_rate", strict=True)
        check_rate(momentum, "momentum")
        for value, name in ((beta_1, "beta_1"), (beta_2, "beta_2"), (rho, "rho")):
            check_rate(value, name)
        check_nonneg(epsilon, "epsilon", strict=True)
        self.solver = solver
        self._opt = dict(learning_rate=float(learning_rate), momentum=float(momentum), nesterov=bool(nesterov),
                         beta_1=float(beta_1), beta_2=float(beta_2), epsilon=float(epsilon), rho=float(rho))
        self._core.set_optimizer(solver, float(learning_rate), float(momentum) if solver == "sgd" else 0.0,
                                 bool(nesterov), float(beta_1), float(beta_2), float(epsilon), float(rho))

    def set_penalties(self, *, l1=0.0, l2=0.0, weight_decay=0.0, max_norm=None, l1_mode="proximal",
                      penalize_bias=False):
        """Set the weight penalties (see the class docstring), each a float or one per layer."""
        if l1_mode not in ("proximal", "subgradient"):
            raise ValueError(f"l1_mode: expected 'proximal' or 'subgradient', got {l1_mode!r}")
        n = len(self.layers)
        norms = per_layer(0.0 if max_norm is None else max_norm, n, "max_norm", allow_none=True)
        self._penalties = dict(l1=per_layer(l1, n, "l1"), l2=per_layer(l2, n, "l2"),
                               weight_decay=per_layer(weight_decay, n, "weight_decay"), max_norm=norms,
                               l1_mode=l1_mode, penalize_bias=bool(penalize_bias))
        p = self._penalties
        self._core.set_penalties(p["l1"], p["l2"], p["weight_decay"], p["max_norm"], l1_mode == "proximal",
                                 p["penalize_bias"])

    @property
    def learning_rate(self):
        return self._core.lr

    @learning_rate.setter
    def learning_rate(self, value):
        check_nonneg(value, "learning_rate", strict=True)
        self._core.lr = float(value)
        self._opt["learning_rate"] = float(value)

    # -------------------------------------------------------------- parameters

    @property
    def n_inputs(self):
        return self._core.n_inputs

    @property
    def n_outputs(self):
        return self._core.n_outputs

    @property
    def params(self):
        """All parameters, one flat float32 view (weights, bias, [slopes] per layer)."""
        return self._core.params

    @property
    def grads(self):
        """Gradients, laid out like :attr:`params`; backward accumulates into them."""
        return self._core.grads

    @property
    def weights(self):
        """Per layer, a (n_in, width) view of the weights (width = units * pieces for maxout)."""
        return [self._core.weight(i) for i in range(len(self.layers))]

    @property
    def biases(self):
        return [self._core.bias(i) for i in range(len(self.layers))]

    @property
    def slopes(self):
        """Per layer, the learned prelu slopes (a view), or None."""
        return [self._core.slopes(i) for i in range(len(self.layers))]

    @property
    def step_count(self):
        return self._core.step

    # ---------------------------------------------------------------- compute

    def forward(self, X, training=False):
        """Outputs (B, n_outputs) of the last layer for X (B, n_inputs).

        With ``training=True`` dropout is on, its masks keyed by the step count,
        and the activations are kept for :meth:`backward`.
        """
        X = as_float32_matrix(X, "X", n_features=self.n_inputs)
        return self._core.forward(X, bool(training))

    def backward(self, dout):
        """Accumulate parameter gradients from dout = dloss/doutput (B, n_outputs)
        of the last forward pass; returns dloss/dX (B, n_inputs).

        After ``forward(X, training=True)`` the gradients go through that
        pass's dropout and DropConnect masks and include the activity
        penalties; after ``forward(X)`` they are those of the prediction-mode
        function (no masks or penalties; standard dropout's weight scaling),
        as for an input-saliency map."""
        dout = as_float32_matrix(dout, "dout")
        return self._core.backward(dout)

    def zero_grad(self):
        self._core.zero_grad()

    def step(self):
        """One optimizer update from the accumulated gradients (one fused pass)."""
        self._core.step_optimizer()

    def penalty_value(self):
        """The current weight-penalty term of the objective: the sum over layers
        of l1 |W|_1 + (l2/2) |W|^2 (with the biases if penalize_bias)."""
        return self._core.penalty_value()

    def predict(self, X, link=None, *, mc_samples=None, random_state=None):
        """Outputs for X in blocks. ``link`` may be 'softmax_ce' (softmax),
        'binary_ce' (sigmoid) or None (raw outputs).

        Without ``mc_samples`` dropout and DropConnect are off (the
        weight-scaling rule); with ``mc_samples=K`` the result is the mean of K
        passes with both on, masks drawn from ``random_state`` (Monte Carlo
        dropout, the ensemble view)."""
        X = as_float32_matrix(X, "X", n_features=self.n_inputs)
        if mc_samples is None:
            return self._core.predict(X, link)
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, numbers.Integral) or mc_samples < 1:
            raise ValueError(f"mc_samples: expected a positive integer, got {mc_samples!r}")
        seed = int(np.random.default_rng(random_state).integers(0, 2**63 - 1))
        return self._core.predict(X, link, int(mc_samples), seed)

    def train_epoch(self, X, Y, *, loss, batch_size=32, shuffle=True, epoch=0, sample_weight=None):
        """One epoch of minibatch training in C++ with the GIL released.

        ``loss`` is 'softmax_ce', 'binary_ce' or 'squared'; Y is (n, n_outputs).
        Returns the mean training loss over the epoch (without penalties).
        Raises FloatingPointError when the loss stops being finite.
        Most weights take their update inside the backward pass (the same
        arithmetic as :meth:`step`, to the bit); after a whole epoch
        :attr:`grads` holds the gradients of its last minibatch (after an
        interrupted one, of no particular step).
        """
        X = as_float32_matrix(X, "X", n_features=self.n_inputs)
        Y = as_float32_matrix(Y, "Y")
        r = self._core.train_epoch(X, Y, sample_weight, loss, int(batch_size), bool(shuffle), int(epoch))
        if r["diverged"]:
            raise FloatingPointError("training diverged: the loss is no longer finite; "
                                     "lower learning_rate or add regularization")
        return r["loss_sum"] / r["weight_sum"] if r["weight_sum"] > 0 else float("nan")

    # ------------------------------------------------------------ persistence

    def state(self):
        """(config, arrays): everything needed to rebuild this network exactly,
        as JSON-ready values and named float32 arrays."""
        config = {
            "n_inputs": self.n_inputs,
            "layers": [dict(units=l.units, activation=l.activation, dropout=l.dropout, dropconnect=l.dropconnect,
                            activity_penalty=activity_spec(l.activity_penalty, "activity_penalty",
                                                           parse_activation(l.activation)[0]))
                       for l in self.layers],
            "solver": self.solver,
            "optimizer": dict(self._opt),
            "penalties": dict(self._penalties),
            "dropout_mode": self.dropout_mode,
            "seed": int(self._core.seed),
            "step": int(self._core.step),
        }
        for layer in config["layers"]:
            if isinstance(layer["activation"], tuple):
                layer["activation"] = list(layer["activation"])
        arrays = {"params": self.params.copy(), "opt_m": self._core.opt_m.copy(), "opt_v": self._core.opt_v.copy()}
        return config, arrays

    @classmethod
    def from_state(cls, config, arrays):
        layers = [Dense(l["units"], tuple(l["activation"]) if isinstance(l["activation"], list) else l["activation"],
                        l["dropout"], l.get("dropconnect", 0.0), penalty_from_spec(l.get("activity_penalty")))
                  for l in config["layers"]]
        opt = config["optimizer"]
        net = cls(config["n_inputs"], layers, solver=config["solver"], learning_rate=opt["learning_rate"],
                  momentum=opt["momentum"], nesterov=opt["nesterov"], beta_1=opt["beta_1"], beta_2=opt["beta_2"],
                  epsilon=opt["epsilon"], rho=opt["rho"], dropout_mode=config["dropout_mode"], random_state=0,
                  **config["penalties"])
        for name, target in (("params", net.params), ("opt_m", net._core.opt_m), ("opt_v", net._core.opt_v)):
            source = np.asarray(arrays[name])
            if source.shape != target.shape:
                raise ValueError(f"{name}: expected {target.shape[0]} values, got {source.shape}")
            target[...] = source
        net._core.seed = int(config["seed"])
        net._core.step = int(config["step"])
        return net

    def __getstate__(self):
        config, arrays = self.state()
        return {"config": config, "arrays": arrays}

    def __setstate__(self, state):
        other = Network.from_state(state["config"], state["arrays"])
        self.__dict__.update(other.__dict__)

    def __repr__(self):
        shape = " -> ".join([str(self.n_inputs)] + [str(l.units) for l in self.layers])
        return f"Network({shape}, solver={self.solver!r})"


def per_layer(value, n_layers, name, allow_none=False):
    """A float for every layer, or a sequence with one non-negative value per
    layer (None entries read as 0 when allow_none)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = [value] * n_layers
    else:
        try:
            values = list(value)
        except TypeError:
            raise ValueError(f"{name}: expected a number or one value per layer, got {value!r}") from None
        if len(values) != n_layers:
            raise ValueError(f"{name}: expected {n_layers} values (one per layer), got {len(values)}")
    if allow_none:
        values = [0.0 if v is None else v for v in values]
    for v in values:
        check_nonneg(v, name)
    return [float(v) for v in values]
