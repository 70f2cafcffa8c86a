"""The command line and the CSV reader and default data behind it.

The main flows run ``python -m dropkit`` in a subprocess; the many error cases
call the same ``main()`` in this process, because each subprocess spends
about two seconds importing scikit-learn."""
import csv
import subprocess
import sys

import numpy as np
import pytest

import dropkit
from dropkit.datasets import load_csv, load_default


def call(*args, capsys):
    """main() in this process: (exit status, stdout, stderr)."""
    from dropkit.__main__ import main
    capsys.readouterr()
    try:
        status = main([str(a) for a in args])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def run(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "dropkit", *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small separable problem: 4 numeric features, a text label and a numeric target."""
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 4))
    label = np.where(X[:, 0] + X[:, 1] > 0, "high", "low")
    amount = X @ [1.0, -0.5, 0.25, 0.0]
    write_csv(tmp / "labels.csv", ["f0", "f1", "f2", "f3", "label"], [[*x, c] for x, c in zip(X, label)])
    write_csv(tmp / "amounts.csv", ["f0", "f1", "f2", "f3", "amount"], [[*x, a] for x, a in zip(X, amount)])
    write_csv(tmp / "features.csv", ["f0", "f1", "f2", "f3"], X)
    return tmp, X, label, amount


def read_predictions(path_or_text):
    text = path_or_text.read_text() if hasattr(path_or_text, "read_text") else path_or_text
    rows = list(csv.reader(text.splitlines()))
    return rows[0], [r[0] if len(r) == 1 else r for r in rows[1:]]


def assert_usage_error(result, *words):
    status, stdout, stderr = result if isinstance(result, tuple) else (result.returncode, result.stdout, result.stderr)
    assert status == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m dropkit: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ------------------------------------------------------------ the commands

def test_default_run_reports_accuracy_time_backend_and_threads(tmp_path):
    result = run("--max-iter", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Epoch 1:" in out and "Epoch 3:" in out and "Epoch 4:" not in out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert 0.85 <= accuracy <= 1.0  # three epochs already get most digits right
    assert "fit time:" in out
    assert f"SIMD backend: {dropkit.simd_backend()}" in out and "threads:" in out
    assert result.stderr == ""


def test_help_describes_every_option(tmp_path, capsys):
    top = run("--help", cwd=tmp_path)
    assert top.returncode == 0 and "--max-iter" in top.stdout and "train" in top.stdout and "predict" in top.stdout
    status, train, _ = call("train", "--help", capsys=capsys)
    assert status == 0
    for option in ("--target", "--hidden", "--activation", "--dropout", "--input-dropout", "--l2", "--solver", "--lr",
                   "--batch-size", "--max-iter", "--early-stopping", "--regression", "--random-state", "--output",
                   "--verbose"):
        assert option in train, option
    status, predict, _ = call("predict", "--help", capsys=capsys)
    assert status == 0 and "--output" in predict and "MODEL" in predict and "target column" in predict


def test_train_then_predict_a_classifier(data, tmp_path):
    tmp, X, label, _ = data
    result = run("train", tmp / "labels.csv", "--target", "label", "--hidden", "16,8", "--activation", "maxout:2",
                 "--dropout", "0.1", "--input-dropout", "0.1", "--l2", "1e-4", "--solver", "adam", "--lr", "0.01",
                 "--batch-size", "16", "--max-iter", "30", "--random-state", "0", "--output", tmp_path / "m.dkm",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "240 rows, 4 features, 2 classes" in result.stdout and "saved to" in result.stdout
    training_accuracy = float(result.stdout.split("training accuracy:")[1].split()[0])
    assert training_accuracy > 0.9

    model = dropkit.load(tmp_path / "m.dkm")
    assert model.get_params()["hidden_layer_sizes"] == (16, 8) and model.activation == ("maxout", 2)
    expected = model.predict(X)

    # to standard output, with the target column present (and ignored) ...
    shown = run("predict", tmp_path / "m.dkm", tmp / "labels.csv", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    header, predictions = read_predictions(shown.stdout)
    assert header == ["label"] and predictions == list(expected)
    assert np.mean(np.array(predictions) == label) > 0.9
    # ... and to a file, without the target column
    written = run("predict", tmp_path / "m.dkm", tmp / "features.csv", "--output", tmp_path / "p.csv", cwd=tmp_path)
    assert written.returncode == 0 and written.stdout == ""
    assert read_predictions(tmp_path / "p.csv") == (header, predictions)


def test_train_then_predict_a_regressor(data, tmp_path):
    tmp, X, _, amount = data
    result = run("train", tmp / "amounts.csv", "--target", "amount", "--regression", "--hidden", "32",
                 "--early-stopping", "--max-iter", "40", "--batch-size", "16", "--lr", "0.01", "--random-state", "1",
                 "-o", tmp_path / "r.dkm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MLPRegressor" in result.stdout and "best validation R^2" in result.stdout
    assert float(result.stdout.split("training R^2:")[1].split()[0]) > 0.8
    shown = run("predict", tmp_path / "r.dkm", tmp / "amounts.csv", cwd=tmp_path)
    header, predictions = read_predictions(shown.stdout)
    assert header == ["amount"]
    # nine significant digits print the float32 outputs exactly
    expected = dropkit.load(tmp_path / "r.dkm").predict(X)
    assert np.array_equal(np.array(predictions, dtype=np.float32), expected.astype(np.float32))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predict_with_a_model_saved_from_python(data, tmp_path, capsys):
    tmp, X, label, _ = data
    model = dropkit.MLPClassifier((8,), max_iter=50, random_state=0).fit(X, label)
    model.save(tmp_path / "py.dkm")
    status, out, err = call("predict", tmp_path / "py.dkm", tmp / "features.csv", capsys=capsys)
    assert status == 0, err
    header, predictions = read_predictions(out)
    assert header == ["prediction"] and predictions == list(model.predict(X))
    # without names the columns are matched by count: this file has one too many
    assert_usage_error(call("predict", tmp_path / "py.dkm", tmp / "amounts.csv", capsys=capsys), "expects 4")


# ---------------------------------------------------------------- errors

def test_errors_in_a_real_process_are_one_line_with_status_2(tmp_path):
    assert_usage_error(run("train", tmp_path / "missing.csv", "--target", "y", cwd=tmp_path),
                       "missing.csv", "No such file")


def test_data_errors_are_one_line_with_status_2(data, tmp_path, capsys):
    tmp, X, _, _ = data
    for args, words in [
        (("train", tmp_path / "missing.csv", "--target", "y"), ("missing.csv", "No such file")),
        (("train", tmp / "labels.csv", "--target", "colour"), ("no column 'colour'",)),
        (("train", tmp / "labels.csv", "--target", "f0"), ("line 2", "column 'label'", "expected a number")),
        (("train", tmp / "labels.csv", "--target", "label", "--regression"), ("numeric target",)),
        (("train", tmp / "labels.csv", "--target", "label", "--dropout", "1.5"), ("dropout",)),
        (("train", tmp / "amounts.csv", "--target", "amount"), ("Unknown label type",)),
        (("predict", tmp / "labels.csv", tmp / "features.csv"), ("not a dropkit model",)),
        (("predict", tmp_path / "missing.dkm", tmp / "features.csv"), ("missing.dkm",)),
    ]:
        assert_usage_error(call(*args, capsys=capsys), *words)


def test_predict_refuses_columns_that_differ_from_training(data, tmp_path, capsys):
    tmp, X, label, _ = data
    status, _, err = call("train", tmp / "labels.csv", "--target", "label", "--hidden", "4", "--max-iter", "1",
                          "-o", tmp_path / "m.dkm", capsys=capsys)
    assert status == 0, err
    assert "warning: Stopped at max_iter=1" in err  # scikit-learn's ConvergenceWarning, in one line
    swapped = write_csv(tmp_path / "swapped.csv", ["f1", "f0", "f2", "f3"], X[:5])
    assert_usage_error(call("predict", tmp_path / "m.dkm", swapped, capsys=capsys), "do not match", "f1, f0")


def test_bad_argument_values_are_usage_errors(data, capsys):
    tmp, _, _, _ = data
    for args in (["--hidden", "16,x"], ["--max-iter", "0"], ["--solver", "lbfgs"], ["--activation", "elu:big"],
                 ["--batch-size", "-1"]):
        status, _, err = call("train", tmp / "labels.csv", "--target", "label", *args, capsys=capsys)
        assert status == 2 and "error: argument" in err, (args, err)
    status, _, err = call("train", tmp / "labels.csv", capsys=capsys)
    assert status == 2 and "--target" in err


# ------------------------------------------------------------ the CSV reader

def test_load_csv_reads_features_and_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\ufeff a , b ,kind\n1,2.5,x\n\n-3, 4e-1 ,y\n")
    data = load_csv(path, target="kind")
    assert data.feature_names == ["a", "b"] and data.target_name == "kind"
    assert data.data.dtype == np.float64 and data.data.tolist() == [[1.0, 2.5], [-3.0, 0.4]]
    assert data.target.tolist() == ["x", "y"]
    numeric = write_csv(tmp_path / "n.csv", ["a", "b", "c"], [[1, 2.5, 7], [-3, 0.5, 8]])
    X, y = load_csv(numeric, target="a", return_X_y=True)
    assert y.dtype == np.int64 and y.tolist() == [1, -3] and X.tolist() == [[2.5, 7], [0.5, 8]]
    assert load_csv(numeric, target="b").target.dtype == np.float64

@pytest.mark.parametrize("text, target, words", [
    ("", None, ["empty"]),
    ("a,b\n", None, ["no data rows"]),
    ("a,b\n1,2\n", "c", ["no column 'c'", "'a', 'b'"]),
    ("a,b\n1,2\n3,x\n", "a", ["line 3", "column 'b'", "'x'"]),
    ("a,b\n1,2\n3\n", "a", ["line 3", "expected 2 fields", "got 1"]),
    ("a,b\n1,2\n3,4,5\n", "a", ["line 3", "got 3"]),
    ("a,b\n1,\n", "a", ["line 2", "column 'b'", "''"]),
    ("a,b\n1,nan\n", "a", ["column 'b'", "'nan'"]),
    ("a,b\n1,inf\n", "a", ["column 'b'", "'inf'"]),
    ("a,b\n,1\n", "a", ["line 2", "empty value in the target column 'a'"]),
    ("a,a\n1,2\n", None, ["'a' appears twice"]),
    ("a\n1\n", "a", ["no feature columns"]),
])
def test_load_csv_errors_name_file_line_and_column(tmp_path, text, target, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_csv(path, target=target)
    message = str(info.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message, message


def test_load_csv_without_target_needs_every_column_numeric(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b"], [[1, 2], [3, 4]])
    data = load_csv(path)
    assert data.target is None and data.data.shape == (2, 2)
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "nope.csv")


def test_load_default_is_the_fixed_digits_split():
    X_train, X_test, y_train, y_test = load_default()
    assert X_train.shape == (1347, 64) and X_test.shape == (450, 64)
    assert X_train.dtype == np.float32 and 0 <= X_train.min() and X_train.max() == 1.0
    assert np.array_equal(np.bincount(y_test), [45, 46, 44, 46, 45, 46, 45, 45, 43, 45])  # stratified
    again = load_default()
    assert all(np.array_equal(a, b) for a, b in zip((X_train, X_test, y_train, y_test), again))
