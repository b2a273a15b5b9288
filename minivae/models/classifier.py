"""A classifier q(y|x): an MLP from images to logits over K classes, trained by softmax cross-entropy.

    x (B, D) --MLP--> logits a (B, K) --softmax--> q(y|x) (B, K)
    loss = mean_b -log q(y_b|x_b)                         (core/losses.py, nats per example)

It is three things in this library: the q(y|x) of the semi-supervised M2 model (m2.py), the baseline that
learns from the labelled images alone, and, with no hidden layer (a softmax regression), the classifier that
M1 trains on a VAE's latent means (demos/semi_supervised.py). `fit` trains one with Adam on a small labelled
set; `accuracy` scores one on a large one, in batches.
"""

import numpy as np

from minivae.core import backend
from minivae.core.layers import mlp
from minivae.core.layers_fast import ACTIVATIONS
from minivae.core.losses import log_softmax, softmax_cross_entropy
from minivae.core.optim_fast import FastAdam

EVAL_BATCH = 1000  # examples per forward pass when only predicting


class Classifier:
    """An MLP to logits. network: a layer from x (B, D) to logits (B, K); its params are this model's."""

    def __init__(self, network, classes):
        self.network, self.classes = network, classes
        self.params, self.grads = network.params, network.grads

    def logits(self, x):
        """x (B, D) -> logits (B, K)."""
        return self.network.forward(x)

    def probabilities(self, x):
        """x (B, D) -> q(y|x) (B, K), each row summing to 1."""
        return backend.xp.exp(log_softmax(self.logits(x)))

    def predict(self, x):
        """x (B, D) -> the most probable class of each example, (B,) integers on the device."""
        return self.logits(x).argmax(axis=1)

    def step(self, x, y):
        """Forward and backward on a labelled batch, x (B, D), y (B,) integers: fills `grads`, returns the mean
        cross-entropy in nats."""
        labels = backend.to_device(y)
        nll, dlogits = softmax_cross_entropy(self.logits(x), labels, scale=1.0 / len(x))
        self.network.backward(dlogits, need_dx=False)
        return float(nll.mean())

    def __repr__(self):
        return f"Classifier({self.network!r})"


def mlp_classifier(input_dim=784, hidden=(500,), classes=10, activation="relu", init=None, rng=None,
                   dtype="float32"):
    """input_dim -> hidden... -> classes logits (no activation on the last layer). hidden=() gives a softmax
    regression: one Dense layer. init as in layers.mlp (None: He before a ReLU, LeCun-normal elsewhere)."""
    return Classifier(mlp([input_dim, *hidden, classes], activation, None, init, rng, dtype, ACTIVATIONS), classes)


def accuracy(model, x, y, batch_size=EVAL_BATCH):
    """The fraction of x (host array, (N, D)) whose predicted class equals y (host integers, (N,))."""
    predicted = np.concatenate([backend.to_numpy(model.predict(backend.to_device(x[start:start + batch_size])))
                                for start in range(0, len(x), batch_size)])
    return float(np.mean(predicted == np.asarray(y)))


def fit(model, x, y, steps=2000, batch_size=100, lr=1e-3, rng=None):
    """Train on a small labelled set with Adam: `steps` steps on batches drawn with replacement by rng (a NumPy
    generator; default seeded 0). x: (N, D) host float32, y: (N,) host integers. Returns the last batch's loss."""
    rng = np.random.default_rng(0) if rng is None else rng
    optimizer = FastAdam(model.params, lr=lr)
    loss = float("nan")
    for _ in range(steps):
        idx = rng.integers(0, len(x), size=min(batch_size, len(x)))
        loss = model.step(backend.to_device(x[idx]), y[idx])
        optimizer.step(model.grads)
    return loss
