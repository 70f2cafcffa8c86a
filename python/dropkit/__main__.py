"""The command line: ``python -m dropkit [train | predict] ...``.

Without a subcommand, trains a regularized MLP on the embedded digits data
and reports its test accuracy. ``train`` fits a model on a CSV file and may
save it; ``predict`` applies a saved model to a CSV file. Errors print one
line and exit with status 2.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

DEMO = dict(hidden_layer_sizes=(256, 256), activation="relu", dropout=0.3, input_dropout=0.1, l2=1e-4,
            solver="adam", learning_rate_init=1e-3, learning_rate="cosine", batch_size=32, random_state=0)
DEMO_MAX_ITER = 40


class UsageError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = args.run(args)
        for w in caught:
            if issubclass(w.category, UserWarning):  # ConvergenceWarning and the like, not library deprecations
                print(f"warning: {w.message}", file=sys.stderr)
        return status
    except BrokenPipeError:
        # the reader of our output went away (| head): stop quietly, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, ValueError, TypeError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {_one_line(exc)}\n")
    except FloatingPointError as exc:  # DivergenceError
        parser.exit(1, f"{parser.prog}: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{parser.prog}: interrupted\n")


def _one_line(exc):
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------ arguments

def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dropkit",
        usage="python -m dropkit [--max-iter N]\n"
              "       python -m dropkit train FILE.csv --target COLUMN [options]\n"
              "       python -m dropkit predict MODEL FILE.csv [--output FILE]",
        description="Train regularized multilayer perceptrons on the CPU. Without a subcommand, train an MLP "
                    "(256-256 ReLU units, dropout 0.3, input dropout 0.1, L2 1e-4, Adam with a cosine "
                    "schedule) on scikit-learn's digits and report the test accuracy.",
        epilog="Run 'python -m dropkit train --help' or 'python -m dropkit predict --help' for the subcommands.")
    parser.add_argument("--max-iter", dest="demo_max_iter", type=_positive_int, default=DEMO_MAX_ITER, metavar="N",
                        help=f"epochs of the default run (default {DEMO_MAX_ITER})")
    parser.set_defaults(run=run_demo)
    sub = parser.add_subparsers(title="subcommands", metavar="{train,predict}")

    train = sub.add_parser(
        "train", prog="python -m dropkit train", help="train a model on a CSV file",
        description="Train an MLP on a CSV file with a header row. Every column except the target is a numeric "
                    "feature. Prints a summary measured on the training data (no held-out set) and saves the "
                    "model with --output.")
    train.add_argument("csv", metavar="FILE.csv", help="training data with a header row")
    train.add_argument("--target", required=True, metavar="COLUMN", help="name of the column to predict")
    train.add_argument("--regression", action="store_true",
                       help="fit an MLPRegressor (numeric target, squared error) instead of a classifier")
    train.add_argument("--hidden", type=_sizes, default=(256, 256), metavar="N,N,...",
                       help="hidden layer sizes, comma separated (default 256,256)")
    train.add_argument("--activation", type=_activation, default="relu", metavar="NAME[:PARAM]",
                       help="relu (default), identity, sigmoid, tanh, elu[:alpha], leaky_relu[:slope], "
                            "prelu[:initial slope] or maxout[:pieces]")
    train.add_argument("--dropout", type=float, default=0.0, metavar="RATE",
                       help="probability of dropping a hidden unit in training (default 0; 0.5 is classic)")
    train.add_argument("--input-dropout", type=float, default=0.0, metavar="RATE",
                       help="probability of dropping an input feature in training (default 0; 0.2 is classic)")
    train.add_argument("--l2", type=float, default=0.0, metavar="L2",
                       help="L2 penalty (l2/2)*|W|^2 on the weights, added to the gradient (default 0)")
    train.add_argument("--solver", default="adam", choices=("sgd", "adam", "adamw", "adagrad", "rmsprop"),
                       help="optimizer (default adam)")
    train.add_argument("--lr", type=float, default=1e-3, metavar="RATE", help="initial learning rate (default 0.001)")
    train.add_argument("--batch-size", type=_batch_size, default="auto", metavar="N",
                       help="minibatch size (default auto: min(200, n_samples))")
    train.add_argument("--max-iter", type=_positive_int, default=200, metavar="N",
                       help="maximum number of epochs (default 200)")
    train.add_argument("--early-stopping", action="store_true",
                       help="hold out 10%% of the rows, stop when their score stops improving and keep the best "
                            "weights")
    train.add_argument("--random-state", type=int, default=None, metavar="N",
                       help="seed for the initial weights, shuffling and dropout (default: different every run)")
    train.add_argument("--output", "-o", metavar="MODEL", help="save the trained model to this file")
    train.add_argument("--verbose", "-v", action="store_true", help="print the loss after every epoch")
    train.set_defaults(run=run_train)

    predict = sub.add_parser(
        "predict", prog="python -m dropkit predict", help="predict with a saved model",
        description="Predict every row of a CSV file with a model saved by 'train --output' (or model.save). The "
                    "CSV must have a header row and the model's feature columns, in the training order; the "
                    "training target column, if present, is ignored (a model saved from Python without feature "
                    "names is matched by the number of columns). Predictions are written as CSV, one row per "
                    "input row, under a header naming the target.")
    predict.add_argument("model", metavar="MODEL", help="a saved model")
    predict.add_argument("csv", metavar="FILE.csv", help="rows to predict, with a header row")
    predict.add_argument("--output", "-o", metavar="FILE",
                         help="write the predictions to this CSV file instead of standard output")
    predict.set_defaults(run=run_predict)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _batch_size(text):
    return "auto" if text == "auto" else _positive_int(text)


def _sizes(text):
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None


def _activation(text):
    name, _, param = text.partition(":")
    if not param:
        return name
    try:
        return (name, int(param) if name == "maxout" else float(param))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:NUMBER, got {text!r}") from None


# ------------------------------------------------------------------ commands

def run_demo(args):
    import dropkit
    from dropkit.datasets import load_default

    X_train, X_test, y_train, y_test = load_default()
    print(f"digits: {X_train.shape[0]} training and {X_test.shape[0]} test images of {X_train.shape[1]} pixels, "
          f"{len(np.unique(y_train))} classes")
    settings = ", ".join(f"{k}={v!r}" for k, v in DEMO.items())
    print(f"MLPClassifier({settings}, max_iter={args.demo_max_iter})")
    print(f"SIMD backend: {dropkit.simd_backend()}, threads: {dropkit.get_num_threads()}", flush=True)
    model = dropkit.MLPClassifier(**DEMO, max_iter=args.demo_max_iter, verbose=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the cosine schedule runs every epoch by design
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    print(f"test accuracy: {model.score(X_test, y_test):.4f}")
    print(f"fit time: {elapsed:.2f} s for {model.n_iter_} epochs ({1000 * elapsed / model.n_iter_:.1f} ms per epoch)")
    return 0


def run_train(args):
    import dropkit
    from dropkit.datasets import load_csv
    from dropkit.io import save

    data = load_csv(args.csv, target=args.target)
    X, y = data.data, data.target
    if args.regression and y.dtype.kind not in "if":
        raise UsageError(f"{args.csv}: --regression needs a numeric target, column {args.target!r} holds text")
    cls = dropkit.MLPRegressor if args.regression else dropkit.MLPClassifier
    model = cls(hidden_layer_sizes=args.hidden, activation=args.activation, dropout=args.dropout,
                input_dropout=args.input_dropout, l2=args.l2, solver=args.solver, learning_rate_init=args.lr,
                batch_size=args.batch_size, max_iter=args.max_iter, early_stopping=args.early_stopping,
                random_state=args.random_state, verbose=args.verbose)
    start = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - start

    what = "R^2" if args.regression else "accuracy"
    task = (f"{y.shape[0]} rows, {X.shape[1]} features" +
            ("" if args.regression else f", {len(model.classes_)} classes"))
    print(f"{cls.__name__} on {args.csv}: {task}")
    print(f"{model.n_iter_} epochs in {elapsed:.2f} s; final training loss {model.loss_curve_[-1]:.6f}")
    if args.early_stopping:
        print(f"best validation {what}: {model.best_validation_score_:.4f}")
    print(f"training {what}: {model.score(X, y):.4f}")
    if args.output:
        save(model, args.output, metadata={"feature_names": data.feature_names, "target": args.target})
        print(f"saved to {args.output}")
    return 0


def run_predict(args):
    from dropkit.datasets import load_csv
    from dropkit.io import load

    model, metadata = load(args.model, return_metadata=True)
    metadata = metadata if isinstance(metadata, dict) else {}
    target = metadata.get("target")
    names = metadata.get("feature_names")
    if names is None and hasattr(model, "feature_names_in_"):
        names = list(model.feature_names_in_)
    columns = _header(args.csv)
    data = load_csv(args.csv, target=target if target in columns else None)
    if names is not None and data.feature_names != names:
        raise UsageError(f"{args.csv}: the columns {_short(data.feature_names)} do not match the model's "
                         f"features {_short(names)}")
    if data.data.shape[1] != model.n_features_in_:
        raise UsageError(f"{args.csv}: {data.data.shape[1]} feature columns, the model expects "
                         f"{model.n_features_in_}")
    with warnings.catch_warnings():
        # names were checked above; the model may have been fitted on a DataFrame
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        predictions = model.predict(data.data)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        _write_predictions(out, predictions, target or "prediction", getattr(model, "classes_", None))
    finally:
        if args.output:
            out.close()
    return 0


def _header(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [name.strip() for name in next(csv.reader(f), [])]


def _short(names, limit=8):
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def _write_predictions(out, predictions, name, classes):
    writer = csv.writer(out, lineterminator="\n")
    if predictions.ndim == 1:
        writer.writerow([name])
        writer.writerows([_cell(v)] for v in predictions)
    else:  # multilabel indicators or several regression outputs
        labels = classes if classes is not None else range(predictions.shape[1])
        writer.writerow([f"{name}[{label}]" for label in labels])
        writer.writerows([_cell(v) for v in row] for row in predictions)


def _cell(value):
    # regression outputs are float32 values: 9 significant digits write them exactly
    return f"{value:.9g}" if isinstance(value, (float, np.floating)) else str(value)


if __name__ == "__main__":
    sys.exit(main())
