"""Every model's losses and bounds against references that share no code path with them (tests/references.py).

The gradient check compares `step` with finite differences of the same loss built from the same helpers (the class
enumeration of M2, the K-sample reshapes, the constants), so a mistake in a helper passes both. Here each number is
computed again image by image, sample by sample and class by class, from SciPy's densities and scipy.special's
logsumexp, with small shapes in which no two sizes are equal (an image mistaken for a class, or a sample for an
image, cannot pass by symmetry). Models are float64, so the comparisons are tight.
"""

import math

import numpy as np
import pytest
import references as ref

from minivae.core import backend
from minivae.models import iwae
from minivae.models.m2 import mlp_m2
from minivae.models.vae import mlp_vae

on_device, on_host = backend.to_device, backend.to_numpy
D, HIDDEN, L, B, K, CLASSES = 5, 4, 2, 4, 3, 3  # pixels, hidden units, latent, images, samples; the M2 uses 3
DECODERS = [(recon, posterior) for recon in ("bce", "bce-prob", "mse", "cb") for posterior in ("logvar", "sigma")]


def model(recon="bce", posterior="logvar", classes=0, beta=1.0, seed=0):
    """A float64 tanh MLP VAE D -> HIDDEN -> L and back, its biases off 0, sigma's away from 0."""
    rng = np.random.default_rng(seed)
    vae = mlp_vae(input_dim=D, hidden=(HIDDEN,), latent=L, activation="tanh", recon=recon, posterior=posterior,
                  beta=beta, classes=classes, rng=rng, dtype="float64")
    for name, param in vae.params.items():
        if name.endswith(".b"):
            param += on_device(rng.uniform(-0.3, 0.3, param.shape))
    if posterior == "sigma":
        vae.params["sigma.b"] += 0.8
    return vae


def images(recon, n=B, seed=1):
    """n images the decoder scores: binary for the Bernoulli ones, grayscale for the densities."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, D)) < 0.5).astype(float) if recon.startswith("bce") else rng.uniform(0, 1, (n, D))


def constant(vae):
    """What minivae's reconstruction loss leaves out of -log p(x|z): for 'mse', the sum of squared errors is
    -log N(x; out, 1/2) less D/2 log(2 pi 1/2) = (D/2) log(pi); nothing for the others."""
    return 0.5 * D * math.log(math.pi) if vae.recon_name == "mse" else 0.0


# ---- the single-sample -ELBO and the importance-weighted log-likelihood -------------------------------------------


@pytest.mark.parametrize("classes", [0, CLASSES], ids=["vae", "cvae"])
@pytest.mark.parametrize("recon, posterior", DECODERS)
def test_step_reports_the_batch_mean_of_each_images_neg_elbo(recon, posterior, classes):
    vae = model(recon, posterior, classes, beta=0.6)
    x, eps = images(recon), np.random.default_rng(2).standard_normal((B, L))
    labels = np.array([2, 0, 1, 2])[:B] if classes else [None] * B
    loss = vae.step(on_device(x), on_device(labels) if classes else None, eps=on_device(eps))
    recons, kls = zip(*(ref.neg_elbo(vae, x[b], eps[b], labels[b]) for b in range(B)), strict=True)
    assert loss.recon == pytest.approx(np.mean(recons) - constant(vae), rel=1e-12)
    assert loss.kl == pytest.approx(np.mean(kls), rel=1e-12)
    assert loss.loss == pytest.approx(np.mean(recons) - constant(vae) + 0.6 * np.mean(kls), rel=1e-12)


@pytest.mark.parametrize("classes", [0, CLASSES], ids=["vae", "cvae"])
@pytest.mark.parametrize("recon, posterior", DECODERS)
def test_the_log_likelihood_is_scipys_logsumexp_of_each_images_weights(recon, posterior, classes):
    vae = model(recon, posterior, classes)
    x = images(recon)
    labels = np.array([1, 2, 0, 1])[:B] if classes else [None] * B
    estimate = vae.log_likelihood(on_device(x), on_device(labels) if classes else None, k=K,
                                  rng=np.random.default_rng(3))
    draws = np.random.default_rng(3)  # the same draws in the same order: one (B, L) per sample
    eps = np.stack([draws.standard_normal((B, L)) for _ in range(K)])  # (K, B, L)
    expected = [ref.importance_weighted(vae, x[b], eps[:, b], labels[b]) for b in range(B)]
    np.testing.assert_allclose(on_host(estimate), expected, rtol=1e-12)


# ---- the K-sample objectives --------------------------------------------------------------------------------------


def k_sample_case(recon="bce", posterior="logvar", beta=1.0):
    vae = model(recon, posterior, beta=beta)
    return vae, images(recon), np.random.default_rng(4).standard_normal((K, B, L))


@pytest.mark.parametrize("recon, posterior", DECODERS)
def test_the_iwae_loss_is_minus_scipys_logsumexp_of_each_images_k_weights(recon, posterior):
    vae, x, eps = k_sample_case(recon, posterior)
    losses = iwae.per_example_losses(vae, on_device(x), "iwae", eps=on_device(eps))
    bounds = np.array([ref.importance_weighted(vae, x[b], eps[:, b]) for b in range(B)])
    # minivae's log-weights leave out the Gaussian's constant (it shifts every one alike): loss = -(bound + it)
    np.testing.assert_allclose(on_host(losses), -(bounds + constant(vae)), rtol=1e-12)
    step = iwae.step(vae, on_device(x), "iwae", eps=on_device(eps))
    assert step.loss == pytest.approx(float(np.mean(on_host(losses))), rel=1e-13)
    assert step.loss == pytest.approx(-np.mean(bounds) - constant(vae), rel=1e-12)


@pytest.mark.parametrize("recon, posterior", DECODERS)
def test_the_k_sample_elbo_averages_k_reconstructions_and_weighs_the_kl_by_beta(recon, posterior):
    vae, x, eps = k_sample_case(recon, posterior, beta=0.6)
    losses = on_host(iwae.per_example_losses(vae, on_device(x), "vae", eps=on_device(eps)))
    recon_by_image = np.array([np.mean([ref.neg_elbo(vae, x[b], eps[i, b])[0] for i in range(K)]) for b in range(B)])
    kl_by_image = np.array([ref.neg_elbo(vae, x[b], eps[0, b])[1] for b in range(B)])
    np.testing.assert_allclose(losses, recon_by_image - constant(vae) + 0.6 * kl_by_image, rtol=1e-12)
    step = iwae.step(vae, on_device(x), "vae", eps=on_device(eps))
    assert step.loss == pytest.approx(float(np.mean(losses)), rel=1e-13)  # what it reports is what it trains
    assert step.recon == pytest.approx(np.mean(recon_by_image) - constant(vae), rel=1e-12)
    assert step.kl == pytest.approx(np.mean(kl_by_image), rel=1e-12)


def test_the_iwae_steps_recon_and_kl_are_the_k_sample_elbos_terms():
    vae, x, eps = k_sample_case()
    step = iwae.step(vae, on_device(x), "iwae", eps=on_device(eps))
    assert step.recon == pytest.approx(np.mean([[ref.neg_elbo(vae, x[b], eps[i, b])[0] for i in range(K)]
                                                for b in range(B)]), rel=1e-12)
    assert step.kl == pytest.approx(np.mean([ref.neg_elbo(vae, x[b], eps[0, b])[1] for b in range(B)]), rel=1e-12)
    assert step.loss <= step.recon + step.kl  # the tighter bound, for these very samples


# ---- M2, image by image and class by class ------------------------------------------------------------------------

N_LABELLED, N_UNLABELLED = 2, 4  # neither is the number of classes (3) nor the latent size (2)


def m2_case(seed=0):
    """A float64 M2 on D-pixel images (3 classes, alpha 0.7, labelled weight 0.3) and a batch for it."""
    rng = np.random.default_rng(seed)
    m2 = mlp_m2(input_dim=D, hidden=(HIDDEN,), latent=L, classes=CLASSES, classifier_hidden=(HIDDEN,), alpha=0.7,
                labelled_weight=0.3, activation="tanh", rng=rng, dtype="float64")
    for name, param in m2.params.items():
        if name.endswith(".b"):
            param += on_device(rng.uniform(-0.5, 0.5, param.shape))
    x_l, y_l = (rng.random((N_LABELLED, D)) < 0.5).astype(float), np.array([2, 1])
    x_u = (rng.random((N_UNLABELLED, D)) < 0.5).astype(float)
    eps_l, eps_u = rng.standard_normal((N_LABELLED, L)), rng.standard_normal((CLASSES * N_UNLABELLED, L))
    return m2, (x_l, y_l, x_u, eps_l, eps_u)


def guesses_noise(eps_u, b, n):
    """The noise of image b's guess at each class, (K, L): row k * n + b of eps_u (M2.enumerate_classes' order)."""
    return eps_u[[k * n + b for k in range(CLASSES)]]


def test_m2s_unlabelled_loss_is_the_sum_over_classes_of_q_times_e_plus_log_q_image_by_image():
    m2, (_, _, x_u, _, eps_u) = m2_case()
    expected = [ref.m2_unlabelled(m2, x_u[b], guesses_noise(eps_u, b, N_UNLABELLED)) for b in range(N_UNLABELLED)]
    np.testing.assert_allclose(on_host(m2.unlabelled_losses(on_device(x_u), on_device(eps_u))), expected, rtol=1e-12)


def test_m2s_labelled_loss_is_the_neg_elbo_plus_log_k_and_its_cross_entropy_is_scipys():
    m2, (x_l, y_l, _, eps_l, _) = m2_case()
    neg_elbos, nll = m2.labelled_losses(on_device(x_l), on_device(y_l), on_device(eps_l))
    np.testing.assert_allclose(on_host(neg_elbos), [ref.m2_labelled(m2, x_l[b], y_l[b], eps_l[b])
                                                    for b in range(N_LABELLED)], rtol=1e-12)
    np.testing.assert_allclose(on_host(nll), [-ref.classifier_log_q(m2.classifier, x_l[b])[y_l[b]]
                                              for b in range(N_LABELLED)], rtol=1e-12)


def test_m2s_step_reports_the_weighted_sum_of_its_parts_computed_image_by_image():
    m2, (x_l, y_l, x_u, eps_l, eps_u) = m2_case()
    labelled = np.mean([ref.m2_labelled(m2, x_l[b], y_l[b], eps_l[b]) for b in range(N_LABELLED)])
    classification = np.mean([-ref.classifier_log_q(m2.classifier, x_l[b])[y_l[b]] for b in range(N_LABELLED)])
    unlabelled = np.mean([ref.m2_unlabelled(m2, x_u[b], guesses_noise(eps_u, b, N_UNLABELLED))
                          for b in range(N_UNLABELLED)])
    expected = 0.3 * labelled + 0.7 * classification + unlabelled
    batch = tuple(on_device(a) for a in (x_l, y_l, x_u, eps_l, eps_u))
    assert m2.loss_value(*batch) == pytest.approx(expected, rel=1e-12)
    loss = m2.step(*batch[:3], eps_labelled=batch[3], eps_unlabelled=batch[4])
    assert (loss.labelled, loss.classification, loss.unlabelled) == pytest.approx((labelled, classification,
                                                                                   unlabelled), rel=1e-12)
    assert loss.loss == pytest.approx(expected, rel=1e-12)
