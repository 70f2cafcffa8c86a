"""Exercise every part of the extension that allocates, for LeakSanitizer.

Run by .ci/run under the sanitizer build (see README, Development); a leak
in the extension fails that run. Not a pytest module.
"""
import warnings

import numpy as np
from sklearn.datasets import load_digits

import dropkit

warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True)
X = X / 16.0
for i in range(5):
    model = dropkit.MLPClassifier((32, 16), dropout=0.2, input_dropout=0.1, dropconnect=0.1, l1=1e-4, max_norm=3.0,
                                  activity_penalty=dropkit.ActivityL1(0.01), max_iter=2, random_state=i).fit(X, y)
    model.predict_proba(X, mc_samples=3, random_state=0)
    model.save("leak_check.dkm")
    dropkit.load("leak_check.dkm").predict(X)
    net = dropkit.Network(64, [dropkit.Dense(8, ("maxout", 2)), dropkit.Dense(6, ("prelu", 0.2)),
                               dropkit.Dense(10, "identity")])
    out = net.forward(X[:5], training=True)
    net.zero_grad()
    net.backward(out)
    net.step()
    dropkit.MLPRegressor((8,), max_iter=2, random_state=i).fit(X, y.astype(float)).predict(X)
    dropkit.functional.dense(X[:3], np.ones((64, 4)), np.zeros(4), "tanh")
print("leak check ran")
