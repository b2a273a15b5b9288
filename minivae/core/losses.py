"""Reconstruction losses: -log p(x|z) for the decoder's output, with closed-form gradients.

Every function takes the decoder output `out` and the data `x`, both (B, D), and returns

    nll:  (B,)  the loss of each example, summed over its D pixels (nats per example)
    dout: (B, D) the gradient of  scale * sum(nll)  with respect to out (None when grad=False)

The model passes scale = 1/B, so the training loss is the *mean over the batch of per-example sums*: every
figure minivae prints reads as nats per example, comparable across batch sizes.

* `bce_logits`   Bernoulli decoder, out = logits a (no sigmoid layer). The stable form; use this one.
* `bce_probs`    Bernoulli decoder, out = probabilities p = sigmoid(a) (the Keras tutorials' form). Less stable:
                 p rounds to exactly 0 or 1 in float32 once |a| > ~17, so it must be clipped, and the clip
                 cuts the gradient off (it is 0 where p was clipped).
* `continuous_bernoulli` (recon 'cb') the continuous Bernoulli on logits: the Bernoulli's formula made a true
                 density on [0, 1] by its normalising constant (continuous_bernoulli.py). For grayscale pixels.
* `squared_error` the sum of squared errors of tutorial 001 (out = pixel means after a sigmoid). It is the
                 -log-likelihood of a Gaussian decoder N(x; out, 1/2) up to the constant D/2 log(pi), which
                 `gaussian_nll_constant` gives for log-likelihood estimates.

And one loss for labels rather than pixels: `softmax_cross_entropy`, -log q(y|x) of a classifier that outputs
logits over K classes (models/classifier.py, models/m2.py). It takes integer labels (B,) instead of x.
"""

import math

from minivae.core import backend
from minivae.core import continuous_bernoulli as _cb

PROB_CLIP = 1e-7  # Keras's epsilon: probabilities are clipped to [1e-7, 1 - 1e-7]


def bce_logits(logits, x, scale=1.0, grad=True):
    """Binary cross-entropy on logits a, stable for any a:

        -log p(x|a) = -[x log s(a) + (1-x) log(1 - s(a))] = softplus(a) - x a,   s = sigmoid
        softplus(a) = log(1 + e^a) = max(a, 0) + log1p(e^-|a|)   (never overflows: e^-|a| <= 1)
        d/da = s(a) - x,   and s(a) = exp(a - softplus(a)) reuses the softplus (no division, no overflow)

    logits, x: (B, D). Returns nll (B,) and dlogits (B, D) = scale * (sigmoid(a) - x).
    """
    xp = backend.xp
    work = xp.abs(logits)  # one scratch array, reused in place for every elementwise pass
    xp.negative(work, out=work)
    xp.exp(work, out=work)
    xp.log1p(work, out=work)  # log1p(e^-|a|)
    softplus = xp.maximum(logits, 0)
    softplus += work
    nll = softplus.sum(axis=1) - xp.einsum("ij,ij->i", logits, x)  # einsum: the row dot products, no temporary
    if not grad:
        return nll, None
    xp.subtract(logits, softplus, out=work)
    xp.exp(work, out=work)  # sigmoid(a)
    work -= x
    if scale != 1.0:
        work *= scale
    return nll, work


def bce_probs(probs, x, scale=1.0, grad=True):
    """Binary cross-entropy on probabilities p (after a sigmoid layer), clipped as Keras does:

        -log p(x|p) = -[x log p + (1-x) log(1-p)],   p clipped to [1e-7, 1 - 1e-7]
        d/dp = (p - x) / (p (1 - p))   where p was inside the clip range, 0 where it was clipped

    Chained through the sigmoid's backward (s(1-s)) this gives (p - x) again, but computed as a ratio of
    tiny numbers: prefer `bce_logits`. probs, x: (B, D). Returns nll (B,) and dprobs (B, D).
    """
    xp = backend.xp
    clipped = xp.clip(probs, PROB_CLIP, 1 - PROB_CLIP)
    nll = -(x * xp.log(clipped) + (1 - x) * xp.log(1 - clipped)).sum(axis=1)
    if not grad:
        return nll, None
    inside = (probs == clipped)
    dprobs = (clipped - x) / (clipped * (1 - clipped)) * inside
    if scale != 1.0:
        dprobs *= scale
    return nll, dprobs


def squared_error(out, x, scale=1.0, grad=True):
    """Sum of squared errors: nll = sum_d (out_d - x_d)^2;  d/dout = 2 (out - x).

    out, x: (B, D). Returns nll (B,) and dout (B, D).
    """
    diff = out - x
    nll = (diff * diff).sum(axis=1)
    if not grad:
        return nll, None
    diff *= 2 * scale
    return nll, diff


continuous_bernoulli = _cb.nll

RECONSTRUCTIONS = {"bce": bce_logits, "bce-prob": bce_probs, "mse": squared_error, "cb": continuous_bernoulli}
LOGIT_RECONSTRUCTIONS = ("bce", "cb")  # the decoder's last layer outputs logits for these (no sigmoid)


def likelihood_meaning(recon, binarize):
    """Is the model's log-likelihood a true log-density (or log-probability) of the test images? Returns
    (is_density, one line saying what the number is and what it compares with). recon: the reconstruction
    loss; binarize: the data's binarization, 'none' for grayscale (run/data.py).

    Only true densities of the same images compare across models. The Bernoulli on grayscale pixels is the
    exception: it does not integrate to 1 over [0, 1], so its "log-likelihood" is not the log of anything.
    """
    grayscale = binarize == "none"
    if recon in ("bce", "bce-prob"):
        if grayscale:
            return False, ("not a log-density: a Bernoulli likelihood of grayscale pixels does not integrate to 1 "
                           "over [0, 1]; compare it only with other Bernoulli models (recon 'cb' is a true density)")
        return True, "a log-probability of the binary images (Bernoulli): it compares across models on them"
    if recon == "cb":
        if grayscale:
            return True, "a log-density on [0, 1]^D (continuous Bernoulli): it compares with other densities"
        return True, ("a log-density on [0, 1]^D (continuous Bernoulli), of binary images: it does not compare "
                      "with a Bernoulli's log-probabilities of them")
    if grayscale:
        return True, ("a log-density on R^D (Gaussian N(x; out, 1/2), constant included): it compares with other "
                      "densities of the same images")
    return True, ("a log-density on R^D (Gaussian N(x; out, 1/2), constant included) of binary images: it compares "
                  "with other densities on R^D, not with a Bernoulli's log-probabilities of the same images")


def gaussian_nll_constant(dim):
    """The constant that turns `squared_error` into a true -log N(x; out, 1/2 I): (D/2) log(pi)."""
    return 0.5 * dim * math.log(math.pi)


def log_softmax(logits):
    """log softmax(a) over the last axis, (B, K) -> (B, K), stable for any a:

        log softmax(a)_k = a_k - log sum_j e^(a_j) = (a_k - m) - log sum_j e^(a_j - m),   m = max_j a_j

    The shift by the row's largest logit makes every exponent <= 0, so exp never overflows.
    """
    xp = backend.xp
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, labels, scale=1.0, grad=True):
    """The classifier's loss, -log q(y|x) with q = softmax(logits):

        nll_b = -log softmax(a_b)_(y_b) = log sum_j e^(a_bj) - a_b(y_b)
        d nll_b / d a_bk = softmax(a_b)_k - [k == y_b]        (the probabilities, minus 1 at the true class)

    logits: (B, K); labels: (B,) integers in [0, K), on the same device as logits.
    Returns nll (B,) and dlogits (B, K) = scale * (softmax(a) - onehot(y)) (None when grad=False).
    """
    xp = backend.xp
    log_probs = log_softmax(logits)
    rows = xp.arange(len(labels))
    nll = -log_probs[rows, labels]
    if not grad:
        return nll, None
    dlogits = xp.exp(log_probs)
    dlogits[rows, labels] -= 1
    if scale != 1.0:
        dlogits *= scale
    return nll, dlogits
