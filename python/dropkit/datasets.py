"""Data for the command line and the examples: the embedded default data set
and a small CSV reader (the standard library's csv module; no pandas)."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch


def load_default():
    """scikit-learn's handwritten digits (1797 8x8 images, 10 classes; shipped
    with scikit-learn, nothing is downloaded), pixels scaled to [0, 1], split
    into 75% train and 25% test, stratified, with random_state 0.

    Returns ``(X_train, X_test, y_train, y_test)``; X is float32, y int64.
    """
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return tuple(train_test_split(X, y.astype(np.int64), test_size=0.25, stratify=y, random_state=0))


def load_csv(path, target=None, return_X_y=False):
    """Read a CSV file with a header row.

    Every column except ``target`` is a numeric feature, read as float64
    (empty cells, text, NaN and infinity are errors). The target column is
    kept as labels: int64 if every value is an integer, float64 if every
    value is a number, strings otherwise.

    Returns a Bunch with ``data`` (n_samples, n_features), ``target`` (None
    without a target column), ``feature_names`` and ``target_name``, or
    ``(data, target)`` with ``return_X_y=True``. Raises ValueError naming the
    file, line and column for an empty file, a missing target column, a
    row with the wrong number of fields, or a non-numeric feature value.
    """
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty (expected a header row)")
        header = [name.strip() for name in header]
        seen = set()
        for name in header:
            if name in seen:
                raise ValueError(f"{path}: column {name!r} appears twice in the header")
            seen.add(name)
        if target is not None and target not in header:
            raise ValueError(f"{path}: no column {target!r}; the columns are {_column_list(header)}")
        target_index = header.index(target) if target is not None else None
        feature_names = [name for i, name in enumerate(header) if i != target_index]
        if not feature_names:
            raise ValueError(f"{path}: no feature columns besides the target {target!r}")

        features, labels = [], []
        for row in rows:
            line = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: expected {len(header)} fields as in the header, got {len(row)}")
            values = []
            for i, cell in enumerate(row):
                if i == target_index:
                    if not cell.strip():
                        raise ValueError(f"{path}, line {line}: empty value in the target column {target!r}")
                    labels.append(cell.strip())
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise ValueError(f"{path}, line {line}, column {header[i]!r}: expected a number, got {cell!r}")
                values.append(value)
            features.append(values)
    if not features:
        raise ValueError(f"{path}: no data rows after the header")
    X = np.array(features, dtype=np.float64)
    y = _labels(labels) if target is not None else None
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, feature_names=feature_names, target_name=target)


def _labels(values):
    """Integers, else numbers, else the strings themselves."""
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
        if np.isfinite(numbers).all():
            return numbers
    except ValueError:
        pass
    return np.array(values, dtype=str)


def _column_list(header, limit=20):
    names = ", ".join(repr(n) for n in header[:limit])
    return names + (f", ... ({len(header)} in all)" if len(header) > limit else "")
