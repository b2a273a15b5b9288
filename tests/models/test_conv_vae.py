"""Tests of models.convnet.conv_vae, the convolutional VAE of tutorial 003: its shapes and parameters, the gradient
of its whole loss against finite differences (on a small copy of the architecture), the same model built of the
plain layers, tutorial 003's KL weighting as beta = 0.392, and a short training run.

Everything runs on the backend in use (`pytest --backend fake-cupy` runs it all on the CuPy stand-in): inputs go
to the device with `on_device`, results come back with `on_host` to be compared; tutorial 003's loss, written
with NumPy, is computed on host copies."""

import math

import numpy as np
import pytest

from minivae.checks.finite_differences import TOLERANCE, check_model
from minivae.core import backend
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D
from minivae.core.layers import Dense, ReLU, Sigmoid
from minivae.core.layers_fast import ThreadedReLU
from minivae.core.losses import PROB_CLIP
from minivae.core.optim import Adam
from minivae.models.convnet import conv_vae
from minivae.run.data import tiny_dataset
from minivae.run.presets import build_model, config_for

on_device, on_host = backend.to_device, backend.to_numpy

# The same layer types as the tutorial's model, small enough for finite differences: 6x6 images, 2 channels.
SMALL = dict(channels=(2, 2, 2, 2), dense=3, image_shape=(6, 6))


def small_model(dtype="float64", seed=0, **kwargs):
    """The small conv VAE, with random biases: with zero ones, a unit whose inputs are all 0 (a dead ReLU before
    it) sits exactly on the next ReLU's kink, where finite differences see half a slope."""
    model = conv_vae(**(SMALL | kwargs), rng=np.random.default_rng(seed), dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for name, param in model.params.items():
        if name.endswith(".b"):
            param[...] = on_device(rng.uniform(-0.5, 0.5, size=param.shape))
    return model


def elbo_errors(model, x, eps):
    """Every parameter's relative error: model.step against finite differences of its loss, noise fixed."""
    def loss():
        recon, kl = model.per_example_losses(x, eps=eps)
        return float((recon + model.beta * kl).mean())

    return check_model(model, lambda: model.step(x, eps=eps), loss)


def images(n, pixels=784, seed=0, dtype="float64"):
    """n flat images of uniform random pixels in [0, 1), on the backend in use."""
    return on_device(np.random.default_rng(seed).uniform(0, 1, size=(n, pixels)), dtype=dtype)


def normal(shape, seed):
    """Standard normal draws (the eps of the sampler, or latent codes), on the backend in use."""
    return on_device(np.random.default_rng(seed).standard_normal(shape))


# ---- architecture -------------------------------------------------------------------------------------------------


def test_encoder_and_decoder_shapes():
    model = conv_vae(rng=np.random.default_rng(0))
    x = images(5, dtype="float32")
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 2)
    out = model.decode(mu)
    assert out.shape == (5, 784)
    assert out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1


def test_layers_follow_the_tutorial():
    model = conv_vae(rng=np.random.default_rng(0))
    conv, relu, up = FastConv2D, ThreadedReLU, FastConvTranspose2D  # the plain layers' fast twins (core/*_fast.py)
    encoder_types = [type(layer) for layer in model.encoder.layers]
    assert encoder_types == [Reshape, conv, relu, conv, relu, conv, relu, conv, relu, Flatten, Dense, relu]
    decoder_types = [type(layer) for layer in model.decoder.layers]
    assert decoder_types == [Dense, relu, Reshape, up, relu, conv, Sigmoid, Flatten]
    plain = conv_vae(rng=np.random.default_rng(0), fast=False)
    assert [type(layer) for layer in plain.encoder.layers[:3]] == [Reshape, Conv2D, ReLU]
    assert [type(layer) for layer in plain.decoder.layers[3:6]] == [ConvTranspose2D, ReLU, Conv2D]
    convs = [layer for layer in model.encoder.layers if isinstance(layer, Conv2D)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (1, 32, (1, 1)), (32, 64, (2, 2)), (64, 64, (1, 1)), (64, 64, (1, 1))]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    upsample, last = model.decoder.layers[3], model.decoder.layers[5]
    assert (upsample.in_channels, upsample.out_channels, upsample.stride) == (64, 32, (2, 2))
    assert (last.in_channels, last.out_channels, last.stride) == (32, 1, (1, 1))
    assert model.decoder.layers[2].shape == (64, 14, 14)


def test_parameter_names_and_the_keras_parameter_count():
    model = conv_vae(rng=np.random.default_rng(0))
    shapes = {name: p.shape for name, p in model.params.items()}
    assert shapes == {
        "encoder.1.W": (32, 1, 3, 3), "encoder.1.b": (32,),
        "encoder.3.W": (64, 32, 3, 3), "encoder.3.b": (64,),
        "encoder.5.W": (64, 64, 3, 3), "encoder.5.b": (64,),
        "encoder.7.W": (64, 64, 3, 3), "encoder.7.b": (64,),
        "encoder.10.W": (12544, 32), "encoder.10.b": (32,),
        "mu.W": (32, 2), "mu.b": (2,), "logvar.W": (32, 2), "logvar.b": (2,),
        "decoder.0.W": (2, 12544), "decoder.0.b": (12544,),
        "decoder.3.W": (64, 32, 3, 3), "decoder.3.b": (32,),
        "decoder.5.W": (1, 32, 3, 3), "decoder.5.b": (1,),
    }
    assert model.grads.keys() == model.params.keys()
    assert sum(p.size for p in model.params.values()) == 550_629  # what Keras's model.summary() reports


def test_bce_on_logits_has_no_sigmoid_but_decode_still_gives_probabilities():
    model = conv_vae(recon="bce", rng=np.random.default_rng(0))
    assert not any(isinstance(layer, Sigmoid) for layer in model.decoder.layers)
    z = on_device(np.random.default_rng(1).standard_normal((4, 2)).astype("float32") * 3)
    logits, probs = on_host(model.decoder_output(z)), on_host(model.decode(z))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)


def test_small_sizes_and_the_sigma_posterior():
    model = conv_vae(latent=3, posterior="sigma", recon="mse", channels=(3, 4, 5, 6), dense=7, image_shape=(8, 10),
                     rng=np.random.default_rng(0))
    mu, sigma = model.encode(images(2, 80, dtype="float32"))
    assert mu.shape == sigma.shape == (2, 3)
    assert model.decode(mu).shape == (2, 80)
    assert model.params["encoder.10.W"].shape == (6 * 4 * 5, 7)
    assert "sigma.W" in model.params


def test_odd_image_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        conv_vae(image_shape=(7, 8))


def test_the_preset_builds_it():
    config = config_for("keras-conv-2d")
    model = build_model(config, rng=np.random.default_rng(0))
    assert model.beta == config["beta"] == pytest.approx(0.392)
    assert isinstance(model.encoder.layers[1], Conv2D) and model.recon_name == "bce-prob"


def test_sampling_uses_the_standard_deviation_not_the_variance():
    # Tutorial 003 samples z = mu + exp(logvar) * eps; minivae uses exp(0.5 * logvar), as its KL assumes.
    model = small_model()
    x, eps = images(3, 36), normal((3, 2), seed=1)
    mu, logvar = model.encode(x)
    z = model.posterior.sample(mu, logvar, eps=eps)
    mu, logvar, eps = on_host(mu), on_host(logvar), on_host(eps)
    np.testing.assert_allclose(on_host(z), mu + np.exp(0.5 * logvar) * eps, rtol=1e-12)


# ---- gradients ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [dict(recon="bce-prob"), dict(recon="bce", beta=0.392),
                                    dict(recon="mse", posterior="sigma")])
def test_whole_model_gradient_matches_finite_differences(config):
    model = small_model(**config)
    x, eps = images(3, 36, seed=2), normal((3, 2), seed=3)
    errors = elbo_errors(model, x, eps)
    assert errors.keys() == model.params.keys()
    assert max(errors.values()) < TOLERANCE, errors


def test_the_model_of_plain_layers_gives_the_same_step():
    fast, plain = small_model(recon="bce"), small_model(recon="bce", fast=False)
    x, eps = images(3, 36, seed=2), normal((3, 2), seed=3)
    assert fast.step(x, eps=eps).loss == pytest.approx(plain.step(x, eps=eps).loss, rel=1e-12)
    for name, grad in fast.grads.items():
        np.testing.assert_allclose(on_host(grad), on_host(plain.grads[name]), rtol=1e-10, atol=1e-12, err_msg=name)


def tutorial_003_loss(x, probs, mu, logvar):
    """Tutorial 003's loss, as its Keras code computes it: the mean over pixels of binary cross-entropy (Keras
    clips probabilities to [1e-7, 1 - 1e-7]), minus 5e-4 times the mean over latent units of
    (1 + logvar - mu^2 - exp(logvar)), averaged over the batch. On host copies of the arrays, with NumPy."""
    x, probs, mu, logvar = on_host(x), on_host(probs), on_host(mu), on_host(logvar)
    p = np.clip(probs, PROB_CLIP, 1 - PROB_CLIP)
    xent = -(x * np.log(p) + (1 - x) * np.log(1 - p)).mean(axis=-1)
    kl_loss = -5e-4 * np.mean(1 + logvar - mu**2 - np.exp(logvar), axis=-1)
    return np.mean(xent + kl_loss)


def tutorial_beta(pixels, latent):
    return pixels * 5e-4 * 2 / latent


def test_tutorial_003_loss_is_the_elbo_with_beta_0_392_divided_by_784():
    assert tutorial_beta(784, 2) == pytest.approx(0.392)
    model = conv_vae(beta=0.392, rng=np.random.default_rng(0), dtype="float64")
    x, eps = images(6, seed=4), normal((6, 2), seed=5)
    mu, logvar = model.encode(x)
    probs = model.decode(model.posterior.sample(mu, logvar, eps=eps))
    recon, kl = model.per_example_losses(x, eps=eps)
    ours = float(recon.mean() + 0.392 * kl.mean())
    assert tutorial_003_loss(x, probs, mu, logvar) == pytest.approx(ours / 784, rel=1e-12)
    assert model.step(x, eps=eps).loss == pytest.approx(ours, rel=1e-12)


def test_tutorial_003_loss_gradient_is_ours_divided_by_the_pixel_count():
    # On the small model (36 pixels, so beta = 36 * 5e-4 * 2 / 2): the gradient of the tutorial's loss, by finite
    # differences, is minivae's analytic gradient of recon + beta * KL divided by 36, for every parameter.
    beta = tutorial_beta(36, 2)
    model = small_model(beta=beta)
    x, eps = images(3, 36, seed=6), normal((3, 2), seed=7)
    model.step(x, eps=eps)

    def loss():
        mu, logvar = model.encode(x)
        return tutorial_003_loss(x, model.decode(model.posterior.sample(mu, logvar, eps=eps)), mu, logvar)

    for name, param in model.params.items():
        numeric = np.zeros(param.shape)
        for i in np.ndindex(param.shape):
            old = float(param[i])  # a number, not a 0-d view of the entry (CuPy's param[i] is one)
            param[i] = old + 1e-5
            up = loss()
            param[i] = old - 1e-5
            down = loss()
            param[i] = old
            numeric[i] = (up - down) / 2e-5
        np.testing.assert_allclose(on_host(model.grads[name]) / 36, numeric, rtol=1e-5, atol=1e-9, err_msg=name)


def test_adam_is_nearly_blind_to_the_loss_scale():
    # So training on recon + 0.392 KL takes the tutorial's steps, although its loss is that divided by 784.
    rng = np.random.default_rng(8)
    grads = [{"w": on_device(rng.standard_normal(50))} for _ in range(20)]
    params, scaled_params = {"w": backend.xp.zeros(50)}, {"w": backend.xp.zeros(50)}
    opt, scaled_opt = Adam(params), Adam(scaled_params)
    for g in grads:
        opt.step(g)
        scaled_opt.step({"w": g["w"] / 784})
    # the same path to within 1% of how far it went (only Adam's eps, 1e-8, sees the scale)
    path, scaled_path = on_host(params["w"]), on_host(scaled_params["w"])
    np.testing.assert_allclose(scaled_path, path, rtol=0, atol=0.01 * np.abs(path).max())


# ---- training -------------------------------------------------------------------------------------------------------


def test_a_few_hundred_adam_steps_drive_the_loss_down():
    # The tutorial's architecture with 8 channels throughout, on 8 tiny-dataset images shrunk to 14x14: small
    # enough that every product stays below OpenBLAS's threading threshold (two BLAS threads on a busy 2-core
    # machine can make a step 10x slower), so the test takes well under a second anywhere.
    x = tiny_dataset(n_train=8, n_test=0).x_train.reshape(8, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(8, 196)
    x_host, x = x, on_device(x)
    model = conv_vae(channels=(8, 8, 8, 8), dense=16, image_shape=(14, 14), beta=0.392, rng=np.random.default_rng(0))
    opt = Adam(model.params, lr=3e-3)
    eps = np.random.default_rng(1)
    first = model.step(x, rng=eps)
    for _ in range(400):
        last = model.step(x, rng=eps)
        opt.step(model.grads)
    assert math.isfinite(last.loss)
    assert last.loss < 0.25 * first.loss, (first, last)  # about 170 -> 23 nats
    # and it reconstructs each image better than the best single image (the mean) could: z carries information
    p = np.clip(x_host.mean(axis=0), PROB_CLIP, 1 - PROB_CLIP)
    mean_image_bce = -(x_host * np.log(p) + (1 - x_host) * np.log(1 - p)).sum(axis=1).mean()
    assert last.recon < 0.8 * mean_image_bce, (last, mean_image_bce)


# ---- GPU ------------------------------------------------------------------------------------------------------------


def test_whole_model_gradient_on_gpu(gpu):
    # `gpu` (conftest.py) switches to CuPy or skips with the reason; the autouse fixture switches back to NumPy.
    model = small_model(recon="bce")
    x = gpu.asarray(images(3, 36, seed=2))
    eps = gpu.asarray(np.random.default_rng(3).standard_normal((3, 2)))
    errors = elbo_errors(model, x, eps)
    assert max(errors.values()) < TOLERANCE, errors
    out = model.decode(model.encode(x)[0])
    assert out.shape == (3, 36) and isinstance(out, gpu.ndarray)
    assert backend.is_gpu()


def test_a_step_on_gpu_matches_numpy(gpu):
    x, eps = on_host(images(4, 36, seed=2)), on_host(normal((4, 2), seed=3))  # host copies, for both backends
    backend.use("numpy")
    cpu_model = small_model()
    cpu_loss = cpu_model.step(x, eps=eps)
    backend.use("cupy")
    gpu_model = small_model()
    gpu_loss = gpu_model.step(gpu.asarray(x), eps=gpu.asarray(eps))
    assert gpu_loss.loss == pytest.approx(cpu_loss.loss, rel=1e-10)
    for name, grad in cpu_model.grads.items():
        np.testing.assert_allclose(backend.to_numpy(gpu_model.grads[name]), grad, rtol=1e-8, atol=1e-12, err_msg=name)
