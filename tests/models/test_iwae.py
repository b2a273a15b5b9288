"""The K-sample objectives (models/iwae.py): their gradients, the identities at K = 1, the bound, and bad values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.checks.finite_differences import compare
from minivae.checks.table import k_sample_check
from minivae.core import backend, gaussian
from minivae.core.gaussian import log_prior
from minivae.models import iwae
from minivae.models.vae import mlp_vae

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy


def small_model(**kw):
    kw = {"input_dim": 9, "hidden": (7,), "latent": 3, "activation": "tanh", "rng": np.random.default_rng(1),
          "dtype": "float64"} | kw
    return mlp_vae(**kw)


def batch(k, n=5, seed=0):
    """x (n, 9) and eps (k, n, 3), float64, on the backend in use."""
    rng = np.random.default_rng(seed)
    return on_device(rng.uniform(0, 1, (n, 9))), on_device(rng.standard_normal((k, n, 3)))


def grads_of(model):
    return {name: g.copy() for name, g in model.grads.items()}


@settings(max_examples=16, deadline=None)
@given(objective=st.sampled_from(iwae.OBJECTIVES), k=st.sampled_from([1, 2, 5]),
       recon=st.sampled_from(["bce", "bce-prob", "mse", "cb"]), posterior=st.sampled_from(["logvar", "sigma"]),
       beta=st.sampled_from([1.0, 0.4]), seed=st.integers(0, 1000))
def test_k_sample_gradients_match_finite_differences_with_the_noise_fixed(objective, k, recon, posterior, beta, seed):
    beta = beta if objective == "vae" else 1.0  # the IWAE bound has no KL term to weigh
    errors = k_sample_check(objective, k, recon, posterior, beta)(np.random.default_rng(seed), True)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_vae_objective_with_one_sample_has_vae_steps_gradients_bit_for_bit(beta):
    model = small_model(beta=beta)
    x, eps = batch(k=1)
    loss = iwae.step(model, x, "vae", eps=eps)
    k_sample = grads_of(model)
    plain = model.step(x, eps=eps[0])
    assert loss.loss == pytest.approx(plain.loss, rel=1e-15)  # the same sum, perhaps added in another order
    assert (loss.recon, loss.kl) == (plain.recon, plain.kl)
    for name, g in model.grads.items():
        np.testing.assert_array_equal(on_host(k_sample[name]), on_host(g))


def test_iwae_with_one_sample_has_the_gradient_of_the_elbo_with_the_sampled_kl():
    # K = 1: w~ = 1, so the IWAE's gradient is that of nll(x, z) + log q(z|x) - log p(z), z = mu + std * eps:
    # the single-sample ELBO whose KL is estimated by the sample, not VAE.step's closed-form KL.
    model = small_model()
    x, eps = batch(k=1)
    iwae.step(model, x, "iwae", eps=eps)
    analytic = grads_of(model)

    def sampled_kl_elbo_loss():
        mu, logvar = model.encode(x)
        z = model.posterior.sample(mu, logvar, eps[0])
        nll, _ = model.recon_fn(model.decoder_output(z), x, grad=False)
        return float((nll + model.posterior.log_q(z, mu, logvar) - log_prior(z)).mean())

    for name, param in model.params.items():
        assert compare(analytic[name], sampled_kl_elbo_loss, param) < TOL, name


def test_iwae_with_one_sample_is_not_vae_step_but_agrees_with_it_on_the_decoder():
    # The decoder sees the same z and the same weight 1/B in both; only the encoder's KL path differs.
    model = small_model()
    x, eps = batch(k=1)
    iwae.step(model, x, "iwae", eps=eps)
    iw = grads_of(model)
    model.step(x, eps=eps[0])
    for name, g in model.grads.items():
        if name.startswith("decoder"):
            np.testing.assert_allclose(on_host(iw[name]), on_host(g), rtol=1e-12, atol=1e-15)
    assert not np.allclose(on_host(iw["mu.W"]), on_host(model.grads["mu.W"]))


@pytest.mark.parametrize("posterior", [gaussian.LogvarGaussian(), gaussian.SigmaGaussian()])
def test_the_sampled_kl_gradient_averages_to_the_closed_form_kl_gradient(posterior):
    # So the K = 1 IWAE step equals VAE.step in expectation over eps.
    rng = np.random.default_rng(0)
    mu, scale = rng.normal(0, 1, (2, 3)), rng.uniform(0.3, 1.5, (2, 3))
    if posterior.scale_name == "logvar":
        scale = np.log(scale ** 2)
    mu, scale, eps = on_device(mu), on_device(scale), on_device(rng.standard_normal((200_000, 2, 3)))
    z = posterior.sample(mu, scale, eps)
    dlogq_dz, dlogq_dmu, dlogq_dscale = posterior.log_q_partials(z, mu, scale)
    dmu, dscale = posterior.backward(dlogq_dz + z)  # d(log q - log p)/dz = d log q/dz + z, through the sampler
    _, kl_dmu, kl_dscale = posterior.kl(mu, scale)
    for sampled, closed in [(dmu + dlogq_dmu, kl_dmu), (dscale + dlogq_dscale, kl_dscale)]:
        sampled, closed = on_host(sampled), on_host(closed)
        standard_error = sampled.std(axis=0) / np.sqrt(len(eps))
        assert np.all(np.abs(sampled.mean(axis=0) - closed) < 5 * standard_error + 1e-3)


@pytest.mark.parametrize("posterior", ["logvar", "sigma"])
def test_log_q_of_a_reparameterized_sample_depends_on_mu_not_at_all(posterior):
    # Total derivative of log q(mu + std eps | mu, scale): 0 for mu; -0.5 for logvar, -1/sigma for sigma.
    q = gaussian.POSTERIORS[posterior]()
    rng = np.random.default_rng(0)
    mu, scale, eps = rng.normal(0, 1, (4, 3)), rng.uniform(0.5, 2, (4, 3)), rng.standard_normal((4, 3))
    z = q.sample(on_device(mu), on_device(scale), on_device(eps))
    dz, dmu, dscale = q.log_q_partials(z, on_device(mu), on_device(scale))
    through_z_mu, through_z_scale = q.backward(dz)
    np.testing.assert_allclose(on_host(through_z_mu + dmu), 0, atol=1e-12)
    np.testing.assert_allclose(on_host(through_z_scale + dscale), -0.5 if posterior == "logvar" else -1 / scale,
                               atol=1e-12)


def test_iwae_loss_with_one_sample_is_minus_the_log_weight():
    model = small_model()
    x, eps = batch(k=1)
    loss = iwae.per_example_losses(model, x, "iwae", eps=eps)
    mu, logvar = model.encode(x)
    z = mu + backend.xp.exp(0.5 * logvar) * eps[0]
    nll, _ = model.recon_fn(model.decoder_output(z), x, grad=False)
    np.testing.assert_allclose(on_host(loss), on_host(nll - log_prior(z) + model.posterior.log_q(z, mu, logvar)),
                               rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(2, 8), seed=st.integers(0, 1000))
def test_iwae_bound_is_tighter_than_the_average_of_its_samples_elbos(k, seed):
    # Jensen, per example: -log mean_i w_i <= mean_i -log w_i, for the very same samples.
    model = small_model()
    x, eps = batch(k, seed=seed)
    bound = on_host(iwae.per_example_losses(model, x, "iwae", eps=eps))
    singles = np.mean([on_host(iwae.per_example_losses(model, x, "iwae", eps=eps[i:i + 1])) for i in range(k)],
                      axis=0)
    assert np.all(bound <= singles + 1e-12)


def test_iwae_stays_finite_in_float32_where_the_weights_underflow():
    rng = np.random.default_rng(0)
    model = mlp_vae(hidden=(32,), latent=4, rng=rng)
    x = on_device((rng.random((16, 784)) < 0.3).astype(np.float32))  # log-weights near -550: e^-550 is 0 in float32
    eps = on_device(rng.standard_normal((5, 16, 4), dtype=np.float32))
    loss = iwae.step(model, x, "iwae", eps=eps)
    assert 400 < loss.loss < 1000
    assert all(np.isfinite(on_host(g)).all() and g.dtype == np.float32 for g in model.grads.values())


def test_k_samples_share_one_encoder_pass_and_one_decoder_pass_of_k_times_b_rows():
    model = small_model()
    x, eps = batch(k=4)
    calls = []
    for part in ("encoder", "decoder"):
        layer = getattr(model, part)
        forward = layer.forward
        layer.forward = lambda inputs, part=part, forward=forward: calls.append((part, inputs.shape)) or forward(
            inputs)
    iwae.step(model, x, "iwae", eps=eps)
    assert calls == [("encoder", (5, 9)), ("decoder", (20, 3))]


def test_step_draws_its_own_noise_of_k_samples_when_none_is_given():
    model = small_model()
    x, _ = batch(k=1)
    first = iwae.step(model, x, "iwae", k=3, rng=np.random.default_rng(7))
    assert first == iwae.step(model, x, "iwae", k=3, rng=np.random.default_rng(7))
    assert first != iwae.step(model, x, "iwae", k=3, rng=np.random.default_rng(8))


def test_bad_objectives_and_sample_counts_are_one_line_errors():
    model = small_model()
    x, eps = batch(k=2)
    with pytest.raises(ValueError, match="unknown objective 'elbo'"):
        iwae.check("elbo", 1)
    with pytest.raises(ValueError, match="must be a whole number >= 1, got 0"):
        iwae.step(model, x, "iwae", k=0)
    with pytest.raises(ValueError, match=r"eps must be \(K, B, L\)"):
        iwae.step(model, x, "iwae", eps=eps[0])
    with pytest.raises(ValueError, match="use beta 1, not 0.5"):
        iwae.step(small_model(beta=0.5), x, "iwae", eps=eps)


def test_k_sample_gradients_match_on_cupy(gpu):
    assert max(k_sample_check("iwae", 3)(np.random.default_rng(0), True).values()) < TOL


def test_iwae_gradients_pass_through_the_convnet_decoder_on_k_times_b_rows():
    from minivae.models.convnet import conv_vae

    rng = np.random.default_rng(0)
    model = conv_vae(latent=2, recon="cb", channels=(2, 2, 2, 2), dense=3, image_shape=(6, 6), rng=rng,
                     dtype="float64")
    for name, param in model.params.items():  # off the ReLU kinks that zero biases sit on
        if name.endswith(".b"):
            param += on_device(rng.uniform(0.05, 0.2, param.shape))
    x, eps = on_device(rng.uniform(0, 1, (3, 36))), on_device(rng.standard_normal((2, 3, 2)))
    iwae.step(model, x, "iwae", eps=eps)
    analytic = grads_of(model)

    def loss():
        return float(iwae.per_example_losses(model, x, "iwae", eps=eps).mean())

    for name, param in model.params.items():
        assert compare(analytic[name], loss, param) < TOL, name
