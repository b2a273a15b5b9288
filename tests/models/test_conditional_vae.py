"""The conditional VAE (a VAE with classes=K): its gradients with every decoder and posterior, the label block of
its first layers, and what the label does."""

import numpy as np
import pytest
from conftest import vae_relu_margin
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minivae.checks.finite_differences import check_model
from minivae.core import backend
from minivae.core.optim import Adam
from minivae.models.vae import VAE, mlp_vae
from minivae.run import presets

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy


def small_model(**kw):
    kw = {"input_dim": 9, "hidden": (7,), "latent": 3, "classes": 4, "rng": np.random.default_rng(1),
          "dtype": "float64"} | kw
    return mlp_vae(**kw)


def tiny_conditional(seed=0, batch_size=5, hidden=(6,), latent=2, classes=3, recon="bce", posterior="logvar",
                     beta=1.0):
    """A tiny float64 conditional VAE and a batch for it: (model, x, y, eps), drawn from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    model = mlp_vae(input_dim=9, hidden=hidden, latent=latent, classes=classes, recon=recon, posterior=posterior,
                    beta=beta, rng=rng, dtype="float64")
    for name, param in model.params.items():  # biases off 0, so that no ReLU sits on its kink
        if name.endswith(".b"):
            param += on_device(rng.uniform(0.05, 0.2, param.shape))
    if posterior == "sigma":  # and sigma away from 0, the pole of log sigma^2
        model.params["sigma.b"] += 1.0
    x, y = on_device(rng.uniform(0, 1, (batch_size, 9))), on_device(rng.integers(0, classes, batch_size))
    return model, x, y, on_device(rng.standard_normal((batch_size, latent)))


def elbo_errors(model, x, y, eps):
    """Relative error of every parameter's gradient of the conditional VAE's loss: {name: error}."""
    def loss():
        recon, kl = model.per_example_losses(x, y, eps=eps)
        return float((recon + model.beta * kl).mean())

    return check_model(model, lambda: model.step(x, y, eps=eps), loss)


def batch(rng, n=5, dim=9, classes=4, latent=3):
    """x (n, dim), y (n,) and eps (n, latent), on the backend in use."""
    return (on_device(rng.uniform(0, 1, (n, dim))), on_device(rng.integers(0, classes, n)),
            on_device(rng.standard_normal((n, latent))))


@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 6), hidden=st.lists(st.integers(2, 6), min_size=1, max_size=2),
       latent=st.integers(1, 4), classes=st.integers(2, 5), recon=st.sampled_from(["bce", "bce-prob", "mse", "cb"]),
       posterior=st.sampled_from(["logvar", "sigma"]), beta=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 1000))
def test_the_conditional_elbo_gradient_matches_finite_differences_with_every_decoder_and_posterior(
        batch_size, hidden, latent, classes, recon, posterior, beta, seed):
    model, x, y, eps = tiny_conditional(seed, batch_size, tuple(hidden), latent, classes, recon, posterior, beta)
    assume(vae_relu_margin(model, x, eps, y) > 1e-3)  # no ReLU input within the finite differences' step of its kink
    errors = elbo_errors(model, x, y, eps)
    assert max(errors.values()) < TOL, errors


def test_joining_the_label_is_a_dense_layer_with_a_block_of_weights_per_class():
    model = small_model()
    x, y, _ = batch(np.random.default_rng(0))
    first = model.encoder.layers[0]
    weights = first.params["W"]  # (9 + 4, 7): the pixels' block, then one row per class
    expected = x @ weights[:9] + weights[9:][y] + first.params["b"]
    np.testing.assert_allclose(on_host(first.forward(model.with_class(x, y))), on_host(expected), rtol=1e-12)


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
    model.weighted_step(x, on_device(np.full(len(x), 2.0 / len(x))), y, eps=eps)  # twice the mean's weights
    for name, g in model.grads.items():
        np.testing.assert_allclose(on_host(g), on_host(2 * mean_grads[name]), rtol=1e-12, atol=1e-15)


def test_the_same_z_decodes_differently_for_each_class():
    model = small_model()
    z = np.random.default_rng(0).standard_normal((1, 3)).repeat(4, axis=0)  # one style, four classes
    images = on_host(model.decode(on_device(z), on_device(np.arange(4))))
    assert images.shape == (4, 9) and images.min() >= 0 and images.max() <= 1
    assert all(np.abs(images[0] - images[c]).max() > 1e-6 for c in range(1, 4))


def test_sample_and_reconstruct_give_one_image_per_label():
    model = mlp_vae(hidden=(16,), latent=4, classes=10)
    x = on_device(np.random.default_rng(0).random((5, 784), dtype=np.float32))
    y = on_device(np.array([0, 3, 9, 9, 1]))
    for images in (model.sample(5, y=y), model.sample(5, np.random.default_rng(0), y), model.reconstruct(x, y),
                   model.reconstruct(x, y, sample=True)):  # a NumPy generator's draws go to the device too
        images = on_host(images)
        assert images.shape == (5, 784) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1


def test_training_on_one_batch_drives_the_loss_down():
    rng = np.random.default_rng(0)
    x, y = on_device((rng.random((16, 784)) < 0.2).astype(np.float32)), on_device(rng.integers(0, 10, 16))
    model = mlp_vae(hidden=(64,), latent=8, classes=10, rng=rng)
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


def test_the_cvae_preset_builds_a_vae_conditioned_on_ten_classes():
    model = presets.build_model(presets.config_for("cvae"))
    assert isinstance(model, VAE) and model.classes == 10
    assert model.params["encoder.0.W"].shape == (784 + 10, 500)
    assert model.params["decoder.0.W"].shape == (20 + 10, 500)


def test_labels_are_refused_by_an_unconditioned_vae_and_required_by_a_conditioned_one():
    x = on_device(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="not conditioned"):
        small_model(classes=0).encode(x, on_device(np.array([0, 1])))
    with pytest.raises(ValueError, match="give the labels"):
        small_model().encode(x)


def test_conditional_gradients_match_on_cupy(gpu):
    assert max(elbo_errors(*tiny_conditional()).values()) < TOL
