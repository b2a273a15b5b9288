"""The model: gradients of the whole ELBO, the loss split, the evaluation estimate, and learning."""

import numpy as np
import pytest
from conftest import vae_relu_margin
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minivae.checks.finite_differences import check_model
from minivae.core import backend
from minivae.core.optim import Adam
from minivae.models.vae import count_params, mlp_vae

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy


def elbo_errors(model, x, eps):
    """Every parameter's relative error: model.step against finite differences of its loss, noise fixed."""
    def loss():
        recon, kl = model.per_example_losses(x, eps=eps)
        return float((recon + model.beta * kl).mean())

    return check_model(model, lambda: model.step(x, eps=eps), loss)


def small_model(**kw):
    kw = {"input_dim": 9, "hidden": (7,), "latent": 3, "rng": np.random.default_rng(1), "dtype": "float64"} | kw
    return mlp_vae(**kw)


def batch(rng, n=5, dim=9):
    """x (n, dim) and eps (n, 3), float64, on the backend in use."""
    return on_device(rng.uniform(0, 1, (n, dim))), on_device(rng.standard_normal((n, 3)))


@settings(max_examples=12, deadline=None)
@given(recon=st.sampled_from(["bce", "bce-prob", "mse", "cb"]), posterior=st.sampled_from(["logvar", "sigma"]),
       activation=st.sampled_from(["relu", "tanh", "sigmoid"]), beta=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
       hidden=st.lists(st.integers(2, 6), min_size=1, max_size=2), seed=st.integers(0, 1000))
def test_elbo_gradient_matches_finite_differences_for_every_parameter(recon, posterior, activation, beta, hidden,
                                                                      seed):
    rng = np.random.default_rng(seed)
    model = small_model(recon=recon, posterior=posterior, activation=activation, beta=beta, hidden=hidden,
                        rng=rng)
    if posterior == "sigma":  # keep sigma away from 0, where log(sigma^2) has its pole
        model.params["sigma.b"] += 1.0
    for name, param in model.params.items():  # zero biases put dead ReLUs exactly on their kink
        if name.endswith(".b"):
            param += on_device(rng.uniform(0.05, 0.2, param.shape))
    x, eps = batch(rng)
    assume(vae_relu_margin(model, x, eps) > 1e-3)  # no ReLU input within the finite differences' step of its kink
    errors = elbo_errors(model, x, eps)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < TOL, errors


def test_step_returns_recon_plus_beta_times_kl():
    model = small_model(beta=0.25)
    x, eps = batch(np.random.default_rng(0))
    loss = model.step(x, eps=eps)
    assert loss.loss == pytest.approx(loss.recon + 0.25 * loss.kl)
    recon, kl = model.per_example_losses(x, eps=eps)
    assert loss.recon == pytest.approx(float(recon.mean()))
    assert loss.kl == pytest.approx(float(kl.mean()))


def test_step_twice_with_the_same_noise_gives_the_same_gradients():
    model = small_model()
    x, eps = batch(np.random.default_rng(0))
    model.step(x, eps=eps)
    first = {k: on_host(g).copy() for k, g in model.grads.items()}
    model.step(x, eps=eps)
    for k in first:
        np.testing.assert_array_equal(first[k], on_host(model.grads[k]))


def test_parameters_and_gradients_are_reachable_by_name():
    model = mlp_vae(hidden=(400,), latent=20)
    names = ["encoder.0.W", "encoder.0.b", "mu.W", "mu.b", "logvar.W", "logvar.b",
             "decoder.0.W", "decoder.0.b", "decoder.2.W", "decoder.2.b"]
    assert list(model.params) == names and list(model.grads) == names
    assert model.params["mu.W"] is model.mu_head.params["W"]
    assert model.params["decoder.2.W"].shape == (400, 784)
    assert count_params(model) == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784


def test_sigma_posterior_names_its_head_sigma():
    assert "sigma.W" in mlp_vae(posterior="sigma").params


def test_training_runs_in_float32_without_float64_leaking_in():
    model = mlp_vae(hidden=(16,), latent=4)
    x = on_device(np.random.default_rng(0).random((8, 784), dtype=np.float32))
    model.step(x)
    assert all(g.dtype == np.float32 for g in model.grads.values())
    assert model.decode(backend.xp.zeros((2, 4), np.float32)).dtype == np.float32


def test_decode_sample_and_reconstruct_give_pixel_means_in_0_1():
    model = mlp_vae(hidden=(16,), latent=4)
    x = on_device(np.random.default_rng(0).random((5, 784), dtype=np.float32))
    for images in (model.sample(6), model.reconstruct(x), model.reconstruct(x, sample=True)):
        assert images.ndim == 2 and images.shape[1] == 784
        assert images.min() >= 0 and images.max() <= 1
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)


def test_overfitting_one_small_batch_drives_the_loss_far_down():
    rng = np.random.default_rng(0)
    x = on_device((rng.random((16, 784)) < 0.2).astype(np.float32))
    model = mlp_vae(hidden=(64,), latent=8, rng=rng)
    opt = Adam(model.params, lr=3e-3)
    first = model.step(x).loss
    for _ in range(400):
        last = model.step(x).loss
        opt.step(model.grads)
    assert first > 500 and last < first / 5


def test_importance_weighted_estimate_is_finite_in_float32_and_tightens_with_k():
    rng = np.random.default_rng(0)
    x = on_device((rng.random((64, 784)) < 0.2).astype(np.float32))
    model = mlp_vae(hidden=(32,), latent=4, rng=rng)
    opt = Adam(model.params, lr=3e-3)
    for _ in range(100):
        model.step(x)
        opt.step(model.grads)
    backend.seed(1)
    ll_1 = float(model.log_likelihood(x, k=1).mean())
    ll_200 = float(model.log_likelihood(x, k=200).mean())
    recon, kl = model.per_example_losses(x)
    elbo = -float((recon + kl).mean())
    assert np.isfinite(ll_200) and ll_200 < -100  # the log-weights are far below float32's exp range
    assert ll_1 == pytest.approx(elbo, rel=0.05)  # k = 1 is the ELBO (up to the noise of one sample)
    assert ll_200 > ll_1  # the bound tightens


def test_importance_weighted_estimate_equals_an_independent_float64_computation():
    from scipy.special import logsumexp
    from scipy.stats import norm

    model = small_model()
    x, _ = batch(np.random.default_rng(0))
    k = 7
    estimate = on_host(model.log_likelihood(x, k=k, rng=np.random.default_rng(5)))
    mu, logvar = map(on_host, model.encode(x))
    x = on_host(x)
    std = np.exp(0.5 * logvar)
    noise = np.random.default_rng(5)  # the same draws, in the same order
    log_w = []
    for _ in range(k):
        z = mu + std * noise.standard_normal(mu.shape)
        p = 1 / (1 + np.exp(-on_host(model.decoder_output(on_device(z)))))
        log_px_z = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
        log_w.append(log_px_z + norm.logpdf(z).sum(1) - norm.logpdf(z, mu, std).sum(1))
    np.testing.assert_allclose(estimate, logsumexp(np.array(log_w), axis=0) - np.log(k), rtol=1e-10)


def test_unknown_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown posterior"):
        mlp_vae(posterior="std")
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        mlp_vae(recon="l1")


def test_elbo_gradients_match_on_cupy(gpu):
    model = small_model()
    x, eps = (gpu.asarray(a) for a in batch(np.random.default_rng(0)))
    assert max(elbo_errors(model, x, eps).values()) < TOL


def test_an_mlp_vae_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="at least one hidden layer"):
        mlp_vae(hidden=())
