"""Overfitting on 300 training digits: no regularization vs L2 vs dropout vs
dropout + max-norm vs early stopping.

A 64-256-256-10 relu network is trained with Adam for a fixed 150 epochs
under each regularizer, one partial_fit call per epoch, and scored on the 450
held-out test digits after every epoch. Those per-epoch test figures only draw
the curves; nothing is chosen by them. Early stopping chooses its epoch on its
own validation split (20% of the 300 training digits, so it trains on 240).

    python examples/overfitting_small_data.py
"""
import numpy as np
from dropkit import MLPClassifier

from _common import SEEDS, cross_entropy, digits, note, print_table, save_figure, spread

N_TRAIN = 300
EPOCHS = 150
BASE = dict(hidden_layer_sizes=(256, 256), solver="adam", learning_rate_init=1e-3, batch_size=32)
DROPOUT = dict(dropout=0.5, input_dropout=0.2)
MAX_NORM = 1.0
FIXED = [
    ("none", {}),
    ("L2 (l2=1e-3)", dict(l2=1e-3)),
    ("dropout (0.5 hidden, 0.2 input)", DROPOUT),
    (f"dropout + max-norm (c={MAX_NORM:g})", dict(DROPOUT, max_norm=MAX_NORM)),
]
EARLY = "early stopping (20% validation)"


def train_fixed(params, seed, data, classes):
    """Train EPOCHS epochs one partial_fit at a time; the test loss and accuracy after each."""
    X_train, X_test, y_train, y_test = data
    clf = MLPClassifier(random_state=seed, **BASE, **params)
    test_loss, test_acc = [], []
    for _ in range(EPOCHS):
        clf.partial_fit(X_train, y_train, classes=classes)
        proba = clf.predict_proba(X_test)
        test_loss.append(cross_entropy(y_test, proba, classes))
        test_acc.append(np.mean(classes[proba.argmax(axis=1)] == y_test))
    return clf, np.array(test_loss), np.array(test_acc)


def main():
    data = X_train, X_test, y_train, y_test = digits(N_TRAIN)
    classes = np.unique(y_train)
    rows, curves, results = [], {}, {}

    def row(name, runs, stopped=""):
        results[name] = runs
        rows.append([name, spread([r["train"] for r in runs]), spread([r["test"] for r in runs]),
                     f"{np.mean([r['loss'] for r in runs]):.3f}", stopped])

    max_norms = {}
    for name, params in FIXED:
        runs, losses, accs = [], [], []
        for seed in SEEDS:
            clf, test_loss, test_acc = train_fixed(params, seed, data, classes)
            runs.append(dict(train=clf.score(X_train, y_train), test=test_acc[-1], loss=test_loss[-1],
                             min_loss=test_loss.min(), min_epoch=int(test_loss.argmin()) + 1))
            losses.append(test_loss)
            accs.append(test_acc)
            if seed == SEEDS[0]:
                max_norms[name] = [float(np.linalg.norm(W, axis=0).max()) for W in clf.coefs_]
        curves[name] = (np.mean(losses, axis=0), np.mean(accs, axis=0))
        row(name, runs)

    runs, early_curve = [], None
    for seed in SEEDS:
        clf = MLPClassifier(random_state=seed, early_stopping=True, validation_fraction=0.2, n_iter_no_change=20,
                            max_iter=EPOCHS, **BASE).fit(X_train, y_train)
        best = int(np.argmax(clf.validation_scores_)) + 1
        runs.append(dict(train=clf.score(X_train, y_train), test=clf.score(X_test, y_test),
                         loss=cross_entropy(y_test, clf.predict_proba(X_test), classes), ran=clf.n_iter_, best=best))
        if early_curve is None:
            early_curve = (np.array(clf.history_["val_loss"]), best)
    row(EARLY, runs, ", ".join(f"{r['best']}/{r['ran']}" for r in runs))

    note(f"{len(X_train)} training digits (stratified subset), {len(X_test)} test digits; a 64-256-256-10 relu "
         f"network, Adam (lr 1e-3), batch 32, {EPOCHS} epochs (early stopping: up to {EPOCHS}, patience 20). "
         f"Mean over seeds {', '.join(map(str, SEEDS))}, min-max in brackets. Train accuracy is on all "
         f"{len(X_train)} training digits, also for early stopping, which trained on 80% of them.")
    print_table(["regularizer", "train acc", "test acc", "test loss", "early stopping: restored/ran epochs"], rows)

    note("The test loss of the fixed-length runs at its lowest and where it ends (mean over seeds; the test set "
         "is looked at only to describe the curves, nothing is chosen by it):")
    print_table(["regularizer", "lowest test loss", "at epoch", f"test loss at epoch {EPOCHS}", "rise"],
                [[name, f"{np.mean([r['min_loss'] for r in results[name]]):.3f}",
                  f"{np.mean([r['min_epoch'] for r in results[name]]):.0f}",
                  f"{np.mean([r['loss'] for r in results[name]]):.3f}",
                  f"{np.mean([r['loss'] - r['min_loss'] for r in results[name]]):+.3f}"] for name, _ in FIXED])

    dropout_name, max_norm_name = FIXED[2][0], FIXED[3][0]
    note(f"Largest incoming-weight norm of any unit, per layer, after {EPOCHS} epochs (seed {SEEDS[0]}): "
         f"dropout alone {', '.join(f'{n:.2f}' for n in max_norms[dropout_name])}; "
         f"with max_norm={MAX_NORM:g} {', '.join(f'{n:.2f}' for n in max_norms[max_norm_name])}.")

    stopped = [MLPClassifier(random_state=seed, max_iter=EPOCHS, **BASE, **DROPOUT).fit(X_train, y_train).n_iter_
               for seed in SEEDS]
    note(f"With fit's default stopping rule (n_iter_no_change=10 epochs without the training loss improving by "
         f"tol), the dropout network asked for {EPOCHS} epochs stops after {', '.join(map(str, stopped))} "
         f"(seeds {', '.join(map(str, SEEDS))}); the runs above train every epoch.")

    save_figure("overfitting_small_data", lambda plt: draw(plt, curves, early_curve))

    mean = lambda name, key: float(np.mean([r[key] for r in results[name]]))
    summary = {"none_test": f"{mean('none', 'test'):.3f}", "none_train": f"{mean('none', 'train'):.3f}",
               "none_loss_rise": f"{mean('none', 'loss') - mean('none', 'min_loss'):.3f}",
               "none_min_loss": f"{mean('none', 'min_loss'):.3f}", "none_final_loss": f"{mean('none', 'loss'):.3f}",
               "dropout_max_norm_unconstrained": f"{max(max_norms[dropout_name]):.2f}",
               "stopped_min": str(min(stopped)), "stopped_max": str(max(stopped))}
    for key, (name, _) in zip(("l2", "dropout", "max_norm"), FIXED[1:]):
        summary[f"{key}_test"] = f"{mean(name, 'test'):.3f}"
        summary[f"{key}_gain"] = f"{100 * (mean(name, 'test') - mean('none', 'test')):+.1f}"
        summary[f"{key}_final_loss"] = f"{mean(name, 'loss'):.3f}"
    summary["early_test"] = f"{mean(EARLY, 'test'):.3f}"
    summary["early_gain"] = f"{100 * (mean(EARLY, 'test') - mean('none', 'test')):+.1f}"
    summary["early_loss"] = f"{mean(EARLY, 'loss'):.3f}"
    return summary


def draw(plt, curves, early_curve):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, EPOCHS + 1)
    for name, (loss, acc) in curves.items():
        ax_loss.plot(epochs, loss, label=name)
        ax_acc.plot(epochs, acc, label=name)
    val_loss, best = early_curve
    ax_loss.plot(np.arange(1, len(val_loss) + 1), val_loss, "k:",
                 label=f"{EARLY}: its validation loss (seed {SEEDS[0]})")
    ax_loss.plot([best], [val_loss[best - 1]], "ko", label="epoch early stopping restores")
    ax_loss.set(xlabel="epoch", ylabel="test cross-entropy", title="test loss (mean over seeds)", ylim=(0, 0.6))
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy (mean over seeds)", ylim=(0.85, 1.0))
    ax_loss.legend(fontsize=7, frameon=False)
    return fig


if __name__ == "__main__":
    main()
