"""Training runs in float32 end to end, and stays finite at the extremes float32 meets.

* No silent float64 upcast: a float64 array handed from one layer to the next (a one-hot of the wrong dtype, a
  weight drawn as float64) would double the memory traffic of a step and hide itself, because every gradient is
  written into a float32 array in the end. So every array going into and out of every layer, the sampler, the KL
  and the reconstruction loss is recorded, for each kind of model, and must be float32.
* Log-weights hundreds of nats apart: a blank image beside a busy one under a decoder that expects blank pixels.
  The log-sum-exp must be shifted by each example's own largest log-weight; a shift by the batch's largest would
  make every weight of the busy image e^-600 = 0 in float32, and its loss infinite.
* One image's samples hundreds of nats apart: a decoder that draws the busy image where z[0] > 0 and a blank one
  where z[0] < 0. A shift by anything but the largest (the smallest, say) would overflow e^x past 88 nats.
"""

import numpy as np
import pytest
import references as ref

from minivae.core import backend
from minivae.models import iwae
from minivae.models.convnet import conv_vae
from minivae.models.m2 import mlp_m2
from minivae.models.vae import mlp_vae

on_device, on_host = backend.to_device, backend.to_numpy
POSTERIOR_METHODS = ("sample", "backward", "kl", "log_q", "log_q_partials")


def layers_of(layer):
    """A layer and every layer inside it (a Sequential's), depth first."""
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from layers_of(inner)


def record_float_dtypes(monkeypatch, vaes, classifiers=()):
    """Wrap every layer's forward and backward, and each VAE's sampler, KL, reconstruction loss and weighted_step,
    so that the dtype of every floating-point array they take or give is recorded. Returns the record, a list of
    (where, dtype)."""
    seen = []

    def wrap(owner, name, where):
        original = getattr(owner, name)

        def recording(*args, **kwargs):
            out = original(*args, **kwargs)
            for a in (*args, *kwargs.values(), *(out if isinstance(out, tuple) else (out,))):
                if getattr(a, "dtype", None) is not None and a.dtype.kind == "f":
                    seen.append((where, a.dtype))
            return out

        monkeypatch.setattr(owner, name, recording)

    for vae in vaes:
        for part in (vae.encoder, vae.mu_head, vae.scale_head, vae.decoder):
            for layer in layers_of(part):
                wrap(layer, "forward", f"{layer!r}.forward")
                wrap(layer, "backward", f"{layer!r}.backward")
        for method in POSTERIOR_METHODS:
            wrap(vae.posterior, method, f"posterior.{method}")
        wrap(vae, "recon_fn", "the reconstruction loss")
        wrap(vae, "weighted_step", "VAE.weighted_step")
    for classifier in classifiers:
        for layer in layers_of(classifier.network):
            wrap(layer, "forward", f"classifier {layer!r}.forward")
            wrap(layer, "backward", f"classifier {layer!r}.backward")
    return seen


def assert_all_float32(seen):
    assert seen, "nothing was recorded"
    upcast = sorted({where for where, dtype in seen if dtype != np.float32})
    assert not upcast, f"float64 (or other) arrays at: {upcast}"


def float32_images(n, d=784, seed=0):
    return on_device((np.random.default_rng(seed).random((n, d)) < 0.3).astype(np.float32))


@pytest.mark.parametrize("posterior", ["logvar", "sigma"])
@pytest.mark.parametrize("recon", ["bce", "bce-prob", "mse", "cb"])
def test_a_conditional_vae_step_hands_only_float32_from_layer_to_layer(monkeypatch, recon, posterior):
    cvae = mlp_vae(hidden=(16,), latent=3, recon=recon, posterior=posterior, classes=4, beta=0.5,
                   rng=np.random.default_rng(0))
    seen = record_float_dtypes(monkeypatch, [cvae])
    cvae.step(float32_images(6), np.array([0, 3, 1, 2, 2, 0]),
              eps=on_device(np.random.default_rng(1).standard_normal((6, 3), dtype=np.float32)))
    assert_all_float32(seen)


def test_an_m2_step_hands_only_float32_from_layer_to_layer(monkeypatch):
    m2 = mlp_m2(hidden=(16,), latent=3, classes=4, classifier_hidden=(8,), alpha=2.0, labelled_weight=0.3,
                rng=np.random.default_rng(0))
    seen = record_float_dtypes(monkeypatch, [m2.cvae], [m2.classifier])
    noise = np.random.default_rng(1)
    m2.step(float32_images(3), np.array([1, 0, 3]), float32_images(5, seed=2),
            eps_labelled=on_device(noise.standard_normal((3, 3), dtype=np.float32)),
            eps_unlabelled=on_device(noise.standard_normal((4 * 5, 3), dtype=np.float32)))
    assert_all_float32(seen)


def test_an_m2_step_with_no_noise_given_draws_float32(monkeypatch):
    m2 = mlp_m2(hidden=(16,), latent=3, classes=4, classifier_hidden=(8,), rng=np.random.default_rng(0))
    seen = record_float_dtypes(monkeypatch, [m2.cvae], [m2.classifier])
    m2.step(float32_images(3), np.array([1, 0, 3]), float32_images(5, seed=2), rng=np.random.default_rng(3))
    assert_all_float32(seen)


@pytest.mark.parametrize("objective, k", [("vae", 1), ("vae", 3), ("iwae", 3)])
def test_a_k_sample_step_hands_only_float32_from_layer_to_layer(monkeypatch, objective, k):
    vae = mlp_vae(hidden=(16,), latent=3, rng=np.random.default_rng(0))
    seen = record_float_dtypes(monkeypatch, [vae])
    iwae.step(vae, float32_images(6), objective, k=k, rng=np.random.default_rng(1))
    assert_all_float32(seen)


def test_a_convnet_step_and_its_log_likelihood_hand_only_float32_from_layer_to_layer(monkeypatch):
    vae = conv_vae(channels=(2, 2, 2, 2), dense=4, image_shape=(8, 8), rng=np.random.default_rng(0))
    seen = record_float_dtypes(monkeypatch, [vae])
    x = float32_images(3, d=64)
    vae.step(x, eps=on_device(np.random.default_rng(1).standard_normal((3, 2), dtype=np.float32)))
    assert vae.log_likelihood(x, k=2, rng=np.random.default_rng(2)).dtype == np.float32  # its log-weights too
    assert_all_float32(seen)


# ---- log-weights hundreds of nats apart -------------------------------------------------------------------------


def blank_beside_busy(d=60):
    """A float32 VAE whose decoder expects blank images (its output bias -10: p(pixel) ~ 4.5e-5), and two images:
    a blank one (-log p(x|z) ~ 0.003) and a busy one, every pixel on (~ 600 nats): log-weights ~600 nats apart."""
    vae = mlp_vae(input_dim=d, hidden=(8,), latent=2, activation="tanh", rng=np.random.default_rng(0))
    vae.params["decoder.2.b"][...] = -10.0
    x = np.zeros((2, d), dtype=np.float32)
    x[1] = 1.0
    return vae, x


def test_the_iwae_step_in_float32_is_finite_for_a_blank_image_beside_a_busy_one():
    vae, x = blank_beside_busy()
    eps = np.random.default_rng(1).standard_normal((5, 2, 2), dtype=np.float32)
    losses = on_host(iwae.per_example_losses(vae, on_device(x), "iwae", eps=on_device(eps)))
    assert losses[1] - losses[0] > 500  # hundreds of nats apart, as meant
    expected = [-ref.importance_weighted(vae, x[b], eps[:, b].astype(np.float64)) for b in range(2)]
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-5)  # float32's rounding of terms ~1
    loss = iwae.step(vae, on_device(x), "iwae", eps=on_device(eps))
    assert loss.loss == pytest.approx(np.mean(expected), rel=1e-5)
    for name, grad in vae.grads.items():
        assert np.isfinite(on_host(grad)).all(), name


def busy_or_blank_by_the_sign_of_z0(d=60):
    """A float32 VAE whose decoder's pixels are all on where z[0] > 0 (logits ~ +10) and all off where z[0] < 0
    (logits ~ -10): a busy image's log-weights are ~0 for the first samples and ~ -600 nats for the others."""
    vae = mlp_vae(input_dim=d, hidden=(8,), latent=2, activation="tanh", rng=np.random.default_rng(0))
    for name in ("decoder.0.W", "decoder.0.b", "decoder.2.W", "decoder.2.b"):
        vae.params[name][...] = 0.0
    vae.params["decoder.0.W"][0, 0] = 50.0  # hidden unit 0 = tanh(50 z[0]), +-1 but for |z[0]| < 0.05
    vae.params["decoder.2.W"][0, :] = 10.0  # every pixel's logit: 10 tanh(50 z[0])
    return vae, np.ones((1, d), dtype=np.float32)


def test_the_iwae_step_in_float32_is_finite_where_one_images_samples_are_hundreds_of_nats_apart():
    vae, x = busy_or_blank_by_the_sign_of_z0()
    mu, std = ref.posterior(vae, x[0])
    z = np.array([[1.0, 0.0], [-1.0, 0.0], [-2.0, 0.5]])  # K = 3 samples: the busy image, then a blank one twice
    eps = ((z - mu) / std)[:, None, :].astype(np.float32)  # (K, 1, L)
    log_w = [ref.log_weight(vae, x[0], e.astype(np.float64)) for e in eps[:, 0]]
    assert max(log_w) - min(log_w) > 500  # hundreds of nats apart, as meant
    loss = iwae.step(vae, on_device(x), "iwae", eps=on_device(eps))
    expected = -ref.importance_weighted(vae, x[0], eps[:, 0].astype(np.float64))
    assert loss.loss == pytest.approx(expected, abs=2e-4)  # float32 rounds softplus(10) to ~1e-6, 60 pixels
    for name, grad in vae.grads.items():
        assert np.isfinite(on_host(grad)).all(), name


def test_the_importance_weighted_log_likelihood_in_float32_is_finite_for_a_blank_image_beside_a_busy_one():
    vae, x = blank_beside_busy()
    estimate = on_host(vae.log_likelihood(on_device(x), k=5, rng=np.random.default_rng(2)))
    draws = np.random.default_rng(2)
    eps = np.stack([draws.standard_normal((2, 2), dtype=np.float32) for _ in range(5)]).astype(np.float64)
    expected = [ref.importance_weighted(vae, x[b], eps[:, b]) for b in range(2)]
    np.testing.assert_allclose(estimate, expected, rtol=1e-5, atol=1e-5)
