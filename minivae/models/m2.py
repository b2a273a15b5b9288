"""The semi-supervised M2 model (Kingma, Rezende, Mohamed, Welling 2014): a CVAE plus a classifier q(y|x) that
learns from a few labelled images and many unlabelled ones.

    generative model   p(y) = 1/K (uniform),  p(z) = N(0, I),  p(x|y,z): a conditional VAE's decoder (vae.py)
    inference          q(y|x): an MLP classifier (classifier.py),  q(z|x,y): the conditional VAE's encoder

For a labelled image, the -ELBO of log p(x, y) is the CVAE's loss plus -log p(y) = log K:

    E(x, y) = recon(x|z,y) + KL(q(z|x,y) || N(0, I)) + log K,     z ~ q(z|x,y)

For an unlabelled image the class is a latent variable too. Summing over all K values of y, by enumeration:

    U(x) = sum_y q(y|x) E(x, y) - H(q(y|x)) = sum_y q(y|x) [E(x, y) + log q(y|x)]    (-ELBO of log p(x))

U alone would teach q(y|x) only to put its mass on classes whose E is small, never what the labels say, so the
labelled images also pay the classifier's cross-entropy, weighted by alpha:

    loss = mean_labelled [w_l * E(x, y) + alpha * (-log q(y|x))] + mean_unlabelled U(x)

One step is one pass through the CVAE with B_l + K * B_u rows: the labelled images with their class, then the
unlabelled ones repeated K times, once per class (row k * B_u + b is image b guessed as class k). Each row's
-ELBO enters the loss with a weight of its own: w_l/B_l for a labelled row, q(k|x_b) / B_u for a guess, which is
what `VAE.weighted_step` takes. The classifier gets one pass too, over the B_l + B_u images.

alpha and w_l. The paper sums over the data set, J = sum_l E + sum_u U + alpha * sum_l CE, with alpha = 0.1 N.
Per-example means, as here, give J / N_u when each mean is weighted by its share of the data set:

    J / N_u = (N_l / N_u) mean_l E + alpha (N_l / N_u) mean_l CE + mean_u U

so w_l = N_l / N_u (1/599 for 100 labels of 60,000 images; the training command works it out from the training
set) and the alpha here is the paper's times N_l / N_u, 0.1 N N_l / N_u, about 0.1 N_l: 10 for 100 labels, which
the m2 preset uses. (Taken literally, 0.1 N = 6,000 on a per-example mean would drown the unlabelled term, and M2
would be the classifier alone.) docs/experiments.md has what these weights measured on Fashion-MNIST.
"""

import math
from typing import NamedTuple

from minivae.core import backend
from minivae.core.losses import log_softmax, softmax_cross_entropy
from minivae.models.classifier import mlp_classifier
from minivae.models.vae import mlp_vae


def unlabelled_loss(logits, neg_elbos, grad=True):
    """U(x) = sum_y q(y|x) [E(x, y) + log q(y|x)] for B unlabelled images, with its gradient for the classifier.

    logits: (B, K), q(y|x) = softmax(logits); neg_elbos: (B, K), E(x_b, k) = -ELBO(x_b, k) for every class k.
    Returns U (B,) and dU_b/dlogits_b (B, K) (None when grad=False). E's own gradient (into the CVAE, with
    weight q) is not here: this is the path through q alone.
    """
    log_q = log_softmax(logits)
    q = backend.xp.exp(log_q)
    costs = neg_elbos + log_q  # c_bk = E(x_b, k) + log q(k|x_b)
    unlabelled = (q * costs).sum(axis=1)
    if not grad:
        return unlabelled, None
    # With q = softmax(a), U = sum_y q_y c_y and c_y = E_y + log q_y (E_y does not depend on a):
    #   dU/dq_y = c_y + 1                       (the 1 from d(q_y log q_y)/dq_y = log q_y + 1)
    #   dq_y/da_j = q_y ([y == j] - q_j)        (the softmax Jacobian)
    #   dU/da_j = sum_y (c_y + 1) q_y ([y == j] - q_j) = q_j (c_j + 1) - q_j sum_y q_y (c_y + 1)
    #           = q_j (c_j - U)                 (since sum_y q_y = 1 and sum_y q_y c_y = U)
    # A class gains probability when its cost c_j is below the average cost U. Shapes: (B, K).
    return unlabelled, q * (costs - unlabelled[:, None])


class M2Loss(NamedTuple):
    """Batch means in nats per example: loss = labelled_weight * labelled + alpha * classification + unlabelled."""

    loss: float
    labelled: float  # mean E(x, y) over the labelled batch
    classification: float  # mean -log q(y|x) over the labelled batch
    unlabelled: float  # mean U(x) over the unlabelled batch


class M2:
    """classifier: a classifier.Classifier (x -> logits over K classes); cvae: a vae.VAE conditioned on the same K
    classes (beta 1: the true ELBO); alpha: the weight of the labelled cross-entropy; labelled_weight: w_l, the
    weight of the labelled -ELBO (the paper's: N_l / N_u, see above).

    Parameters are named 'classifier.<name>' and the CVAE's own names ('encoder.0.W', 'mu.b', ...).
    """

    def __init__(self, classifier, cvae, alpha, labelled_weight=1.0):
        if classifier.classes != cvae.classes:
            raise ValueError(f"the classifier has {classifier.classes} classes but the CVAE {cvae.classes}")
        self.classifier, self.cvae, self.alpha, self.labelled_weight = classifier, cvae, alpha, labelled_weight
        self.classes, self.latent = cvae.classes, cvae.latent
        self.log_prior_y = -math.log(self.classes)  # log p(y), uniform
        self.params = {f"classifier.{k}": a for k, a in classifier.params.items()} | cvae.params
        self.grads = {f"classifier.{k}": a for k, a in classifier.grads.items()} | cvae.grads

    def predict(self, x):
        """x (B, D) -> the most probable class under q(y|x), (B,) integers on the device."""
        return self.classifier.predict(x)

    def enumerate_classes(self, x):
        """x (B, D) -> (x repeated K times (K*B, D), labels (K*B,)): row k*B + b is image b with class k."""
        xp = backend.xp
        return xp.tile(x, (self.classes, 1)), xp.repeat(xp.arange(self.classes), len(x))

    # ---- per-example losses, without gradients ----------------------------------------------------------
    def labelled_losses(self, x, y, eps=None, rng=None):
        """E(x, y) and -log q(y|x), two (B,) arrays. x (B, D), y (B,), eps (B, L)."""
        labels = backend.to_device(y)
        recon, kl = self.cvae.per_example_losses(x, labels, eps, rng)
        nll, _ = softmax_cross_entropy(self.classifier.logits(x), labels, grad=False)
        return recon + kl - self.log_prior_y, nll

    def unlabelled_losses(self, x, eps=None, rng=None):
        """U(x), (B,). x (B, D); eps (K*B, L), one draw per (class, image) row as in `enumerate_classes`."""
        x_rows, y_rows = self.enumerate_classes(x)
        recon, kl = self.cvae.per_example_losses(x_rows, y_rows, eps, rng)
        neg_elbos = (recon + kl - self.log_prior_y).reshape(self.classes, len(x)).T  # (B, K): E(x_b, k)
        return unlabelled_loss(self.classifier.logits(x), neg_elbos, grad=False)[0]

    def loss_value(self, x_labelled, y_labelled, x_unlabelled, eps_labelled=None, eps_unlabelled=None):
        """The training loss of `step`, without gradients, as a float."""
        neg_elbos, nll = self.labelled_losses(x_labelled, y_labelled, eps_labelled)
        unlabelled = self.unlabelled_losses(x_unlabelled, eps_unlabelled)
        return self.labelled_weight * _mean(neg_elbos) + self.alpha * _mean(nll) + _mean(unlabelled)

    # ---- one training step ------------------------------------------------------------------------------
    def step(self, x_labelled, y_labelled, x_unlabelled, eps_labelled=None, eps_unlabelled=None, rng=None):
        """Forward and backward on a labelled batch (x (B_l, D), y (B_l,)) and an unlabelled one (B_u, D):
        fills `grads`, returns the M2Loss. eps_labelled (B_l, L) and eps_unlabelled (K*B_u, L) fix the noise."""
        xp = backend.xp
        n_l, n_u, k = len(x_labelled), len(x_unlabelled), self.classes
        per_l, per_u = 1.0 / max(n_l, 1), 1.0 / max(n_u, 1)  # the means' 1/B (either batch may be empty)
        labels = backend.to_device(y_labelled)
        # the classifier, on every image at once: logits (B_l + B_u, K)
        logits = self.classifier.logits(xp.concatenate([x_labelled, x_unlabelled]))
        nll, dlogits_labelled = softmax_cross_entropy(logits[:n_l], labels, scale=self.alpha * per_l)
        q = xp.exp(log_softmax(logits[n_l:]))  # q(y|x) of the unlabelled images, (B_u, K)
        # the CVAE, on the labelled rows and the K guesses at each unlabelled image, each row with its weight
        x_guesses, y_guesses = self.enumerate_classes(x_unlabelled)
        weights = xp.concatenate([xp.full(n_l, self.labelled_weight * per_l, dtype=q.dtype), q.T.reshape(-1) * per_u])
        eps = None if eps_labelled is None else xp.concatenate([eps_labelled, eps_unlabelled])
        recon, kl = self.cvae.weighted_step(xp.concatenate([x_labelled, x_guesses]), weights,
                                            xp.concatenate([labels, y_guesses]), eps, rng)
        neg_elbos = recon + kl - self.log_prior_y  # E of every row, (B_l + K*B_u,)
        unlabelled, dlogits_unlabelled = unlabelled_loss(logits[n_l:], neg_elbos[n_l:].reshape(k, n_u).T)
        dlogits_unlabelled *= per_u
        self.classifier.network.backward(xp.concatenate([dlogits_labelled, dlogits_unlabelled]), need_dx=False)
        labelled, classification, unlabelled = _mean(neg_elbos[:n_l]), _mean(nll), _mean(unlabelled)
        loss = self.labelled_weight * labelled + self.alpha * classification + unlabelled
        return M2Loss(loss, labelled, classification, unlabelled)

    def __repr__(self):
        return (f"M2(classifier={self.classifier!r}, cvae={self.cvae!r}, alpha={self.alpha}, "
                f"labelled_weight={self.labelled_weight:.4g})")


def _mean(values):
    """The mean of a (B,) array as a float; 0 for an empty batch."""
    return float(values.mean()) if len(values) else 0.0


def mlp_m2(input_dim=784, hidden=(500,), latent=50, classes=10, classifier_hidden=(500,), alpha=10.0,
           labelled_weight=1.0, activation="relu", init=None, rng=None, dtype="float32"):
    """M2 with MLPs: the classifier input_dim -> classifier_hidden... -> K, the conditional VAE as
    vae.mlp_vae(classes=K) (Bernoulli decoder on logits). The paper uses one hidden layer of 500 units everywhere
    and a latent of 50."""
    classifier = mlp_classifier(input_dim, classifier_hidden, classes, activation, init, rng, dtype)
    cvae = mlp_vae(input_dim, hidden, latent, activation, classes=classes, init=init, rng=rng, dtype=dtype)
    return M2(classifier, cvae, alpha, labelled_weight)
