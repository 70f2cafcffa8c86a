"""Learning-rate schedules, applied once per epoch.

- ``constant``: the initial rate throughout.
- ``step``: multiplied by ``lr_decay`` every ``lr_step_epochs`` epochs.
- ``cosine``: from the initial rate down to 0 over ``max_iter`` epochs
  (``lr_initial * (1 + cos(pi * epoch / max_iter)) / 2``).
- ``plateau``: multiplied by ``lr_decay`` when the monitored loss has not
  improved by ``tol`` for ``lr_patience`` epochs (PyTorch's ReduceLROnPlateau;
  scikit-learn's "adaptive" is this with lr_decay = 0.2, and is accepted as an alias).
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "plateau", "adaptive")
MIN_LEARNING_RATE = 1e-7


class Schedule:
    def __init__(self, kind, lr_initial, *, max_iter, lr_decay=0.1, lr_step_epochs=30, lr_patience=5, tol=1e-4):
        if kind == "adaptive":
            kind = "plateau"
        self.kind = kind
        self.lr_initial = lr_initial
        self.max_iter = max_iter
        self.lr_decay = lr_decay
        self.lr_step_epochs = lr_step_epochs
        self.lr_patience = lr_patience
        self.tol = tol
        self.lr = lr_initial
        self._best = math.inf
        self._bad_epochs = 0

    def rate(self, epoch):
        """The learning rate for epoch ``epoch`` (0-based)."""
        if self.kind == "step":
            self.lr = self.lr_initial * self.lr_decay ** (epoch // self.lr_step_epochs)
        elif self.kind == "cosine":
            t = min(epoch, self.max_iter) / max(self.max_iter, 1)
            self.lr = self.lr_initial * 0.5 * (1.0 + math.cos(math.pi * t))
        return max(self.lr, MIN_LEARNING_RATE) if self.kind != "cosine" else self.lr

    def observe(self, loss):
        """Tell the schedule the epoch's monitored loss (lower is better)."""
        if self.kind != "plateau":
            return
        if loss < self._best - self.tol:
            self._best = loss
            self._bad_epochs = 0
        else:
            self._bad_epochs += 1
            if self._bad_epochs >= self.lr_patience:
                self.lr = max(self.lr * self.lr_decay, MIN_LEARNING_RATE)
                self._bad_epochs = 0
