"""Independent references for the tests: what minivae's losses, bounds and evaluations should come to, written again
from their definitions in float64 with SciPy's densities and plain loops, one image (and one class, one sample) at
a time. Nothing here calls a loss, a posterior, a sampler or a helper of minivae; only the model's layers are run
(its encoder, heads and decoder, each a `forward`), so that a mistake in how minivae puts the pieces together --
a constant, a reshape, a class enumeration, a weight, a mean -- shows as a difference from these numbers.

Shapes: x (D,) is one image, logits/out (D,) its decoder's output, mu and std (L,) its posterior, z (L,).
"""

import math

import numpy as np
from scipy import special, stats

from minivae.core import backend


def host(a):
    """A backend array (or anything array-like) as a float64 NumPy array."""
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


# ---- log-densities, from SciPy -------------------------------------------------------------------------------------

def bernoulli_log_likelihood(logits, x):
    """log p(x|logits) = sum_d log Bernoulli(x_d; sigmoid(a_d)), for pixels x in [0, 1] (the cross-entropy form,
    which is scipy.stats.bernoulli.logpmf for binary x)."""
    return float(np.sum(x * special.log_expit(logits) + (1 - x) * special.log_expit(-logits)))


def bernoulli_prob_log_likelihood(probs, x):
    """The same for probabilities p = sigmoid(a) (the 'bce-prob' decoder), clipped as Keras does to [1e-7, 1 - 1e-7]."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(np.sum(x * np.log(p) + (1 - x) * np.log1p(-p)))


def gaussian_log_likelihood(out, x):
    """log N(x; out, 1/2 I): the squared-error decoder as the density it is, by scipy.stats.norm."""
    return float(stats.norm.logpdf(x, loc=out, scale=math.sqrt(0.5)).sum())


def continuous_bernoulli_log_likelihood(logits, x):
    """log CB(x; sigmoid(a)) = log C(lam) + x log lam + (1 - x) log(1 - lam), with the normalising constant
    C(lam) = 1 / integral_0^1 lam^t (1 - lam)^(1 - t) dt worked out in closed form by integrating e^(a t):
    integral = (1 - lam) (e^a - 1) / a  (1 - lam at a = 0)."""
    a = np.asarray(logits, dtype=np.float64)
    one_minus_lam = special.expit(-a)
    integral = one_minus_lam * np.where(a == 0, 1.0, special.expm1(a) / np.where(a == 0, 1.0, a))
    return float(np.sum(-np.log(integral) + x * special.log_expit(a) + (1 - x) * special.log_expit(-a)))


LOG_LIKELIHOODS = {"bce": bernoulli_log_likelihood, "bce-prob": bernoulli_prob_log_likelihood,
                   "mse": gaussian_log_likelihood, "cb": continuous_bernoulli_log_likelihood}


def log_normal(z, mu, std):
    """log N(z; mu, diag(std^2)), by scipy.stats.norm."""
    return float(stats.norm.logpdf(z, loc=mu, scale=std).sum())


def kl_to_prior(mu, std, log_floor=0.0):
    """KL(N(mu, diag(std^2)) || N(0, I)) = sum_l [log(1/std_l) + (std_l^2 + mu_l^2) / 2 - 1/2]. log_floor: the
    tiny number the sigma posterior adds to std^2 inside the log (tutorial 001's 1e-10, so that sigma = 0 is
    finite): log(1/std) becomes -log(std^2 + floor) / 2."""
    return float(np.sum(-0.5 * np.log(std**2 + log_floor) + (std**2 + mu**2) / 2 - 0.5))


SIGMA_LOG_FLOOR = 1e-10  # tutorial 001's KL: 0.5 (mu^2 + sigma^2 - 1 - log(1e-10 + sigma^2))


# ---- the model's pieces, run one image at a time ---------------------------------------------------------------------

def joined(a, label, classes):
    """[a, onehot(label)] for a conditioned model, a itself without classes: one row (1, n + K)."""
    a = np.asarray(a, dtype=np.float64).reshape(1, -1)
    if not classes:
        return a
    return np.concatenate([a, np.eye(classes)[[label]]], axis=1)


def posterior(vae, x, label=None):
    """(mu, std) of q(z|x) (or q(z|x, y)) for one image x (D,): the encoder and the two heads, run on one row."""
    device = backend.to_device(joined(x, label, vae.classes), dtype=vae.dtype)
    h = vae.encoder.forward(device)
    mu, scale = host(vae.mu_head.forward(h))[0], host(vae.scale_head.forward(h))[0]
    std = np.exp(0.5 * scale) if vae.posterior.scale_name == "logvar" else np.abs(scale)
    return mu, std


def decoder_out(vae, z, label=None):
    """The decoder's output (D,) for one z (L,) (and class): logits for 'bce' and 'cb', pixel means otherwise."""
    return host(vae.decoder.forward(backend.to_device(joined(z, label, vae.classes), dtype=vae.dtype)))[0]


def log_p_x_given_z(vae, x, z, label=None):
    """log p(x|z) (or log p(x|z, y)) of one image, as the density the decoder's loss is."""
    return LOG_LIKELIHOODS[vae.recon_name](decoder_out(vae, z, label), np.asarray(x, dtype=np.float64))


def neg_elbo(vae, x, eps, label=None, beta=1.0):
    """-(log p(x|z) - beta * KL) of one image with z = mu + std * eps: the single-sample -ELBO (recon + beta KL),
    as a (recon, kl) pair; recon is the true -log-density (with the Gaussian's constant for 'mse')."""
    mu, std = posterior(vae, x, label)
    floor = SIGMA_LOG_FLOOR if vae.posterior.scale_name == "sigma" else 0.0
    return -log_p_x_given_z(vae, x, mu + std * eps, label), kl_to_prior(mu, std, floor)


def log_weight(vae, x, eps, label=None):
    """log w = log p(x|z) + log p(z) - log q(z|x) for one image and one sample z = mu + std * eps."""
    mu, std = posterior(vae, x, label)
    z = mu + std * eps
    return log_p_x_given_z(vae, x, z, label) + log_normal(z, 0.0, 1.0) - log_normal(z, mu, std)


def importance_weighted(vae, x, eps_rows, label=None):
    """log (1/K) sum_i w_i for one image, its K samples eps_rows (K, L): scipy.special.logsumexp."""
    log_w = [log_weight(vae, x, eps, label) for eps in eps_rows]
    return float(special.logsumexp(log_w) - math.log(len(log_w)))


def classifier_log_q(classifier, x):
    """log q(y|x) (K,) of one image: the classifier's network, then scipy.special.log_softmax."""
    logits = host(classifier.network.forward(backend.to_device(np.asarray(x).reshape(1, -1),
                                                               dtype=classifier.params["0.W"].dtype)))[0]
    return special.log_softmax(logits)


def m2_labelled(m2, x, label, eps):
    """E(x, y) = -ELBO of log p(x, y) = recon + KL - log p(y) for one image, p(y) = 1/K."""
    recon, kl = neg_elbo(m2.cvae, x, eps, label)
    return recon + kl + math.log(m2.classes)


def m2_unlabelled(m2, x, eps_by_class):
    """U(x) = sum_y q(y|x) [E(x, y) + log q(y|x)] for one image, class by class; eps_by_class (K, L): the noise of
    its guess at each class."""
    log_q = classifier_log_q(m2.classifier, x)
    return float(sum(math.exp(log_q[c]) * (m2_labelled(m2, x, c, eps_by_class[c]) + log_q[c])
                     for c in range(m2.classes)))
