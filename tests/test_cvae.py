"""The conditional VAE: its gradients, the label block of its first layers, and what the label does."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae import backend, presets
from minivae.cvae import CVAE, check_elbo, mlp_cvae
from minivae.optim import Adam

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy


def small_model(**kw):
    kw = {"input_dim": 9, "hidden": (7,), "latent": 3, "classes": 4, "rng": np.random.default_rng(1),
          "dtype": "float64"} | kw
    return mlp_cvae(**kw)


def batch(rng, n=5, dim=9, classes=4, latent=3):
    """x (n, dim), y (n,) and eps (n, latent), on the backend in use."""
    return (on_device(rng.uniform(0, 1, (n, dim))), on_device(rng.integers(0, classes, n)),
            on_device(rng.standard_normal((n, latent))))


@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 6), hidden=st.lists(st.integers(2, 6), min_size=1, max_size=2),
       latent=st.integers(1, 4), classes=st.integers(2, 5), recon=st.sampled_from(["bce", "bce-prob", "mse"]),
       beta=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 1000))
def test_cvae_elbo_gradient_matches_finite_differences_for_every_parameter(batch_size, hidden, latent, classes,
                                                                           recon, beta, seed):
    errors = check_elbo(seed=seed, batch=batch_size, hidden=tuple(hidden), latent=latent, classes=classes,
                        recon=recon, beta=beta)
    assert max(errors.values()) < TOL, errors


def test_joining_the_label_is_a_dense_layer_with_a_block_of_weights_per_class():
    model = small_model()
    x, y, _ = batch(np.random.default_rng(0))
    first = model.encoder.layers[0]
    weights = first.params["W"]  # (9 + 4, 7): the pixels' block, then one row per class
    expected = x @ weights[:9] + weights[9:][y] + first.params["b"]
    np.testing.assert_allclose(on_host(first.forward(model.join(x, y))), on_host(expected), rtol=1e-12)


def test_step_returns_the_batch_means_of_the_per_example_losses():
    model = small_model(beta=0.5)
    x, y, eps = batch(np.random.default_rng(0))
    loss = model.step(x, y, eps=eps)
    recon, kl = model.per_example_losses(x, y, eps=eps)
    assert loss.recon == pytest.approx(float(recon.mean()))
    assert loss.kl == pytest.approx(float(kl.mean()))
    assert loss.loss == pytest.approx(loss.recon + 0.5 * loss.kl)


def test_weighted_step_with_equal_weights_is_the_mean():
    model = small_model()
    x, y, eps = batch(np.random.default_rng(0))
    model.step(x, y, eps=eps)
    mean_grads = {k: g.copy() for k, g in model.grads.items()}
    model.weighted_step(x, y, on_device(np.full(len(x), 2.0 / len(x))), eps=eps)  # twice the mean's weights
    for name, g in model.grads.items():
        np.testing.assert_allclose(on_host(g), on_host(2 * mean_grads[name]), rtol=1e-12, atol=1e-15)


def test_the_same_z_decodes_differently_for_each_class():
    model = small_model()
    z = np.random.default_rng(0).standard_normal((1, 3)).repeat(4, axis=0)  # one style, four classes
    images = on_host(model.decode(on_device(z), on_device(np.arange(4))))
    assert images.shape == (4, 9) and images.min() >= 0 and images.max() <= 1
    assert all(np.abs(images[0] - images[c]).max() > 1e-6 for c in range(1, 4))


def test_sample_and_reconstruct_give_one_image_per_label():
    model = mlp_cvae(hidden=(16,), latent=4)
    x = on_device(np.random.default_rng(0).random((5, 784), dtype=np.float32))
    y = on_device(np.array([0, 3, 9, 9, 1]))
    for images in (model.sample(y), model.sample(y, rng=np.random.default_rng(0)), model.reconstruct(x, y),
                   model.reconstruct(x, y, sample=True)):  # a NumPy generator's draws go to the device too
        images = on_host(images)
        assert images.shape == (5, 784) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1


def test_training_on_one_batch_drives_the_loss_down():
    rng = np.random.default_rng(0)
    x, y = on_device((rng.random((16, 784)) < 0.2).astype(np.float32)), on_device(rng.integers(0, 10, 16))
    model = mlp_cvae(hidden=(64,), latent=8, rng=rng)
    optimizer = Adam(model.params, lr=3e-3)
    first = model.step(x, y).loss
    for _ in range(300):
        last = model.step(x, y).loss
        optimizer.step(model.grads)
    assert last < first / 4


def test_importance_weighted_estimate_equals_an_independent_float64_computation():
    from scipy.special import logsumexp
    from scipy.stats import norm

    model = small_model()
    x, y, _ = batch(np.random.default_rng(0))
    k = 6
    estimate = on_host(model.log_likelihood(x, y, k=k, rng=np.random.default_rng(5)))
    mu, logvar = map(on_host, model.encode(x, y))
    std = np.exp(0.5 * logvar)
    noise = np.random.default_rng(5)  # the same draws, in the same order
    x, log_w = on_host(x), []
    for _ in range(k):
        z = mu + std * noise.standard_normal(mu.shape)
        p = 1 / (1 + np.exp(-on_host(model.decoder_output(on_device(z), y))))
        log_px_z = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
        log_w.append(log_px_z + norm.logpdf(z).sum(1) - norm.logpdf(z, mu, std).sum(1))
    np.testing.assert_allclose(estimate, logsumexp(np.array(log_w), axis=0) - np.log(k), rtol=1e-10)


def test_the_cvae_preset_builds_a_cvae_that_sees_ten_classes():
    model = presets.build_model(presets.config_for("cvae"))
    assert isinstance(model, CVAE) and model.classes == 10
    assert model.params["encoder.0.W"].shape == (784 + 10, 500)
    assert model.params["decoder.0.W"].shape == (20 + 10, 500)


def test_cvae_gradients_match_on_cupy(gpu):
    assert max(check_elbo().values()) < TOL
