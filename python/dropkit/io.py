"""Saving and loading fitted estimators: one file, no pickle.

The file is

    b"DROPKIT\\x00"                         8 bytes of magic
    header length                           little-endian uint64
    header                                  UTF-8 JSON, padded with spaces
    array bytes                             raw little-endian, at the header's offsets

and the header is

    {"format": "dropkit", "format_version": 1, "dropkit_version": "0.1.0",
     "class": "MLPClassifier" | "MLPRegressor",
     "meta": {...},                         parameters, fitted attributes, network configuration
     "metadata": {...},                     optional, the caller's own (see :func:`save`)
     "arrays": {name: {"dtype": "float32", "shape": [n], "offset": int, "nbytes": int}},
     "crc32": int}

Offsets count from the first byte after the header. ``crc32`` is zlib's CRC-32
of the header without its ``crc32`` key, serialised canonically
(``json.dumps(header, sort_keys=True, separators=(",", ":"))``), followed by
the array bytes. Because it covers the parsed header, damage anywhere in the
file is an error on load and can never load as a different model.

JSON has no tuples, non-finite floats or arrays, so the header spells them as
``{"__tuple__": [...]}``, ``{"__float__": "inf"}`` and ``{"__ndarray__":
{"dtype": ..., "shape": [...], "values": [...]}}``, and activity penalties
as ``{"__penalty__": {"kind": ..., "alpha": ...}}``; arrays hold class
labels and feature names, which may be numbers, strings or booleans (never
arbitrary objects). Loading parses JSON and copies bytes into numpy arrays: it
never unpickles or evaluates anything, and it checks every size against the
file before it allocates.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import secrets
import struct
import zlib

import numpy as np

from .penalties import ACTIVITY_PENALTIES, penalty_from_spec

MAGIC = b"DROPKIT\x00"
FORMAT_VERSION = 1
_PREAMBLE = len(MAGIC) + 8
_ALIGN = 64  # the array bytes start on a 64-byte boundary, each array on an 8-byte one
_ARRAY_DTYPES = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "bool")
_LABEL_KINDS = "biufU"  # dtype kinds a header array may have, beside object arrays of str/int/float/bool


def _classes():
    from .estimators import MLPClassifier, MLPRegressor
    return {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}


# ---------------------------------------------------------------------- save

def save(estimator, path, metadata=None):
    """Write a fitted MLPClassifier or MLPRegressor to ``path``.

    ``metadata`` is an optional dict of JSON values (str, numbers, bools,
    None, lists, dicts) kept in the header beside the model, for example the
    column names a model was trained on; ``load(path, return_metadata=True)``
    gives it back. The file is written to a temporary file in the same
    directory and renamed over ``path``, so an error never leaves a partial
    file or destroys an existing one. Raises NotFittedError for an unfitted
    estimator and TypeError for values that cannot be stored (class labels
    that are not str, int, float or bool).
    """
    classes = _classes()
    name = next((n for n, cls in classes.items() if isinstance(estimator, cls)), None)
    if name is None:
        raise TypeError(f"estimator: expected a dropkit MLPClassifier or MLPRegressor, got {type(estimator).__name__}")
    meta, arrays = estimator._get_state()  # raises NotFittedError
    header = {"format": "dropkit", "format_version": FORMAT_VERSION, "dropkit_version": _version(),
              "class": name, "meta": _to_json(meta, "")}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
        header["metadata"] = _to_json(metadata, "metadata")
    _write_file(path, header, arrays)


def _version():
    from . import __version__
    return __version__


def _write_file(path, header, arrays):
    """Lay out ``arrays`` after ``header`` (a dict without "arrays" and
    "crc32"), checksum, and write atomically."""
    path = os.fspath(path)
    table, blobs, offset = {}, [], 0
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.name not in _ARRAY_DTYPES:
            raise TypeError(f"arrays[{key!r}]: cannot store dtype {arr.dtype}")
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        pad = -offset % 8
        blobs.append(b"\x00" * pad)
        offset += pad
        table[key] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset, "nbytes": len(data)}
        blobs.append(data)
        offset += len(data)
    header = dict(header, arrays=table)
    crc = zlib.crc32(_canonical(header))
    for blob in blobs:
        crc = zlib.crc32(blob, crc)
    header["crc32"] = crc
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")
    text += b" " * (-(_PREAMBLE + len(text)) % _ALIGN)

    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base[:200]}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never follow or reuse someone else's file; mode 0o666 lets the umask decide, as open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(text)) + text)
            for blob in blobs:
                _write_array(f, blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_array(f, blob):
    # one function, so that the tests can make a write fail half-way (a full disk)
    f.write(blob)


def _canonical(header):
    return json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _to_json(value, where):
    """value as JSON types, with tuples, non-finite floats and small arrays tagged."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        return _to_json(value.item(), where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str) or key.startswith("__"):
                raise TypeError(f"{where}: cannot store the dict key {key!r} (keys are strings not starting with '__')")
            out[key] = _to_json(v, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _array_to_json(value, where)}
    if isinstance(value, ACTIVITY_PENALTIES):
        return {"__penalty__": value.spec()}
    raise TypeError(f"{where}: cannot store a value of type {type(value).__name__}")


def _array_to_json(arr, where):
    name = where.rsplit(".", 1)[-1]
    if arr.dtype.kind in _LABEL_KINDS:
        values = _to_json(arr.tolist(), where)
    elif arr.dtype == object and arr.ndim == 1:
        values = []
        for v in arr:
            if isinstance(v, np.generic) and not isinstance(v, (np.str_, np.bytes_, np.void)):
                v = v.item()
            if not isinstance(v, (str, bool, numbers.Integral, numbers.Real)):
                raise TypeError(f"{name}: cannot save a value of type {type(v).__name__} ({v!r}); "
                                "labels and names must be str, int, float or bool")
            values.append(_to_json(str(v) if isinstance(v, str) else v, where))
    else:
        raise TypeError(f"{name}: cannot save an array of dtype {arr.dtype}; "
                        "labels and names must be str, int, float or bool")
    return {"dtype": "object" if arr.dtype == object else arr.dtype.str, "shape": list(arr.shape), "values": values}


# ---------------------------------------------------------------------- load

def load(path, return_metadata=False):
    """Read a model written by :func:`save` (or ``model.save(path)``).

    Returns the fitted estimator, or ``(estimator, metadata)`` with
    ``return_metadata=True`` (metadata is None when none was saved). Raises
    ValueError naming the problem for a file that is not a dropkit model, is
    truncated or corrupted, comes from a newer format version, or describes
    arrays that do not match the model's configuration.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        preamble = f.read(_PREAMBLE)
        if preamble[:len(MAGIC)] != MAGIC[:len(preamble)] or not preamble:
            raise ValueError(f"{path}: not a dropkit model file (wrong magic bytes)")
        if len(preamble) < _PREAMBLE:
            raise ValueError(f"{path}: truncated: {size} bytes, shorter than the {_PREAMBLE}-byte preamble")
        (header_len,) = struct.unpack("<Q", preamble[len(MAGIC):])
        if header_len > size - _PREAMBLE:
            raise ValueError(f"{path}: truncated: the header needs {header_len} bytes but the file holds "
                             f"{size - _PREAMBLE} after the preamble")
        header = _parse_header(f.read(header_len), path)
        data_size = size - _PREAMBLE - header_len
        table = _check_table(header.get("arrays"), data_size, path)
        data = f.read(data_size)
        if len(data) != data_size:
            raise ValueError(f"{path}: the file changed while it was read")
    crc = header.pop("crc32", None)
    if isinstance(crc, bool) or not isinstance(crc, int):
        raise ValueError(f"{path}: the header has no valid crc32 checksum")
    if zlib.crc32(data, zlib.crc32(_canonical(header))) != crc:
        raise ValueError(f"{path}: checksum mismatch: the file is corrupted")

    arrays = {}
    for key, (dtype, shape, offset, nbytes) in table.items():
        raw = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=nbytes // np.dtype(dtype).itemsize,
                            offset=offset)
        arrays[key] = raw.reshape(shape).astype(dtype)  # native byte order, writable

    name = header.get("class")
    classes = _classes()
    if name not in classes:
        raise ValueError(f"{path}: unknown model class {name!r}; expected one of {', '.join(classes)}")
    try:
        meta = _from_json(header["meta"], "meta", header_bytes=header_len)
        metadata = _from_json(header["metadata"], "metadata", header_bytes=header_len) if "metadata" in header else None
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: invalid header: {_describe(exc)}") from None
    estimator = _build(classes[name](), meta, arrays, path)
    return (estimator, metadata) if return_metadata else estimator


def _describe(exc):
    return f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)


def _parse_header(raw, path):
    def refuse_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != "dropkit":
        raise ValueError(f"{path}: the header does not describe a dropkit model")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this dropkit ({_version()}) reads "
                         f"(up to {FORMAT_VERSION}); upgrade dropkit to load it")
    return header


def _check_table(table, data_size, path):
    """Validate the array table against the bytes after the header."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: the header has no array table")
    checked, spans = {}, []
    for key, entry in table.items():
        where = f"{path}: array {key!r}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an entry with dtype, shape, offset and nbytes")
        dtype, shape, offset, nbytes = (entry.get(k) for k in ("dtype", "shape", "offset", "nbytes"))
        if dtype not in _ARRAY_DTYPES:
            raise ValueError(f"{where}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise ValueError(f"{where}: invalid shape {shape!r}")
        if not (_is_count(offset) and _is_count(nbytes)):
            raise ValueError(f"{where}: invalid offset {offset!r} or nbytes {nbytes!r}")
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes != expected:
            raise ValueError(f"{where}: nbytes {nbytes} does not match shape {shape} of {dtype} ({expected} bytes)")
        if offset + nbytes > data_size:
            raise ValueError(f"{path}: truncated: array {key!r} needs bytes {offset}..{offset + nbytes} after the "
                             f"header but the file holds {data_size}")
        checked[key] = (dtype, tuple(shape), offset, nbytes)
        spans.append((offset, offset + nbytes, key))
    spans.sort()
    end = 0
    for start, stop, key in spans:
        if start < end:
            raise ValueError(f"{path}: array {key!r} overlaps the array before it")
        end = stop
    if end != data_size:
        raise ValueError(f"{path}: {data_size - end} unexpected bytes after the last array")
    return checked


def _is_count(n):
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _from_json(value, where, header_bytes):
    """Undo :func:`_to_json`."""
    if isinstance(value, list):
        return [_from_json(v, f"{where}[{i}]", header_bytes) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == "__tuple__":
            if not isinstance(inner, list):
                raise ValueError(f"{where}: a tuple must hold a list")
            return tuple(_from_json(v, f"{where}[{i}]", header_bytes) for i, v in enumerate(inner))
        if tag == "__float__":
            if inner not in ("inf", "-inf", "nan"):
                raise ValueError(f"{where}: invalid float {inner!r}")
            return float(inner)
        if tag == "__ndarray__":
            return _array_from_json(inner, where, header_bytes)
        if tag == "__penalty__":
            if not isinstance(inner, dict):
                raise ValueError(f"{where}: a penalty must hold its description")
            try:
                return penalty_from_spec(inner)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{where}: invalid penalty {inner!r}") from exc
    return {k: _from_json(v, f"{where}.{k}", header_bytes) for k, v in value.items()}


def _array_from_json(spec, where, header_bytes):
    if not isinstance(spec, dict) or not {"dtype", "shape", "values"} <= set(spec):
        raise ValueError(f"{where}: an array needs dtype, shape and values")
    shape = spec["shape"]
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise ValueError(f"{where}: invalid shape {shape!r}")
    values = _from_json(spec["values"], where, header_bytes)
    if spec["dtype"] == "object":
        if len(shape) != 1 or not isinstance(values, list) or len(values) != shape[0]:
            raise ValueError(f"{where}: an object array must be 1-d and match its shape")
        for v in values:
            if not isinstance(v, (str, bool, int, float)):
                raise ValueError(f"{where}: labels must be str, int, float or bool, got {type(v).__name__}")
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    try:
        dtype = np.dtype(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _LABEL_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{where}: unsupported dtype {spec['dtype']!r}")
    if math.prod(shape) * dtype.itemsize > 16 * header_bytes + 2**20:
        raise ValueError(f"{where}: an array of shape {shape} and dtype {dtype} is far larger than the header")
    leaf_types = {"U": (str,), "b": (bool,), "i": (int,), "u": (int,), "f": (int, float)}[dtype.kind]
    for v in _leaves(values, len(shape)):
        if not isinstance(v, leaf_types) or (dtype.kind != "b" and isinstance(v, bool)):
            raise ValueError(f"{where}: a value of type {type(v).__name__} in an array of dtype {dtype}")
    try:
        arr = np.array(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{where}: values do not fit dtype {dtype} ({exc})") from None
    if list(arr.shape) != shape:
        raise ValueError(f"{where}: values of shape {list(arr.shape)} do not match the recorded shape {shape}")
    if dtype.kind == "U" and arr.tolist() != values:
        raise ValueError(f"{where}: dtype {dtype} is too narrow for its strings")
    return arr


def _leaves(values, depth):
    if depth == 0:
        yield values
    elif isinstance(values, list):
        for v in values:
            yield from _leaves(v, depth - 1)
    else:
        raise ValueError(f"expected nested lists {depth} deep, got {type(values).__name__}")


# ------------------------------------------------------- rebuild and check

def _build(estimator, meta, arrays, path):
    """Restore the estimator, refusing configurations that disagree with the arrays."""
    try:
        config = meta["network"]
        n_params = _param_count(config)
        for key in ("params", "opt_m", "opt_v"):
            if key not in arrays:
                raise ValueError(f"missing array {key!r}")
            if arrays[key].shape != (n_params,) or arrays[key].dtype != np.float32:
                raise ValueError(f"array {key!r} has shape {arrays[key].shape} ({arrays[key].dtype}) but the network "
                                 f"configuration needs ({n_params},) float32")
        extra = set(arrays) - {"params", "opt_m", "opt_v"}
        if extra:
            raise ValueError(f"unexpected arrays {sorted(extra)}")
        estimator._set_state(meta, arrays)
        _check_fitted_state(estimator, meta)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ValueError(f"{path}: inconsistent model: {_describe(exc)}") from None
    return estimator


def _param_count(config):
    """Parameters of the network a configuration describes, computed before
    anything is allocated (the engine's layout: W, b, then prelu slopes)."""
    from .network import parse_activation
    n_in = config["n_inputs"]
    if not _is_count(n_in) or n_in < 1:
        raise ValueError(f"network n_inputs {n_in!r} is not a positive integer")
    if not isinstance(config["layers"], list) or not config["layers"]:
        raise ValueError("the network has no layers")
    total = 0
    for i, layer in enumerate(config["layers"]):
        units = layer["units"]
        if not _is_count(units) or units < 1:
            raise ValueError(f"layer {i} units {units!r} is not a positive integer")
        act = layer["activation"]
        act, param = parse_activation(tuple(act) if isinstance(act, list) else act, f"layer {i} activation")
        width = units * (param if act == "maxout" else 1)
        total += n_in * width + width + (units if act == "prelu" else 0)
        n_in = units
    return total


def _check_fitted_state(est, meta):
    from .estimators import MLPClassifier
    net = est._network
    est._validate_hyperparameters()
    if est.n_features_in_ != net.n_inputs:
        raise ValueError(f"n_features_in_ is {est.n_features_in_} but the network has {net.n_inputs} inputs")
    names = getattr(est, "feature_names_in_", None)
    if names is not None and (names.dtype != object or names.shape != (net.n_inputs,)
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"feature_names_in_ must be {net.n_inputs} strings")
    for key in ("n_iter_", "t_", "_epochs_done", "_no_improvement_count"):
        if not _is_count(getattr(est, key)):
            raise ValueError(f"{key} must be a non-negative integer")
    if not isinstance(est.loss_curve_, list) or not isinstance(est.history_, dict):
        raise ValueError("loss_curve_ must be a list and history_ a dict")
    if isinstance(est, MLPClassifier):
        classes = est.classes_
        if not isinstance(classes, np.ndarray) or classes.ndim != 1:
            raise ValueError("classes_ must be a 1-d array")
        y_type = est._binarizer.y_type_
        expected = {("softmax_ce", "multiclass"): len(classes), ("binary_ce", "binary"): 1,
                    ("binary_ce", "multilabel-indicator"): len(classes)}.get((est._loss, y_type))
        if expected is None:
            raise ValueError(f"loss {est._loss!r} with targets of type {y_type!r} is not a classifier dropkit writes")
        if y_type == "binary" and len(classes) != 2:
            raise ValueError(f"a binary classifier needs 2 classes, got {len(classes)}")
        if net.n_outputs != expected:
            raise ValueError(f"{len(classes)} classes ({y_type}) need {expected} outputs, the network has "
                             f"{net.n_outputs}")
        if est.out_activation_ != ("softmax" if est._loss == "softmax_ce" else "logistic"):
            raise ValueError(f"out_activation_ {est.out_activation_!r} does not match the loss {est._loss!r}")
    else:
        if meta["loss"] != "squared":
            raise ValueError(f"loss {meta['loss']!r} is not a regressor's")
        if est._y_ndim not in (1, 2) or (est._y_ndim == 1 and net.n_outputs != 1):
            raise ValueError(f"targets with {est._y_ndim!r} dimensions do not fit {net.n_outputs} outputs")
