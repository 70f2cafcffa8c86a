"""What the examples share: the data, repeated runs over seeds, markdown
tables and the figures. Not part of the dropkit package.

Every example trains on scikit-learn's handwritten digits (8x8 images, 10
classes, shipped with scikit-learn) as ``dropkit.datasets.load_default``
splits them: 1347 training and 450 test images, stratified, pixels in [0, 1].
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from dropkit.datasets import load_default

# The examples stop at a fixed number of epochs on purpose; scikit-learn's
# warning about it would only clutter their output.
warnings.simplefilter("ignore", ConvergenceWarning)

SEEDS = (0, 1, 2)
FIGURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "figures")


# ----------------------------------------------------------------------------
# data


def digits(n_train=None, random_state=0):
    """(X_train, X_test, y_train, y_test): the default digits split; with
    ``n_train``, a stratified subset of that many training images (the test
    set stays the full 450)."""
    X_train, X_test, y_train, y_test = load_default()
    if n_train is not None:
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=n_train, stratify=y_train,
                                                  random_state=random_state)
    return X_train, X_test, y_train, y_test


def fixed_epochs(n):
    """Estimator parameters to train exactly n epochs. By default fit also
    stops after n_iter_no_change (10) epochs in which the training loss did not
    improve by tol, as scikit-learn does; with dropout the training loss is
    noisy and that rule stops after a few dozen epochs, long before the
    network has finished learning."""
    return dict(max_iter=n, n_iter_no_change=n)


# ----------------------------------------------------------------------------
# numbers and tables


def spread(values, digits=3):
    """Mean over seeds with the smallest and largest value: '0.967 (0.962-0.971)'."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}-{values.max():.{digits}f})"


def cross_entropy(y, proba, classes):
    """Mean -log p(true class). scikit-learn's log_loss warns when rows sum to
    1 only to float32 precision, as Monte Carlo averages computed in float32 do."""
    column = np.searchsorted(classes, y)
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), column], 1e-15, None))))


def percent(values, digits=1):
    """The mean over seeds as a percentage: '69.5%'."""
    return f"{100 * np.mean(values):.{digits}f}%"


def markdown_table(headers, rows):
    """A pipe table; numbers are right-aligned, text left-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(_looks_numeric(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


def _looks_numeric(text):
    head = text.split(" ")[0].rstrip("%x")
    try:
        float(head)
        return True
    except ValueError:
        return False


def print_table(headers, rows):
    print(markdown_table(headers, rows))
    print()


def note(text):
    """A line of prose for the output (and the doc made from it)."""
    print(text)
    print()


# ----------------------------------------------------------------------------
# figures


def save_figure(name, draw):
    """Call ``draw(plt)`` to build a figure and save it as docs/figures/<name>.png.

    Without matplotlib the figure is skipped with a note on stderr; returns the
    path written or None. Messages go to stderr so that stdout holds the tables.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: skipping the figure {name}.png (pip install matplotlib)",
              file=sys.stderr)
        return None
    os.makedirs(FIGURES_DIR, exist_ok=True)
    path = os.path.join(FIGURES_DIR, f"{name}.png")
    with plt.rc_context({"figure.dpi": 100, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}):
        fig = draw(plt)
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    print(f"figure: {os.path.relpath(path)}", file=sys.stderr)
    return path
