"""Sparse representations: activity penalties on the hidden layer's output.

ActivityL1 and StudentT on relu units, KLSparsity on logistic units (it
needs outputs in (0, 1)), each against the same network without a penalty.
One hidden layer of 128 units, trained with Adam for 60 epochs on the digits;
the figures are measured on the 450 test digits with dropout off, through
``hidden_activity`` and, per unit, from the weights.

    python examples/sparse_representations.py
"""
import numpy as np

from dropkit import ActivityL1, KLSparsity, MLPClassifier, StudentT

from _common import SEEDS, digits, fixed_epochs, note, print_table, save_figure, spread

EPOCHS = 60
BASE = dict(hidden_layer_sizes=(128,), solver="adam", batch_size=32, **fixed_epochs(EPOCHS))
# (label, activation, learning rate, penalty); the logistic nets learn at 1e-2
# (at 1e-3 the KL-penalised net had not finished learning in 60 epochs)
RUNS = [
    ("relu, none", "relu", 1e-3, None),
    ("relu, ActivityL1(0.05)", "relu", 1e-3, ActivityL1(0.05)),
    ("relu, StudentT(0.05)", "relu", 1e-3, StudentT(0.05)),
    ("logistic, none", "logistic", 1e-2, None),
    ("logistic, KLSparsity(rho=0.05, beta=1)", "logistic", 1e-2, KLSparsity(0.05, 1.0)),
]
ACTIVE = 0.01  # the threshold hidden_activity and history_ use


def hidden_outputs(clf, X, activation):
    z = X @ clf.coefs_[0] + clf.intercepts_[0]
    return np.maximum(z, 0) if activation == "relu" else 1 / (1 + np.exp(-z))


def main():
    X_train, X_test, y_train, y_test = digits()
    rows, outputs, summary = [], {}, {}
    for label, activation, lr, penalty in RUNS:
        runs = []
        for seed in SEEDS:
            clf = MLPClassifier(activation=activation, learning_rate_init=lr, activity_penalty=penalty,
                                random_state=seed, **BASE).fit(X_train, y_train)
            stats = clf.hidden_activity(X_test)
            h = hidden_outputs(clf, X_test.astype(np.float64), activation)
            assert abs(np.abs(h).mean() - stats["mean_activation"][0]) < 1e-4  # the same figure, two ways
            unit_means = h.mean(axis=0)
            runs.append(dict(test=clf.score(X_test, y_test), mean=stats["mean_activation"][0],
                             active=stats["active_fraction"][0], silent=np.mean((h > ACTIVE).sum(axis=0) == 0),
                             unit_median=np.median(unit_means)))
            if seed == SEEDS[0]:
                outputs[label] = (h, unit_means)
        values = lambda key: [r[key] for r in runs]
        rows.append([label, spread(values("test")), f"{np.mean(values('mean')):.3f}",
                     f"{100 * np.mean(values('active')):.1f}%", f"{np.mean(values('unit_median')):.3f}",
                     f"{100 * np.mean(values('silent')):.0f}%"])
        summary[label] = {key: float(np.mean(values(key))) for key in runs[0]}

    note(f"Digits, {len(X_train)} training and {len(X_test)} test images; a 64-128-10 network, Adam, batch 32, "
         f"{EPOCHS} epochs, lr 1e-3 (relu) or 1e-2 (logistic). Figures on the test digits, mean over seeds "
         f"{', '.join(map(str, SEEDS))} (accuracy: min-max in brackets). Active: an output with |h| > {ACTIVE}; "
         f"a silent unit is never active on any test digit.")
    print_table(["activation, penalty", "test acc", "mean abs h", "active outputs", "median unit mean h",
                 "silent units"], rows)

    save_figure("sparse_representations", lambda plt: draw(plt, outputs))

    def pick(label, key, scale=1.0, digits=3):
        return f"{scale * summary[label][key]:.{digits}f}"
    relu, l1, st, logistic, kl = (r[0] for r in RUNS)
    return dict(
        relu_mean=pick(relu, "mean"), relu_active=pick(relu, "active", 100, 0), relu_test=pick(relu, "test"),
        l1_mean=pick(l1, "mean"), l1_active=pick(l1, "active", 100, 0), l1_test=pick(l1, "test"),
        st_mean=pick(st, "mean"), st_active=pick(st, "active", 100, 0), st_test=pick(st, "test"),
        logistic_mean=pick(logistic, "mean"), logistic_test=pick(logistic, "test"),
        kl_mean=pick(kl, "mean"), kl_median=pick(kl, "unit_median"), kl_active=pick(kl, "active", 100, 0),
        kl_test=pick(kl, "test"), l1_silent=pick(l1, "silent", 100, 0),
    )


def draw(plt, outputs):
    fig, axes = plt.subplots(2, len(outputs), figsize=(14, 4.6))
    for (top, bottom), (label, (h, unit_means)) in zip(axes.T, outputs.items()):
        top.hist(h.ravel(), bins=50, color="tab:blue")
        top.set_yscale("log")
        top.set_title(label, fontsize=8)
        top.set_xlabel("hidden output h (test digits)")
        bottom.hist(unit_means, bins=30, color="tab:orange")
        bottom.set_xlabel("a unit's mean output over the test digits")
    axes[0, 0].set_ylabel("count (log scale)")
    axes[1, 0].set_ylabel("units")
    return fig


if __name__ == "__main__":
    main()
