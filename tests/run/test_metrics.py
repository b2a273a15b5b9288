"""The numbers the training command prints and evaluate reports (run/metrics.py), against values computed image by
image from SciPy's densities (tests/references.py), with the evaluations' noise replayed from the generators
seeds.py documents: TEST_NOISE = default_rng([seed, 0, 2]), one draw per evaluation batch, and IMPORTANCE = the
backend's generator seeded by SeedSequence([seed, 0, 3]), k draws of (batch, L) per batch.

Every test set here is larger than one evaluation batch and its last batch is short, so a mean of batch means, a
sum over one batch only, or a total divided by the number of batches shows; and the log-likelihood is held from
both sides: at least the ELBO, at most log p(x), worked out by quadrature for a model with a one-dimensional z.
"""

import math

import numpy as np
import pytest
import references as ref
from scipy import special, stats

from minivae.core import backend
from minivae.models.m2 import mlp_m2
from minivae.models.vae import mlp_vae
from minivae.run import metrics
from minivae.run.kinds import KINDS

on_device, on_host = backend.to_device, backend.to_numpy
D, L, N, BATCH, SEED = 6, 2, 7, 3, 4  # pixels, latent, images (batches of 3, 3 and 1), the run's seed


def model(recon="bce", classes=0, beta=1.0, latent=L, seed=0):
    """A float64 tanh MLP VAE D -> 5 -> latent, its biases off 0."""
    rng = np.random.default_rng(seed)
    vae = mlp_vae(input_dim=D, hidden=(5,), latent=latent, activation="tanh", recon=recon, beta=beta, classes=classes,
                  rng=rng, dtype="float64")
    for name, param in vae.params.items():
        if name.endswith(".b"):
            param += on_device(rng.uniform(-0.5, 0.5, param.shape))
    return vae


def images(recon="bce", n=N, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random((n, D)) < 0.4).astype(float) if recon.startswith("bce") else rng.uniform(0, 1, (n, D))


LABELS = np.array([0, 1, 2, 2, 0, 1, 1])  # 3 classes; no batch of 3 has the first batch's labels


def labels_or_none(classes):
    return LABELS if classes else None


def evaluation_noise(n_rows_per_batch):
    """TEST_NOISE's draws, one (rows, L) float32 array per evaluation batch, as float64 rows of one array."""
    noise = np.random.default_rng([SEED, 0, 2])
    return np.concatenate([noise.standard_normal((rows, L), dtype=np.float32) for rows in n_rows_per_batch])


def importance_noise(batch_sizes, k, latent=L):
    """IMPORTANCE's draws: for each batch, k (batch, latent) arrays; returned per image as (k, latent) rows. They are
    drawn on the device, by the backend's generator seeded with SeedSequence([seed, 0, 3]) hashed to one integer."""
    rng = backend.default_rng(int(np.random.SeedSequence([SEED, 0, 3]).generate_state(1)[0]))
    per_image = []
    for size in batch_sizes:
        draws = np.stack([on_host(rng.standard_normal((size, latent), dtype="float64")) for _ in range(k)])
        per_image += [draws[:, b] for b in range(size)]
    return per_image


def batch_sizes(n, batch):
    return [min(batch, n - start) for start in range(0, n, batch)]


# ---- the test loss ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [0, 3], ids=["vae", "cvae"])
def test_the_test_loss_is_the_mean_of_every_images_loss_when_the_last_batch_is_short(classes):
    vae, x, y = model(classes=classes, beta=0.5), images(), labels_or_none(classes)
    kind = KINDS["cvae" if classes else "mlp"]
    losses = metrics.test_losses(vae, kind, x, y, SEED, batch_size=BATCH)
    eps = evaluation_noise(batch_sizes(N, BATCH))
    recon, kl = np.array([ref.neg_elbo(vae, x[b], eps[b], None if y is None else y[b]) for b in range(N)]).T
    assert losses["recon"] == pytest.approx(recon.mean(), rel=1e-12)
    assert losses["kl"] == pytest.approx(kl.mean(), rel=1e-12)
    assert losses["loss"] == pytest.approx(recon.mean() + 0.5 * kl.mean(), rel=1e-12)


# ---- the importance-weighted log-likelihood ----------------------------------------------------------------------


@pytest.mark.parametrize("recon, classes", [("bce", 0), ("cb", 0), ("bce", 3)], ids=["bce", "cb", "cvae"])
def test_the_log_likelihood_of_a_test_set_larger_than_a_batch_is_the_mean_of_each_images_estimate(recon, classes):
    vae, x, y = model(recon, classes), images(recon), labels_or_none(classes)
    k = 4
    ll = metrics.mean_log_likelihood(vae, x, k, SEED, y=y, batch_size=BATCH)
    eps = importance_noise(batch_sizes(N, BATCH), k)
    per_image = [ref.importance_weighted(vae, x[b], eps[b], None if y is None else y[b]) for b in range(N)]
    assert ll == pytest.approx(np.mean(per_image), rel=1e-12)


def exact_log_p_and_elbo(vae, x):
    """log p(x) and the ELBO (the expectation, not a sample) of each image for a VAE with a one-dimensional z, by
    quadrature on a fine grid of z: log p(x) = log integral p(x|z) N(z; 0, 1) dz,
    ELBO = integral q(z|x) log p(x|z) dz - KL(q || p)."""
    z, dz = np.linspace(-12, 12, 24001, retstep=True)
    logits = ref.host(vae.decoder.forward(on_device(z[:, None])))  # (G, D)
    log_p, elbo = [], []
    for image in x:
        log_px_z = (image * special.log_expit(logits) + (1 - image) * special.log_expit(-logits)).sum(axis=1)
        log_p.append(special.logsumexp(log_px_z + stats.norm.logpdf(z)) + math.log(dz))
        mu, std = ref.posterior(vae, image)
        q = stats.norm.pdf(z, mu[0], std[0])
        elbo.append(np.sum(q * log_px_z) * dz - ref.kl_to_prior(mu, std))
    return np.array(log_p), np.array(elbo)


def test_the_log_likelihood_lies_between_the_elbo_and_log_p_x():
    vae, x = model(latent=1, seed=2), images(seed=3)
    log_p, elbo = exact_log_p_and_elbo(vae, x)
    ll = metrics.mean_log_likelihood(vae, x, 2000, SEED, batch_size=BATCH)
    gap = log_p.mean() - elbo.mean()
    assert gap > 0.05  # q(z|x) is not the true posterior: there is room between the two bounds
    # at least the ELBO, at most log p(x) (to its noise: measured 0.006 above it here, 0.02 above with K = 100)
    assert elbo.mean() < ll < log_p.mean() + 0.05 * gap
    assert ll > log_p.mean() - 0.1 * gap  # and 2,000 samples close most of the gap


# ---- the final results of the squared-error decoder ---------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_the_squared_error_elbo_and_log_likelihood_are_gaussian_log_densities(k):
    vae, x = model("mse", beta=0.5), images("mse")
    final = metrics.final_results(vae, KINDS["mlp"], x, np.zeros(N, dtype=np.int64), SEED, eval_samples=k)
    eps = evaluation_noise([N])  # one evaluation batch
    log_densities, kls = [], []
    for b in range(N):
        mu, std = ref.posterior(vae, x[b])
        out = ref.decoder_out(vae, mu + std * eps[b])
        log_densities.append(stats.norm.logpdf(x[b], loc=out, scale=math.sqrt(0.5)).sum())
        kls.append(ref.kl_to_prior(mu, std))
    # the ELBO at beta 1 (whatever beta trained), with the Gaussian's constant: a bound on log p(x)
    assert final["test_elbo"] == pytest.approx(np.mean(log_densities) - np.mean(kls), rel=1e-12)
    assert final["test_recon"] + final["test_recon_constant"] == pytest.approx(-np.mean(log_densities), rel=1e-12)
    assert final["test_recon_constant"] == pytest.approx(0.5 * D * math.log(math.pi), rel=1e-12)
    assert final["test_kl"] == pytest.approx(np.mean(kls), rel=1e-12)
    eps_iw = importance_noise([N], k)
    log_likelihood = np.mean([ref.importance_weighted(vae, x[b], eps_iw[b]) for b in range(N)])
    assert final["test_log_likelihood"] == pytest.approx(log_likelihood, rel=1e-12)


@pytest.mark.parametrize("recon", ["bce", "bce-prob", "cb", "mse"])
def test_the_final_elbo_is_each_decoders_log_density_less_the_kl_at_beta_1(recon):
    vae, x = model(recon, beta=0.5), images(recon)
    final = metrics.final_results(vae, KINDS["mlp"], x, np.zeros(N, dtype=np.int64), SEED, eval_samples=0)
    eps = evaluation_noise([N])  # one evaluation batch
    elbos = []
    for b in range(N):
        mu, std = ref.posterior(vae, x[b])
        elbos.append(ref.log_p_x_given_z(vae, x[b], mu + std * eps[b]) - ref.kl_to_prior(mu, std))
    assert final["test_elbo"] == pytest.approx(np.mean(elbos), rel=1e-12)


# ---- M2's test losses ------------------------------------------------------------------------------------------------

CLASSES, N_M2 = 3, 9  # in batches of 4: 4, 4 and 1


def m2_model(labelled_weight=0.3, alpha=0.7):
    rng = np.random.default_rng(5)
    m2 = mlp_m2(input_dim=D, hidden=(5,), latent=L, classes=CLASSES, classifier_hidden=(4,), alpha=alpha,
                labelled_weight=labelled_weight, activation="tanh", rng=rng, dtype="float64")
    for name, param in m2.params.items():
        if name.endswith(".b"):
            param += on_device(rng.uniform(-0.5, 0.5, param.shape))
    return m2


def m2_expected(m2, x, y, batch):
    """M2's test losses image by image, the noise of each batch of n images ((1 + K) n rows: the labelled rows,
    then the K guesses at each image, class-major) replayed from TEST_NOISE."""
    noise = np.random.default_rng([SEED, 0, 2])
    labelled, classification, unlabelled, right = [], [], [], []
    for start in range(0, len(x), batch):
        n = min(batch, len(x) - start)
        eps = noise.standard_normal(((1 + CLASSES) * n, L), dtype=np.float32).astype(np.float64)
        for b in range(n):
            image, label = x[start + b], y[start + b]
            log_q = ref.classifier_log_q(m2.classifier, image)
            labelled.append(ref.m2_labelled(m2, image, label, eps[b]))
            classification.append(-log_q[label])
            unlabelled.append(ref.m2_unlabelled(m2, image, eps[n + b::n][:CLASSES]))
            right.append(np.argmax(log_q) == label)
    means = {"labelled": np.mean(labelled), "classification": np.mean(classification),
             "unlabelled": np.mean(unlabelled), "accuracy": np.mean(right)}
    return {"loss": m2.labelled_weight * means["labelled"] + m2.alpha * means["classification"]
            + means["unlabelled"]} | means


def m2_test_set(m2):
    """N_M2 images and their labels: the class q(y|x) puts its mode on for images 0, 3, 5 and 8 (every batch of 4
    holds one or two, the last batch is image 8 alone), another class for the others."""
    x = images(n=N_M2, seed=6)
    predicted = np.array([np.argmax(ref.classifier_log_q(m2.classifier, image)) for image in x])
    return x, np.where(np.isin(np.arange(N_M2), [0, 3, 5, 8]), predicted, (predicted + 1) % CLASSES)


@pytest.mark.parametrize("batch", [4, metrics.EVAL_BATCH // 10], ids=["batches of 4, 4 and 1", "one batch"])
def test_m2s_test_losses_weigh_the_labelled_elbo_by_its_weight_image_by_image(batch):
    m2 = m2_model()
    x, y = m2_test_set(m2)
    losses = (metrics.semi_supervised_losses(m2, x, y, SEED, batch_size=batch) if batch == 4 else
              metrics.test_losses(m2, KINDS["m2"], x, y, SEED))
    expected = m2_expected(m2, x, y, batch)
    assert expected["accuracy"] == pytest.approx(4 / 9)
    assert losses == pytest.approx(expected, rel=1e-12)


def test_m2s_final_results_are_its_accuracy_and_the_two_elbos():
    m2 = m2_model()
    x, y = m2_test_set(m2)
    final = metrics.final_results(m2, KINDS["m2"], x, y, SEED, eval_samples=5)
    expected = m2_expected(m2, x, y, metrics.EVAL_BATCH // 10)
    assert final == pytest.approx({"test_accuracy": expected["accuracy"], "test_elbo": -expected["unlabelled"],
                                   "test_labelled_elbo": -expected["labelled"],
                                   "test_classification": expected["classification"]}, rel=1e-12)
