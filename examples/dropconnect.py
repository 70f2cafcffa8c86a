"""DropConnect vs dropout vs no regularization, on the 300 training digits of
the overfitting example with the same network.

dropkit's DropConnect draws one weight mask per minibatch (shared by the
minibatch's examples) and predicts with the mean weights; the table also
shows the Monte Carlo average of 100 passes, each pass one sampled weight
mask for all the test digits.

    python examples/dropconnect.py
"""
import time

import numpy as np

from dropkit import MLPClassifier

from _common import SEEDS, cross_entropy, digits, fixed_epochs, note, print_table, save_figure, spread

N_TRAIN, EPOCHS, K = 300, 150, 100
BASE = dict(hidden_layer_sizes=(256, 256), solver="adam", learning_rate_init=1e-3, batch_size=32,
            **fixed_epochs(EPOCHS))
RUNS = [
    ("none", {}),
    ("dropout (0.5 hidden, 0.2 input)", dict(dropout=0.5, input_dropout=0.2)),
    ("DropConnect 0.5, every layer", dict(dropconnect=0.5)),
]


def main():
    X_train, X_test, y_train, y_test = digits(N_TRAIN)
    rows, summary, curves = [], {}, {}
    for name, params in RUNS:
        runs = []
        for seed in SEEDS:
            start = time.perf_counter()
            clf = MLPClassifier(random_state=seed, **BASE, **params).fit(X_train, y_train)
            seconds = time.perf_counter() - start
            loss = lambda proba: cross_entropy(y_test, proba, clf.classes_)
            run = dict(train=clf.score(X_train, y_train), test=clf.score(X_test, y_test),
                       loss=loss(clf.predict_proba(X_test)), ms=1000 * sum(clf.history_["time"]) / clf.n_iter_,
                       seconds=seconds)
            if params:
                p = clf.predict_proba(X_test, mc_samples=K, random_state=seed)
                run.update(mc_test=np.mean(clf.classes_[p.argmax(axis=1)] == y_test), mc_loss=loss(p))
            runs.append(run)
            if seed == SEEDS[0]:
                curves[name] = clf.history_["loss"]
        values = lambda key: [r[key] for r in runs]
        mc = (spread(values("mc_test")), f"{np.mean(values('mc_loss')):.3f}") if params else ("", "")
        rows.append([name, spread(values("train")), spread(values("test")), f"{np.mean(values('loss')):.3f}",
                     *mc, f"{np.mean(values('ms')):.1f}"])
        summary[name] = {key: float(np.mean(values(key))) for key in runs[0]}

    note(f"{N_TRAIN} training digits (stratified subset), {len(X_test)} test digits; 64-256-256-10 relu, Adam "
         f"(lr 1e-3), batch 32, {EPOCHS} epochs; mean over seeds {', '.join(map(str, SEEDS))} (min-max in "
         f"brackets). Default prediction: dropout and DropConnect off (weight scaling; for DropConnect the mean "
         f"weights). Monte Carlo: the mean of {K} stochastic passes' probabilities. ms/epoch: the engine's time "
         f"per epoch on this machine.")
    print_table(["regularizer", "train acc", "test acc", "test loss", f"test acc, MC K={K}", f"test loss, MC K={K}",
                 "ms/epoch"], rows)

    save_figure("dropconnect", lambda plt: draw(plt, curves))
    none, dropout, dc = (name for name, _ in RUNS[:3])
    return dict(
        none_test=f"{summary[none]['test']:.3f}", dropout_test=f"{summary[dropout]['test']:.3f}",
        dc_test=f"{summary[dc]['test']:.3f}", dc_mc_test=f"{summary[dc]['mc_test']:.3f}",
        none_loss=f"{summary[none]['loss']:.3f}", dropout_loss=f"{summary[dropout]['loss']:.3f}",
        dc_loss=f"{summary[dc]['loss']:.3f}", dc_mc_loss=f"{summary[dc]['mc_loss']:.3f}",
        dc_slowdown=f"{summary[dc]['ms'] / summary[none]['ms']:.1f}",
    )


def draw(plt, curves):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, loss in curves.items():
        ax.semilogy(np.arange(1, len(loss) + 1), loss, label=name)
    ax.set(xlabel="epoch", ylabel="training loss (with the masks on)", title=f"seed {SEEDS[0]}")
    ax.legend(frameon=False, fontsize=8)
    return fig


if __name__ == "__main__":
    main()
