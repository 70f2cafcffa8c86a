"""Saving and loading: round trips for every kind of model, partial_fit after
loading, a file written by format version 1, and damaged files.

The helpers ``read_parts`` / ``write_parts`` implement the documented layout
(magic, uint64 header length, JSON header, array bytes, CRC-32 over the
canonical header and the bytes) independently of dropkit.io, so the tests can
craft headers that are well-formed but lie."""
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

import dropkit
from dropkit import MLPClassifier, MLPRegressor
import dropkit.io as dkio

DATA = Path(__file__).parent / "data"


def digits(n=300):
    X, y = load_digits(return_X_y=True)
    return (X[:n] / 16.0), y[:n]


def blobs(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng


def assert_same_model(a, b, X, timed=True):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    pa, pb = a.predict(X), b.predict(X)
    assert pa.dtype == pb.dtype and np.array_equal(pa, pb)
    if hasattr(a, "predict_proba"):
        assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
        assert a.classes_.dtype == b.classes_.dtype and np.array_equal(a.classes_, b.classes_)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(wa, wb)
    for key in ("n_iter_", "t_", "n_features_in_", "loss_curve_", "history_", "out_activation_",
                "validation_scores_", "best_validation_score_", "best_loss_"):
        assert getattr(a, key) == getattr(b, key) or not timed and key == "history_", key
    if not timed:  # the epochs after loading ran separately and took their own time
        assert {k: v for k, v in a.history_.items() if k != "time"} == \
               {k: v for k, v in b.history_.items() if k != "time"}


def round_trip(model, tmp_path, name="model.dkm"):
    path = tmp_path / name
    model.save(path)
    return dropkit.load(path)


# --------------------------------------------------------------- round trips

def classifier_cases():
    X, rng = blobs()
    words = np.array(["cat", "dog", "emu", "yak"])
    return {
        "binary": (X, (X[:, 0] > 0).astype(int)),
        "binary-bool": (X, X[:, 0] > 0),
        "binary-strings": (X, np.where(X[:, 1] > 0, "spam", "ham")),
        "multiclass-strings": (X, words[rng.integers(0, 4, len(X))]),
        "multiclass-unicode": (X, np.array(["café", "naïve", "日本", "Ωmega"])[rng.integers(0, 4, len(X))]),
        "multiclass-object-strings": (X, words[rng.integers(0, 4, len(X))].astype(object)),
        "multiclass-floats": (X, rng.integers(1, 4, len(X)) * 1.0),
        "multiclass-negative-ints": (X, rng.integers(-3, 0, len(X))),
        "multilabel": (X, (X[:, :3] > 0).astype(int)),
    }


@pytest.mark.parametrize("case", list(classifier_cases()))
def test_classifier_round_trip(case, tmp_path):
    X, y = classifier_cases()[case]
    model = MLPClassifier((8,), max_iter=5, random_state=0, dropout=0.2).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert_same_model(model, loaded, X)


@pytest.mark.parametrize("y_ndim", [1, 2])
def test_regressor_round_trip(y_ndim, tmp_path):
    X, rng = blobs()
    y = X[:, :2] @ [[1.0, -2.0], [0.5, 3.0]] if y_ndim == 2 else X[:, 0] - X[:, 1]
    model = MLPRegressor((8, 4), max_iter=5, random_state=0).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert loaded.predict(X).shape == y.shape
    assert_same_model(model, loaded, X)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu", ("leaky_relu", 0.1),
                                        ("prelu", 0.25), ("elu", 0.8), ("maxout", 3)])
def test_every_activation_round_trips(activation, tmp_path):
    X, y = digits(200)
    model = MLPClassifier((12, 6), activation=activation, max_iter=3, random_state=1).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert loaded.activation == activation  # a tuple stays a tuple
    assert_same_model(model, loaded, X)


def test_per_layer_settings_and_standard_dropout_round_trip(tmp_path):
    X, y = digits(200)
    model = MLPClassifier([16, 8], activation=["relu", ("maxout", 2)], dropout=[0.5, 0.25], input_dropout=0.2,
                          dropout_mode="standard", l2=[1e-3, 1e-4, 0.0], solver="sgd", learning_rate="cosine",
                          max_iter=4, random_state=2).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert loaded.get_params()["hidden_layer_sizes"] == [16, 8]  # lists stay lists
    assert_same_model(model, loaded, X)


def test_early_stopping_model_round_trips(tmp_path):
    X, y = digits(400)
    model = MLPClassifier((16,), early_stopping=True, max_iter=8, random_state=0).fit(X, y)
    assert model.best_loss_ is None and np.isfinite(model.best_validation_score_)
    loaded = round_trip(model, tmp_path)
    assert_same_model(model, loaded, X)


def test_non_finite_values_round_trip(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    model.best_loss_ = np.inf
    model.history_["val_loss"][0] = float("nan")
    loaded = round_trip(model, tmp_path)
    assert loaded.best_loss_ == np.inf and np.isnan(loaded.history_["val_loss"][0])


def test_feature_names_round_trip(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    # scikit-learn sets this when fitting on a DataFrame (pandas is not a test dependency)
    model.feature_names_in_ = np.array([f"pixel{i}" for i in range(64)], dtype=object)
    loaded = round_trip(model, tmp_path)
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == list(model.feature_names_in_)


def test_random_state_generator_is_saved_as_none(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=np.random.RandomState(0)).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert loaded.random_state is None
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_metadata_round_trips(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    metadata = {"feature_names": ["a", "b"], "target": "digit", "note": None, "scale": 1.5}
    dkio.save(model, tmp_path / "m.dkm", metadata=metadata)
    loaded, got = dkio.load(tmp_path / "m.dkm", return_metadata=True)
    assert got == metadata
    assert dkio.load(tmp_path / "m.dkm", return_metadata=True)[1] == metadata
    model.save(tmp_path / "plain.dkm")
    assert dkio.load(tmp_path / "plain.dkm", return_metadata=True)[1] is None


def test_pickle_round_trip():
    X, y = digits(200)
    for model in (MLPClassifier((8,), activation=("prelu", 0.25), max_iter=3, random_state=0).fit(X, y),
                  MLPRegressor((8,), max_iter=3, random_state=0).fit(X, y.astype(float))):
        copy = pickle.loads(pickle.dumps(model))
        assert_same_model(model, copy, X)


# ------------------------------------------------- continuing after loading

@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_after_load_matches_the_original(kind, tmp_path):
    X, y = digits(300)
    if kind == "classifier":
        model = MLPClassifier((16,), dropout=0.3, input_dropout=0.1, max_iter=3, random_state=0).fit(X, y)
    else:
        y = y.astype(float)
        model = MLPRegressor((16,), activation=("maxout", 2), dropout=0.3, max_iter=3, random_state=0,
                             solver="rmsprop").fit(X, y)
    loaded = round_trip(model, tmp_path)
    before = loaded.coefs_[0].copy()
    for _ in range(2):
        model.partial_fit(X, y)
        loaded.partial_fit(X, y)
    assert not np.array_equal(loaded.coefs_[0], before)
    assert loaded.n_iter_ == model.n_iter_ == 5
    assert loaded.loss_curve_ == model.loss_curve_
    assert_same_model(model, loaded, X, timed=False)


def test_partial_fit_after_pickle_matches_the_original():
    X, y = digits(300)
    model = MLPClassifier((16,), dropout=0.3, max_iter=2, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    model.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert np.array_equal(model.predict_proba(X), copy.predict_proba(X))


def test_loaded_model_can_be_refit(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    loaded = round_trip(model, tmp_path)
    assert np.array_equal(loaded.fit(X, y).predict_proba(X), MLPClassifier((8,), max_iter=2, random_state=0)
                          .fit(X, y).predict_proba(X))


# ------------------------------------------------------------ the fixture

def test_reads_a_version_1_file():
    """tests/data/model_v1.dkm was written by format version 1 with

        from sklearn.datasets import load_digits
        import dropkit
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        dropkit.MLPClassifier(hidden_layer_sizes=(16,), batch_size=32, max_iter=5,
                              random_state=0).fit(X, y).save("tests/data/model_v1.dkm")

    The expected values below were computed once from that model; a change
    that stops this file loading, or loads it differently, breaks saved models.
    """
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    model = dropkit.load(DATA / "model_v1.dkm")
    assert isinstance(model, MLPClassifier)
    assert model.get_params()["hidden_layer_sizes"] == (16,) and model.batch_size == 32
    assert model.n_iter_ == 5 and model.n_features_in_ == 64
    assert model.classes_.tolist() == list(range(10))
    assert model.predict(X[:12]).tolist() == [0, 1, 2, 3, 4, 9, 6, 7, 8, 9, 0, 1]
    expected = [[0.71194164, 0.00389616, 0.00794078, 0.02204194, 0.04593511,
                 0.09817325, 0.01122904, 0.00682095, 0.02854518, 0.06347596],
                [0.00561869, 0.52256501, 0.08592444, 0.07394376, 0.02791546,
                 0.01927673, 0.04737646, 0.07548784, 0.12384424, 0.01804735]]
    np.testing.assert_allclose(model.predict_proba(X[:2]), expected, atol=1e-6)
    model.partial_fit(X, y)
    assert model.n_iter_ == 6


# ---------------------------------------------------------- saving errors

def test_saving_an_unfitted_model_raises_not_fitted(tmp_path):
    with pytest.raises(NotFittedError):
        MLPClassifier().save(tmp_path / "m.dkm")
    with pytest.raises(NotFittedError):
        dkio.save(MLPRegressor(), tmp_path / "m.dkm")
    assert not os.listdir(tmp_path)


def test_saving_something_else_raises_type_error(tmp_path):
    from sklearn.linear_model import LogisticRegression
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor"):
        dkio.save(LogisticRegression(), tmp_path / "m.dkm")


def test_labels_that_are_not_plain_values_are_refused_and_the_old_file_survives(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    path = tmp_path / "m.dkm"
    model.save(path)
    before = path.read_bytes()
    # scikit-learn refuses such labels in fit; a model can still end up with them
    model.classes_ = model._binarizer.classes_ = np.array([object()] * 10, dtype=object)
    with pytest.raises(TypeError, match="classes_.*str, int, float or bool"):
        model.save(path)
    model.classes_ = np.array([b"x"] * 10)
    with pytest.raises(TypeError, match="classes_"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.dkm"]


def test_a_failed_write_leaves_the_existing_file_and_no_temporary(tmp_path, monkeypatch):
    X, y = digits(200)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    path = tmp_path / "m.dkm"
    model.save(path)
    before = path.read_bytes()

    def disk_full(f, blob):
        f.write(blob[: len(blob) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dkio, "_write_array", disk_full)
    with pytest.raises(OSError, match="No space"):
        MLPClassifier((4,), max_iter=1, random_state=0).fit(X, y).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.dkm"]


def test_save_accepts_str_paths_and_overwrites(tmp_path):
    X, y = digits(200)
    path = str(tmp_path / "m.dkm")
    MLPClassifier((4,), max_iter=1, random_state=0).fit(X, y).save(path)
    model = MLPClassifier((8,), max_iter=1, random_state=0).fit(X, y)
    model.save(path)
    assert dropkit.load(path).coefs_[0].shape == (64, 8)


# ----------------------------------------------------------- damaged files

def read_parts(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[8:16])
    return json.loads(raw[16:16 + n]), raw[16 + n:]


def write_parts(path, header, data, fix_crc=True):
    header = dict(header)
    if fix_crc:
        header.pop("crc32", None)
        canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        header["crc32"] = zlib.crc32(data, zlib.crc32(canonical))
    text = json.dumps(header).encode()
    Path(path).write_bytes(b"DROPKIT\x00" + struct.pack("<Q", len(text)) + text + data)


@pytest.fixture
def saved(tmp_path):
    X, y = digits(200)
    model = MLPClassifier((8,), activation=("prelu", 0.25), max_iter=2, random_state=0).fit(X, y)
    path = tmp_path / "good.dkm"
    model.save(path)
    return path, model, X


def load_fails(path, match=None):
    with pytest.raises(ValueError, match=match) as info:
        dropkit.load(path)
    return str(info.value)


def test_the_helpers_reproduce_a_loadable_file(saved, tmp_path):
    path, model, X = saved
    write_parts(tmp_path / "copy.dkm", *read_parts(path))
    assert np.array_equal(dropkit.load(tmp_path / "copy.dkm").predict_proba(X), model.predict_proba(X))


def test_truncated_files(saved, tmp_path):
    path, _, _ = saved
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[8:16])
    cuts = {0, 1, 7, 8, 12, 15, 16, 17, 16 + n // 2, 16 + n - 1, 16 + n, 16 + n + 1, 16 + n + 100,
            (16 + n + len(raw)) // 2, len(raw) - 4, len(raw) - 1}
    for cut in sorted(cuts):
        (tmp_path / "cut.dkm").write_bytes(raw[:cut])
        message = load_fails(tmp_path / "cut.dkm")
        assert "truncated" in message or "magic" in message or "valid JSON" in message, (cut, message)


def test_every_flipped_byte_is_an_error_or_changes_nothing(saved, tmp_path):
    """A flipped bit in the magic, the length, the header or the data never
    loads as a different model (the only harmless flips, such as 1e-08 ->
    1E-08, mean the same value) and never crashes."""
    path, model, X = saved
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[8:16])
    expected = model.predict_proba(X)
    positions = list(range(16 + n)) + list(range(16 + n, len(raw), 97))
    harmless = 0
    for pos in positions:
        for mask in (0x01, 0x20) if pos < 16 + n and pos % 3 == 0 else (0x01,):
            damaged = bytearray(raw)
            damaged[pos] ^= mask
            (tmp_path / "flip.dkm").write_bytes(bytes(damaged))
            try:
                loaded = dropkit.load(tmp_path / "flip.dkm")
            except ValueError:
                continue
            harmless += 1
            assert np.array_equal(loaded.predict_proba(X), expected), pos
    assert harmless < 20


def test_wrong_magic(saved, tmp_path):
    path, _, _ = saved
    raw = path.read_bytes()
    (tmp_path / "bad.dkm").write_bytes(b"PK\x03\x04" + raw[4:])
    load_fails(tmp_path / "bad.dkm", "not a dropkit model")
    (tmp_path / "empty.dkm").write_bytes(b"")
    load_fails(tmp_path / "empty.dkm", "not a dropkit model")
    (tmp_path / "text.dkm").write_text("hello")
    load_fails(tmp_path / "text.dkm", "not a dropkit model")


def test_bad_json_header(saved, tmp_path):
    path, _, _ = saved
    _, data = read_parts(path)
    for text in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"format": "other"}', b"{" * 100000,
                 b'{"format": "dropkit", "format_version": 1, "x": NaN}'):
        (tmp_path / "bad.dkm").write_bytes(b"DROPKIT\x00" + struct.pack("<Q", len(text)) + text + data)
        load_fails(tmp_path / "bad.dkm")


def test_header_length_beyond_the_file(saved, tmp_path):
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    for n in (2**64 - 1, 2**40, len(raw)):
        raw[8:16] = struct.pack("<Q", n)
        (tmp_path / "bad.dkm").write_bytes(bytes(raw))
        load_fails(tmp_path / "bad.dkm", "truncated")


def test_newer_format_version(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["format_version"] = 99
    write_parts(tmp_path / "v99.dkm", header, data)
    load_fails(tmp_path / "v99.dkm", "format_version 99 is newer")
    header["format_version"] = 0
    write_parts(tmp_path / "v0.dkm", header, data)
    load_fails(tmp_path / "v0.dkm", "format_version")


def test_checksum_mismatch(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["meta"]["params"]["learning_rate_init"] = 0.5  # well-formed, but not what was saved
    write_parts(tmp_path / "edited.dkm", header, data, fix_crc=False)
    load_fails(tmp_path / "edited.dkm", "checksum")
    header.pop("crc32")
    write_parts(tmp_path / "nocrc.dkm", header, data, fix_crc=False)
    load_fails(tmp_path / "nocrc.dkm", "crc32")


def test_unknown_class(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["class"] = "os.system"
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm", "unknown model class 'os.system'")


def test_arrays_claiming_more_than_the_file_holds(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    entry = header["arrays"]["params"]
    for shape in ([2**40], [2**31, 2**31], [2**62, 2**62]):
        entry.update(shape=shape, nbytes=4 * int(np.prod(shape, dtype=object)))
        write_parts(tmp_path / "huge.dkm", header, data)
        load_fails(tmp_path / "huge.dkm", "truncated")


@pytest.mark.parametrize("field, value, match", [
    ("dtype", "object", "unsupported dtype"),
    ("dtype", "<f4", "unsupported dtype"),
    ("shape", [-1], "invalid shape"),
    ("shape", "10", "invalid shape"),
    ("shape", [True], "invalid shape"),
    ("offset", -8, "invalid offset"),
    ("offset", 1.5, "invalid offset"),
    ("nbytes", 3, "does not match shape"),
])
def test_malformed_array_entries(saved, tmp_path, field, value, match):
    path, _, _ = saved
    header, data = read_parts(path)
    header["arrays"]["opt_m"][field] = value
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm", match)


def test_overlapping_arrays_and_trailing_bytes(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["arrays"]["opt_v"]["offset"] = header["arrays"]["opt_m"]["offset"]
    write_parts(tmp_path / "overlap.dkm", header, data)
    load_fails(tmp_path / "overlap.dkm", "overlaps")
    header, data = read_parts(path)
    write_parts(tmp_path / "trailing.dkm", header, data + b"\x00" * 8)
    load_fails(tmp_path / "trailing.dkm", "unexpected bytes")


def shrink_params(header, data, by):
    """Drop ``by`` values from the end of every network array, keeping the file well-formed."""
    arrays = header["arrays"]
    chunks, offset = {}, 0
    for key in sorted(arrays, key=lambda k: arrays[k]["offset"]):
        e = arrays[key]
        chunks[key] = data[e["offset"]:e["offset"] + e["nbytes"] - 4 * by]
        e.update(offset=offset, nbytes=len(chunks[key]), shape=[e["shape"][0] - by])
        offset += len(chunks[key])
    return b"".join(chunks.values())


def test_arrays_that_do_not_fit_the_configuration(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    data = shrink_params(header, data, 1)
    write_parts(tmp_path / "short.dkm", header, data)
    load_fails(tmp_path / "short.dkm", "array 'params' has shape")


def test_a_huge_network_configuration_is_refused_before_allocating(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["meta"]["network"]["n_inputs"] = 10**9
    header["meta"]["network"]["layers"][0]["units"] = 10**9
    write_parts(tmp_path / "huge.dkm", header, data)
    load_fails(tmp_path / "huge.dkm", "the network configuration needs")


@pytest.mark.parametrize("where, value", [
    (("meta", "network", "layers", 0, "units"), "8"),
    (("meta", "network", "layers", 0, "units"), 0),
    (("meta", "network", "layers", 0, "activation"), "bogus"),
    (("meta", "network", "layers", 0, "activation"), ["maxout", 1.5]),
    (("meta", "network", "layers", 0, "dropout"), 5.0),
    (("meta", "network", "layers"), []),
    (("meta", "network", "n_inputs"), -64),
    (("meta", "network", "seed"), 2**70),
    (("meta", "network", "step"), -1),
    (("meta", "network", "solver"), "newton"),
    (("meta", "network", "dropout_mode"), "sometimes"),
    (("meta", "network", "optimizer"), None),
    (("meta", "params", "solver"), "newton"),
    (("meta", "params", "no_such_param"), 1),
    (("meta", "loss"), "squared"),
    (("meta", "attributes", "n_features_in_"), 63),
    (("meta", "attributes", "n_iter_"), -1),
    (("meta", "attributes", "loss_curve_"), "x"),
    (("meta", "attributes", "classes_", "__ndarray__", "values"), [0, 1, 2]),
    (("meta", "attributes", "classes_", "__ndarray__", "shape"), [3]),
    (("meta", "attributes", "classes_", "__ndarray__", "dtype"), "V8"),
    (("meta", "attributes", "classes_", "__ndarray__", "dtype"), "<U999999999"),
    (("meta", "attributes", "classes_", "__ndarray__", "values", 0), {"__float__": "1e309"}),
    (("meta", "attributes", "classes_", "__ndarray__", "values", 0), [1]),
    (("meta", "attributes", "classes_", "__ndarray__", "values", 0), "zero"),
    (("meta", "attributes", "classes_"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (("meta", "attributes", "evil"), 1),
    (("meta", "binarizer", "y_type"), "continuous"),
    (("meta", "attributes"), None),
    (("meta",), []),
])
def test_inconsistent_headers_are_value_errors(saved, tmp_path, where, value):
    path, _, _ = saved
    header, data = read_parts(path)
    node = header
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm")


def test_object_arrays_are_checked_on_load(tmp_path):
    X, y = digits(100)
    model = MLPClassifier((4,), max_iter=1, random_state=0).fit(X, y)
    model.feature_names_in_ = np.array([f"f{i}" for i in range(64)], dtype=object)
    path = tmp_path / "obj.dkm"
    model.save(path)
    header, data = read_parts(path)
    header["meta"]["attributes"]["feature_names_in_"]["__ndarray__"]["values"][0] = {"a": 1}
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm", "str, int, float or bool")


def test_string_labels_wider_than_their_dtype_are_refused(tmp_path):
    X, rng = blobs()
    path = tmp_path / "s.dkm"
    MLPClassifier((4,), max_iter=1, random_state=0).fit(X, np.where(X[:, 0] > 0, "yes", "no")).save(path)
    header, data = read_parts(path)
    spec = header["meta"]["attributes"]["classes_"]["__ndarray__"]
    assert spec["dtype"] == "<U3"
    spec["values"][0] = "nope"
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm", "too narrow")


def test_a_regressor_header_for_a_classifier_body(saved, tmp_path):
    path, _, _ = saved
    header, data = read_parts(path)
    header["class"] = "MLPRegressor"
    write_parts(tmp_path / "bad.dkm", header, data)
    load_fails(tmp_path / "bad.dkm", "inconsistent")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        dropkit.load(tmp_path / "nope.dkm")
