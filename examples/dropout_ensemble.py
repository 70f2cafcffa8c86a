"""Dropout as an ensemble: the weight-scaling rule vs Monte Carlo averages of
K stochastic passes, and inverted vs standard dropout.

1. A 64-256-256-10 relu network trained with dropout (0.5 hidden, 0.2 input)
   on the digits predicts the test digits by the weight-scaling rule (dropout
   off, the default) and by averaging the softmax of K = 1, 10, 100 passes
   with dropout on (``predict_proba(X, mc_samples=K)``).
2. Inverted vs standard dropout, in three senses: (a) for a linear layer the
   mean of the training-time pass over masks equals each mode's prediction
   rule, checked against Monte Carlo means; (b) a standard-dropout network
   whose weights are the inverted network's divided by the keep probability
   computes the same function, in training (same masks) and at prediction;
   (c) two networks trained from the same seed, one per mode, are different
   networks (the optimizer sees rescaled weights) whose predictions mostly agree.

    python examples/dropout_ensemble.py
"""
import numpy as np
from dropkit import Dense, MLPClassifier, Network

from _common import cross_entropy, digits, fixed_epochs, note, print_table, save_figure

EPOCHS, SEED = 100, 0
NET = dict(hidden_layer_sizes=(256, 256), dropout=0.5, input_dropout=0.2, solver="adam", learning_rate_init=1e-3,
           batch_size=32, random_state=SEED, **fixed_epochs(EPOCHS))
KS = (1, 10, 100)


def main():
    X_train, X_test, y_train, y_test = digits()
    summary = {}

    # 1. the weight-scaling rule vs Monte Carlo averages
    clf = MLPClassifier(**NET).fit(X_train, y_train)
    loss = lambda proba: cross_entropy(y_test, proba, clf.classes_)
    p_ws = clf.predict_proba(X_test)
    label_ws = clf.classes_[p_ws.argmax(axis=1)]
    rows = [["weight scaling (dropout off)", f"{np.mean(label_ws == y_test):.3f}", f"{loss(p_ws):.3f}",
             "1.000", "0"]]
    mc_curve = []
    for K in KS:
        p = clf.predict_proba(X_test, mc_samples=K, random_state=SEED)
        label = clf.classes_[p.argmax(axis=1)]
        agree = np.mean(label == label_ws)
        rows.append([f"Monte Carlo, K = {K}", f"{np.mean(label == y_test):.3f}", f"{loss(p):.3f}",
                     f"{agree:.3f}", f"{np.abs(p - p_ws).max(axis=1).mean():.3f}"])
        summary[f"mc{K}_agree"] = f"{100 * agree:.1f}%"
        summary[f"mc{K}_acc"] = f"{np.mean(label == y_test):.3f}"
    # the normalised geometric mean of single passes, which the weight-scaling
    # rule approximates (exactly so for a single softmax layer)
    log_p = np.mean([np.log(clf.predict_proba(X_test, mc_samples=1, random_state=k) + 1e-30)
                     for k in range(KS[-1])], axis=0)
    p_geo = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    p_geo /= p_geo.sum(axis=1, keepdims=True)
    label = clf.classes_[p_geo.argmax(axis=1)]
    rows.append([f"geometric mean of {KS[-1]} single passes", f"{np.mean(label == y_test):.3f}",
                 f"{loss(p_geo):.3f}", f"{np.mean(label == label_ws):.3f}",
                 f"{np.abs(p_geo - p_ws).max(axis=1).mean():.3f}"])
    summary["geo_dp"] = f"{np.abs(p_geo - p_ws).max(axis=1).mean():.3f}"
    summary["mc100_dp"] = rows[len(KS)][4]
    summary["mc100_loss"] = rows[len(KS)][2]
    summary["ws_loss"] = rows[0][2]
    summary["ws_acc"] = f"{np.mean(label_ws == y_test):.3f}"
    for K in (1, 2, 5, 10, 20, 50, 100):
        p = clf.predict_proba(X_test, mc_samples=K, random_state=SEED)
        mc_curve.append((K, np.mean(clf.classes_[p.argmax(axis=1)] == y_test), loss(p)))

    note(f"Digits, {len(X_train)} training and {len(X_test)} test images; 64-256-256-10 relu, dropout 0.5 on "
         f"the hidden layers and 0.2 on the inputs (inverted), Adam, batch 32, {EPOCHS} epochs, seed {SEED}. "
         f"Agreement: the fraction of test digits given the same label as the weight-scaling rule; "
         f"mean max abs dp: the largest difference from the weight-scaling probabilities over the classes, "
         f"averaged over the test digits. The Monte Carlo rows average the K passes' probabilities; the last row "
         f"averages their logarithms instead and renormalises.")
    print_table(["prediction", "test acc", "test loss", "agreement", "mean max abs dp"], rows)

    # 2a. the scaling rule is exact in expectation for a linear layer
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((50, 40)).astype(np.float32)
    rows = []
    for mode in ("inverted", "standard"):
        lin = Network(40, [Dense(5, "identity", dropout=0.5)], dropout_mode=mode, random_state=SEED)
        rule = lin.predict(X).astype(np.float64)
        scale = np.abs(rule).max()
        errors = []
        for K in (10, 100, 1000, 10000):
            mc = lin.predict(X, mc_samples=K, random_state=SEED).astype(np.float64)
            errors.append(np.abs(mc - rule).max() / scale)
        rows.append([mode] + [f"{e:.4f}" for e in errors])
        summary[f"linear_{mode}_10000"] = f"{errors[-1]:.4f}"
    note("(a) A linear layer 40 -> 5 with dropout 0.5 on its input: the largest difference between the mean of "
         "K training-time passes and the prediction rule, relative to the largest output. It falls like "
         "1/sqrt(K): the rule is the exact expectation.")
    print_table(["mode", "K = 10", "K = 100", "K = 1000", "K = 10000"], rows)

    # 2b. standard dropout with weights / keep is the inverted network
    layers = lambda: [Dense(256, "relu", dropout=0.2), Dense(256, "relu", dropout=0.5), Dense(10, "identity", 0.5)]
    inverted = Network(64, layers(), dropout_mode="inverted", random_state=SEED)
    standard = Network(64, layers(), dropout_mode="standard", random_state=SEED)
    for layer, w_inv, w_std, b_inv, b_std in zip(inverted.layers, inverted.weights, standard.weights,
                                                  inverted.biases, standard.biases):
        w_std[...] = w_inv / (1 - layer.dropout)
        b_std[...] = b_inv
    train_diff = np.abs(inverted.forward(X_test, training=True) - standard.forward(X_test, training=True)).max()
    predict_diff = np.abs(inverted.predict(X_test) - standard.predict(X_test)).max()
    output_scale = np.abs(inverted.predict(X_test)).max()
    note(f"(b) A 64-256-256-10 network with dropout 0.2, 0.5, 0.5 on the inputs of its layers: the standard-mode "
         f"network whose weights are the inverted one's divided by the keep probability gives the same outputs, "
         f"largest difference {train_diff:.1e} in a training pass (same seed, same masks) and {predict_diff:.1e} "
         f"at prediction, for outputs up to {output_scale:.1f} (float32 rounding).")
    summary["equivalence_train"] = f"{train_diff:.1e}"
    summary["equivalence_predict"] = f"{predict_diff:.1e}"

    # 2c. trained separately
    std_clf = MLPClassifier(**dict(NET, dropout_mode="standard")).fit(X_train, y_train)
    label_std = std_clf.predict(X_test)
    agree = np.mean(label_std == label_ws)
    note(f"(c) The network of part 1 trained again with dropout_mode='standard' and everything else equal "
         f"(same seed, so the same initial weights and masks): test accuracy {np.mean(label_std == y_test):.3f} "
         f"(inverted: {np.mean(label_ws == y_test):.3f}); the two agree on {100 * agree:.1f}% of the test digits. "
         f"They are not the same network: with the same initial weights, the standard network's effective "
         f"weights start smaller by the keep probability and Adam's steps are the same size in both "
         f"parameterisations.")
    summary["standard_acc"] = f"{np.mean(label_std == y_test):.3f}"
    summary["modes_agree"] = f"{100 * agree:.1f}%"

    save_figure("dropout_ensemble", lambda plt: draw(plt, mc_curve, np.mean(label_ws == y_test),
                                                     loss(p_ws)))
    return summary


def draw(plt, mc_curve, ws_acc, ws_loss):
    K, acc, loss = map(np.array, zip(*mc_curve))
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_acc.semilogx(K, acc, "o-", label="Monte Carlo average of K passes")
    ax_acc.axhline(ws_acc, color="k", ls="--", label="weight scaling")
    ax_acc.set(xlabel="K", ylabel="test accuracy")
    ax_loss.semilogx(K, loss, "o-")
    ax_loss.axhline(ws_loss, color="k", ls="--")
    ax_loss.set(xlabel="K", ylabel="test cross-entropy")
    ax_acc.legend(frameon=False, fontsize=8)
    return fig


if __name__ == "__main__":
    main()
