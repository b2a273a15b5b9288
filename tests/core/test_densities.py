"""Every log-density minivae computes, constants included, against SciPy's densities (tests/references.py).

A gradient check cannot see a constant: a -log p(x|z) that forgets its log(pi) or a log q(z|x) without its log 2 pi
has the right gradients. The importance-weighted log-likelihood and the IWAE bound add such constants up, so each
one is checked here on its own, against scipy.stats (or a quadrature where SciPy has no such distribution).
"""

import math

import numpy as np
import pytest
from references import LOG_LIKELIHOODS, continuous_bernoulli_log_likelihood, kl_to_prior
from scipy import integrate, special, stats

from minivae.core import backend, continuous_bernoulli, gaussian, losses

on_device, on_host = backend.to_device, backend.to_numpy
D = 7  # pixels per example: odd, and not the number of examples


def decoder_outputs(recon, rng, batch=3):
    """(out, x): a decoder's output for the recon (logits, or pixel means for 'bce-prob' and 'mse') and the data it
    scores (binary for the Bernoulli, grayscale for the densities on [0, 1] and R)."""
    if recon == "bce-prob":
        out = rng.uniform(0.02, 0.98, (batch, D))
        out[0, :4] = [1e-9, 3e-7, 1 - 3e-7, 1 - 1e-9]  # two clipped to [1e-7, 1 - 1e-7], two just inside
    elif recon == "mse":
        out = rng.uniform(0, 1, (batch, D))
    else:
        out = rng.uniform(-6, 6, (batch, D))
    x = (rng.random((batch, D)) < 0.5).astype(float) if recon.startswith("bce") else rng.uniform(0, 1, (batch, D))
    return out, x


@pytest.mark.parametrize("recon", sorted(losses.RECONSTRUCTIONS))
def test_each_reconstruction_loss_plus_its_constant_is_minus_a_scipy_log_density(recon):
    out, x = decoder_outputs(recon, np.random.default_rng(0))
    nll, _ = losses.RECONSTRUCTIONS[recon](on_device(out), on_device(x), grad=False)
    constant = losses.gaussian_nll_constant(D) if recon == "mse" else 0.0
    expected = [-LOG_LIKELIHOODS[recon](o, xi) for o, xi in zip(out, x)]
    np.testing.assert_allclose(on_host(nll) + constant, expected, rtol=1e-12)


def test_the_continuous_bernoulli_loss_at_its_hard_logits_is_minus_its_log_density():
    logits = np.array(continuous_bernoulli.HARD_LOGITS).reshape(3, 5)
    x = np.random.default_rng(5).uniform(0, 1, logits.shape)
    nll, _ = losses.continuous_bernoulli(on_device(logits), on_device(x), grad=False)
    expected = [-continuous_bernoulli_log_likelihood(a, xi) for a, xi in zip(logits, x)]
    np.testing.assert_allclose(on_host(nll), expected, rtol=1e-12, atol=1e-12)


def test_the_bernoulli_reference_is_scipys_bernoulli_pmf_on_binary_pixels():
    out, x = decoder_outputs("bce", np.random.default_rng(1))
    for logits, pixels in zip(out, x):
        expected = stats.bernoulli.logpmf(pixels, special.expit(logits)).sum()
        assert LOG_LIKELIHOODS["bce"](logits, pixels) == pytest.approx(expected, rel=1e-12)
        probs = special.expit(logits)
        assert LOG_LIKELIHOODS["bce-prob"](probs, pixels) == pytest.approx(
            stats.bernoulli.logpmf(pixels, np.clip(probs, 1e-7, 1 - 1e-7)).sum(), rel=1e-12)


@pytest.mark.parametrize("a", [-30.0, -2.5, -1e-3, 0.0, 0.7, 12.0])
def test_the_continuous_bernoulli_reference_integrates_its_density_by_quadrature(a):
    lam = special.expit(a)
    integral, _ = integrate.quad(lambda t: lam**t * (1 - lam) ** (1 - t), 0, 1, epsabs=0, epsrel=1e-13)
    for x in (0.0, 0.3, 1.0):
        expected = -math.log(integral) + x * math.log(lam) + (1 - x) * math.log1p(-lam)
        assert continuous_bernoulli_log_likelihood(np.array([a]), np.array([x])) == pytest.approx(expected,
                                                                                                  rel=1e-10)


def test_the_gaussian_constant_is_half_d_log_pi():
    # -log N(x; out, 1/2) = (x - out)^2 + (1/2) log(2 pi 1/2) per pixel
    assert losses.gaussian_nll_constant(D) == pytest.approx(-stats.norm.logpdf(0.0, scale=math.sqrt(0.5)) * D)


def test_log_prior_is_scipys_standard_normal_log_density():
    z = np.random.default_rng(2).normal(0, 2, (2, 3, 4))  # (K, B, L)
    np.testing.assert_allclose(on_host(gaussian.log_prior(on_device(z))), stats.norm.logpdf(z).sum(axis=-1),
                               rtol=1e-12)


@pytest.mark.parametrize("posterior", sorted(gaussian.POSTERIORS))
def test_log_q_is_scipys_normal_log_density(posterior):
    rng = np.random.default_rng(3)
    mu, std = rng.normal(0, 1, (3, 4)), rng.uniform(0.2, 2, (3, 4))
    scale = 2 * np.log(std) if posterior == "logvar" else std * rng.choice([-1, 1], std.shape)  # sigma of either sign
    z = rng.normal(0, 2, (2, 3, 4))
    log_q = gaussian.POSTERIORS[posterior].log_q(on_device(z), on_device(mu), on_device(scale))
    np.testing.assert_allclose(on_host(log_q), stats.norm.logpdf(z, mu, std).sum(axis=-1), rtol=1e-12)


@pytest.mark.parametrize("posterior", sorted(gaussian.POSTERIORS))
def test_the_kl_is_the_integral_of_q_log_q_over_p(posterior):
    rng = np.random.default_rng(4)
    mu, std = rng.normal(0, 1, (2, 3)), rng.uniform(0.3, 1.8, (2, 3))
    scale = 2 * np.log(std) if posterior == "logvar" else std
    kl, _, _ = gaussian.POSTERIORS[posterior].kl(on_device(mu), on_device(scale))

    def kl_1d(m, s):
        q = stats.norm(m, s)
        return integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - stats.norm.logpdf(z)), m - 12 * s, m + 12 * s,
                              epsabs=1e-13, epsrel=1e-12)[0]

    by_quadrature = [sum(kl_1d(m, s) for m, s in zip(mu_b, std_b)) for mu_b, std_b in zip(mu, std)]
    np.testing.assert_allclose(on_host(kl), by_quadrature, rtol=1e-8)
    np.testing.assert_allclose([kl_to_prior(m, s) for m, s in zip(mu, std)], by_quadrature, rtol=1e-8)
