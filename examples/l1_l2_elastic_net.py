"""L1, L2 and the elastic net on the same network and data: accuracy, and how
many weights end exactly at zero.

The digits get 64 extra input features that carry no information: the pixel
columns of *other* images (rows shuffled), so they look like pixels but are
unrelated to the label. A (128,) relu network is trained with Adam for 60
epochs under each penalty, over three seeds.

    python examples/l1_l2_elastic_net.py
"""
import numpy as np

from dropkit import MLPClassifier

from _common import SEEDS, digits, fixed_epochs, note, percent, print_table, save_figure, spread

EPOCHS = 60
BASE = dict(hidden_layer_sizes=(128,), solver="adam", learning_rate_init=1e-3, batch_size=32,
            **fixed_epochs(EPOCHS))
PENALTIES = [
    ("none", {}),
    ("L2 (l2=1e-2)", dict(l2=1e-2)),
    ("L1 proximal (l1=1e-3)", dict(l1=1e-3)),
    ("elastic net (l1=1e-3, l2=1e-2)", dict(l1=1e-3, l2=1e-2)),
    ("L1 subgradient (l1=1e-3)", dict(l1=1e-3, l1_mode="subgradient")),
]


def with_irrelevant_features(X, rng):
    return np.hstack([X, X[rng.permutation(len(X))]])


def main():
    X_train, X_test, y_train, y_test = digits()
    rng = np.random.default_rng(0)
    X_train = with_irrelevant_features(X_train, rng)
    X_test = with_irrelevant_features(X_test, rng)
    n_pixels = X_train.shape[1] // 2

    rows, results = [], {}
    for name, penalty in PENALTIES:
        runs = []
        for seed in SEEDS:
            clf = MLPClassifier(random_state=seed, **BASE, **penalty).fit(X_train, y_train)
            W1, W2 = clf.coefs_
            every = np.concatenate([w.ravel() for w in clf.coefs_])
            runs.append(dict(
                train=clf.score(X_train, y_train), test=clf.score(X_test, y_test),
                zeros=np.mean(every == 0), zeros_1=np.mean(W1 == 0), zeros_2=np.mean(W2 == 0),
                no_input=np.mean(np.all(W1 == 0, axis=0)),
                pixels=np.abs(W1[:n_pixels]).mean(), irrelevant=np.abs(W1[n_pixels:]).mean(),
                recorded=clf.history_["zero_fraction"][-1], weights=W1.ravel().copy()))
        results[name] = runs
        values = lambda key: [r[key] for r in runs]
        rows.append([name, f"{np.mean(values('train')):.3f}", spread(values("test")), percent(values("zeros")),
                     percent(values("zeros_1")), percent(values("zeros_2")), percent(values("no_input"), 0),
                     f"{np.mean(values('pixels')):.4f}", f"{np.mean(values('irrelevant')):.4f}"])

    note(f"Digits with {n_pixels} irrelevant features appended ({X_train.shape[1]} inputs), "
         f"{len(X_train)} training and {len(X_test)} test images; a {X_train.shape[1]}-128-10 relu network, "
         f"Adam (lr 1e-3), batch 32, {EPOCHS} epochs. Mean over seeds {', '.join(map(str, SEEDS))} "
         f"(test accuracy: min-max in brackets). 'Zero' means exactly 0.0 in the float32 weights; "
         f"a hidden unit with no input has every incoming weight at zero.")
    print_table(["penalty", "train acc", "test acc", "zero weights", "layer 1", "layer 2", "units with no input",
                 "mean abs W1, pixels", "mean abs W1, irrelevant"], rows)

    # history_["zero_fraction"] counts the same zeros the table does
    for runs in results.values():
        for r in runs:
            assert abs(r["recorded"][0] - r["zeros_1"]) < 1e-12

    save_figure("l1_l2_elastic_net", lambda plt: draw(plt, results))

    mean = lambda name, key: float(np.mean([r[key] for r in results[name]]))
    l1, none = "L1 proximal (l1=1e-3)", "none"
    return dict(
        l1_zero_fraction=f"{100 * mean(l1, 'zeros'):.0f}%",
        l1_zero_fraction_layer1=f"{100 * mean(l1, 'zeros_1'):.0f}%",
        l1_test=f"{mean(l1, 'test'):.3f}", none_test=f"{mean(none, 'test'):.3f}",
        l1_cost=f"{100 * (mean(none, 'test') - mean(l1, 'test')):.1f} points",
        l1_no_input=f"{100 * mean(l1, 'no_input'):.0f}%",
        l1_irrelevant_ratio=f"{mean(l1, 'pixels') / mean(l1, 'irrelevant'):.0f}",
        l2_weight_ratio=f"{mean(none, 'pixels') / mean('L2 (l2=1e-2)', 'pixels'):.1f}",
        l2_zero_fraction=f"{100 * mean('L2 (l2=1e-2)', 'zeros'):.2f}%",
        subgradient_zero_fraction=f"{100 * mean('L1 subgradient (l1=1e-3)', 'zeros'):.2f}%",
        enet_zero_fraction=f"{100 * mean('elastic net (l1=1e-3, l2=1e-2)', 'zeros'):.0f}%",
        enet_test=f"{mean('elastic net (l1=1e-3, l2=1e-2)', 'test'):.3f}",
    )


def draw(plt, results):
    names = [name for name, _ in PENALTIES]
    fig, axes = plt.subplots(1, len(names), figsize=(13, 2.8), sharey=True)
    bins = np.linspace(-0.4, 0.4, 81)
    for ax, name in zip(axes, names):
        w = results[name][0]["weights"]  # the first seed
        ax.hist(np.clip(w[w != 0], bins[0], bins[-1]), bins=bins, color="tab:blue", label="non-zero")
        ax.bar([0], [np.sum(w == 0)], width=0.02, color="tab:red", label="exactly 0")
        ax.set_yscale("log")
        ax.set_title(f"{name}\n{100 * np.mean(w == 0):.0f}% exactly zero", fontsize=8)
        ax.set_xlabel("first-layer weight (clipped to ±0.4)")
    axes[0].set_ylabel("count (log scale)")
    axes[0].legend(fontsize=7, frameon=False)
    return fig


if __name__ == "__main__":
    main()
