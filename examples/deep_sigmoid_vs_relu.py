"""Vanishing gradients: eight hidden layers of logistic (sigmoid) units vs the
same network with relu units.

The gradient norms are those of the very first step: one full-batch step on
all 1347 training digits from the initial weights (Glorot initialisation, as
scikit-learn's MLP), read from ``history_["grad_norm"]``, which holds each
layer's weight-gradient norm of the epoch's last minibatch. Then each network
trains for 60 epochs with momentum SGD and with Adam.

    python examples/deep_sigmoid_vs_relu.py
"""
import numpy as np

from dropkit import MLPClassifier

from _common import digits, fixed_epochs, note, print_table, save_figure

DEPTH, WIDTH, EPOCHS, SEED = 8, 64, 60, 0
ACTIVATIONS = ("logistic", "relu")
SOLVERS = (("sgd", 0.01), ("adam", 1e-3))  # sgd with scikit-learn's default momentum 0.9 (Nesterov)


def main():
    X_train, X_test, y_train, y_test = digits()
    net = dict(hidden_layer_sizes=(WIDTH,) * DEPTH, random_state=SEED)

    first_step = {}
    for activation in ACTIVATIONS:
        clf = MLPClassifier(activation=activation, solver="sgd", learning_rate_init=0.01, batch_size=len(X_train),
                            max_iter=1, **net).fit(X_train, y_train)
        first_step[activation] = np.array(clf.history_["grad_norm"][0])

    note(f"Digits, {len(X_train)} training and {len(X_test)} test images; 64-" + "-".join([str(WIDTH)] * DEPTH)
         + f"-10 networks, seed {SEED}. Norm of each layer's weight gradient at the first step (the whole "
         f"training set as one batch, initial weights); layer 1 is next to the input, layer {DEPTH + 1} is the "
         f"output layer.")
    rows = [[str(i + 1)] + [f"{first_step[a][i]:.2e}" for a in ACTIVATIONS] for i in range(DEPTH + 1)]
    ratio = {a: first_step[a][-1] / max(first_step[a][0], np.finfo(np.float64).tiny) for a in ACTIVATIONS}
    rows.append(["output / layer 1"] + [f"{ratio[a]:.1e}" for a in ACTIVATIONS])
    print_table(["layer", "logistic: gradient norm", "relu: gradient norm"], rows)

    curves, rows, results = {}, [], {}
    for activation in ACTIVATIONS:
        for solver, lr in SOLVERS:
            clf = MLPClassifier(activation=activation, solver=solver, learning_rate_init=lr, batch_size=32,
                                **fixed_epochs(EPOCHS), **net).fit(X_train, y_train)
            loss = clf.history_["loss"]
            curves[f"{activation}, {solver}"] = loss
            results[(activation, solver)] = clf.score(X_test, y_test)
            rows.append([activation, f"{solver} (lr {lr:g})", f"{loss[0]:.3f}", f"{loss[9]:.3f}", f"{loss[-1]:.3f}",
                         f"{clf.score(X_train, y_train):.3f}", f"{results[(activation, solver)]:.3f}"])
    note(f"Training for {EPOCHS} epochs, batch 32 (chance level: loss ln 10 = 2.303, accuracy about 0.10):")
    print_table(["activation", "solver", "train loss, epoch 1", "epoch 10", f"epoch {EPOCHS}", "train acc",
                 "test acc"], rows)

    save_figure("deep_sigmoid_vs_relu", lambda plt: draw(plt, first_step, curves))
    return dict(
        sigmoid_first=f"{first_step['logistic'][0]:.1e}", sigmoid_output=f"{first_step['logistic'][-1]:.2f}",
        sigmoid_ratio=f"{ratio['logistic']:.0e}", relu_ratio=f"{ratio['relu']:.1f}",
        relu_first=f"{first_step['relu'][0]:.3f}", relu_output=f"{first_step['relu'][-1]:.3f}",
        sigmoid_sgd=f"{results[('logistic', 'sgd')]:.3f}", sigmoid_adam=f"{results[('logistic', 'adam')]:.3f}",
        relu_sgd=f"{results[('relu', 'sgd')]:.3f}", relu_adam=f"{results[('relu', 'adam')]:.3f}",
    )


def draw(plt, first_step, curves):
    fig, (ax_grad, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    layers = np.arange(1, DEPTH + 2)
    for activation, norms in first_step.items():
        shown = np.where(norms > 0, norms, np.nan)  # log axis: a norm that underflowed to 0 is left out
        ax_grad.semilogy(layers, shown, "o-", label=activation)
    ax_grad.set(xlabel="layer (1 = next to the input)", ylabel="weight-gradient norm",
                title="first step, full batch, initial weights")
    ax_grad.legend(frameon=False)
    for label, loss in curves.items():
        ax_loss.plot(np.arange(1, len(loss) + 1), loss, label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training")
    ax_loss.legend(frameon=False, fontsize=8)
    return fig


if __name__ == "__main__":
    main()
