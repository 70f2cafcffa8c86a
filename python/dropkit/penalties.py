"""Activity (representation) penalties on a hidden layer's output h.

They act on h after the activation, averaged over the minibatch B (sample
weights do not enter them):

- ``ActivityL1(alpha)``: alpha * mean_B sum_j |h_j| — pushes outputs to exact
  zeros with relu-like activations.
- ``KLSparsity(rho, beta)``: beta * sum_j KL(rho || rho_hat_j), with
  rho_hat_j = mean_B h_j the unit's mean activation and KL the divergence
  between Bernoulli variables — drives each unit's mean activation to rho.
  It needs outputs in (0, 1): use it with the logistic activation.
- ``StudentT(alpha)``: alpha * mean_B sum_j log(1 + h_j^2) — a heavy-tailed
  sparsity prior: strong pull on small outputs, weak on large ones.

Weight penalties (l1, l2, weight_decay, max_norm) are estimator parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._validation import check_nonneg, check_number


@dataclass(frozen=True)
class ActivityL1:
    alpha: float

    def spec(self):
        return {"kind": "l1", "alpha": check_nonneg(self.alpha, "ActivityL1.alpha")}


@dataclass(frozen=True)
class KLSparsity:
    rho: float
    beta: float = 1.0

    def spec(self):
        rho = check_number(self.rho, "KLSparsity.rho")
        if not 0.0 < rho < 1.0:
            raise ValueError(f"KLSparsity.rho: expected a target rate in (0, 1), got {self.rho!r}")
        return {"kind": "kl", "alpha": check_nonneg(self.beta, "KLSparsity.beta"), "rho": rho}


@dataclass(frozen=True)
class StudentT:
    alpha: float

    def spec(self):
        return {"kind": "student_t", "alpha": check_nonneg(self.alpha, "StudentT.alpha")}


ACTIVITY_PENALTIES = (ActivityL1, KLSparsity, StudentT)


def activity_spec(penalty, name, activation):
    """The engine's description of ``penalty`` for a layer with ``activation``
    (a parsed (name, parameter) pair), or None."""
    if penalty is None:
        return None
    if not isinstance(penalty, ACTIVITY_PENALTIES):
        raise TypeError(f"{name}: expected dropkit.ActivityL1, KLSparsity, StudentT or None, "
                        f"got {type(penalty).__name__}")
    spec = penalty.spec()
    if isinstance(penalty, KLSparsity) and activation != "logistic":
        raise ValueError(f"{name}: KLSparsity needs outputs in (0, 1) and the layer's activation is "
                         f"{activation!r}; use activation='logistic'")
    return spec


def penalty_from_spec(spec):
    """Inverse of ``spec()``, for loading saved models."""
    if spec is None:
        return None
    if spec["kind"] == "l1":
        return ActivityL1(spec["alpha"])
    if spec["kind"] == "kl":
        return KLSparsity(spec["rho"], spec["alpha"])
    if spec["kind"] == "student_t":
        return StudentT(spec["alpha"])
    raise ValueError(f"activity_penalty: unknown kind {spec['kind']!r}")
