"""The fused GPU kernels (core/kernels.py) compute their plain formulas, and the fast twins use them exactly where the
backend can compile them.

Every test taking `kernels_on` runs twice (conftest.py): on the CuPy stand-in with tests/kernel_emulator.py's
ElementwiseKernel, which compiles each kernel's CUDA C as C++ for the CPU, and on a real CuPy, skipped without a
GPU. The reference is always the plain formula on NumPy. Kernels of + - * / and sqrt must give its float32 bits
exactly (no fused multiply-adds: kernels.OPTIONS); those with exp and log, its numbers to a few roundings.
"""

import fake_cupy
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivae.core import backend, gaussian, gaussian_fast, kernels, layers, layers_fast, losses, losses_fast, optim_fast
from minivae.models import iwae
from minivae.models.convnet import conv_vae
from minivae.models.vae import mlp_vae

# hypothesis draws the data; the fixture's backend stays the same for all of a test's examples
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9)
DTYPES = st.sampled_from([np.float32, np.float64])


def on_numpy(function, *arrays, **kwargs):
    """function(*arrays) computed on NumPy (the plain formulas), whatever backend the test is on."""
    name = backend.name
    try:
        backend.use("numpy")
        return function(*arrays, **kwargs)
    finally:
        backend.use(name)


def host(*arrays):
    return [None if a is None else backend.to_numpy(a) for a in arrays]


def assert_close(fused, plain, dtype, roundings=8):
    """Equal to a few roundings of dtype, relative to each value or to 1 (a loss or gradient near 0)."""
    tolerance = roundings * np.finfo(dtype).eps
    np.testing.assert_allclose(fused, plain, rtol=tolerance, atol=tolerance)


# ---- the optimizers: one kernel per parameter array, bit for bit


@pytest.mark.parametrize("name", sorted(optim_fast.OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_optimizer_kernel_gives_the_chunked_updates_bit_for_bit_through_a_flush(kernels_on, name, dtype):
    rng = np.random.default_rng(0)
    shapes = {"W": (13, 7), "b": (7,), "c": (1,)}
    start = {key: rng.standard_normal(shape).astype(dtype) for key, shape in shapes.items()}
    steps = [{key: (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3)).astype(dtype) for key, shape in
              shapes.items()} for _ in range(optim_fast.FLUSH_EVERY + 3)]
    for grads in steps:  # entries whose state stays 0, and tiny ones (subnormal squares) for the flush
        grads["b"][:3] = 0
        grads["W"][0, :4] = [1e-20, -1e-18, 3e-17, 0]

    def train():
        params = {key: backend.to_device(value) for key, value in start.items()}
        optimizer = optim_fast.OPTIMIZERS[name](params, lr=1e-2)
        for grads in steps:
            optimizer.step({key: backend.to_device(value) for key, value in grads.items()})
        return host(*params.values(), *(a for arrays in optimizer.state.values() for a in arrays.values()))

    fused, plain = train(), on_numpy(train)
    for f, p in zip(fused, plain, strict=True):
        np.testing.assert_array_equal(f.view(f"i{f.itemsize}"), p.view(f"i{p.itemsize}"))  # the bits


def test_the_adam_kernel_flushes_tiny_state_only_at_every_flush_step(kernels_on):
    params = {"w": backend.to_device(np.ones(4, np.float32))}
    adam = optim_fast.FastAdam(params, lr=1e-3)
    adam.state["M"]["w"][...] = backend.to_device(np.array([1e-31, -1e-31, 1e-29, 0], np.float32))
    adam.t = optim_fast.FLUSH_EVERY - 2
    zero = {"w": backend.to_device(np.zeros(4, np.float32))}
    adam.step(zero)  # t = FLUSH_EVERY - 1: no flush, the moments just decay by beta1
    assert np.all(backend.to_numpy(adam.state["M"]["w"])[:2] != 0)
    adam.step(zero)  # t = FLUSH_EVERY: flushed, then decayed
    beta = np.float32(0.9)
    np.testing.assert_array_equal(backend.to_numpy(adam.state["M"]["w"]), [0, 0, np.float32(1e-29) * beta * beta, 0])


# ---- ReLU's backward


@SETTINGS
@given(data=st.data(), dtype=DTYPES)
def test_the_relu_backward_kernel_is_the_plain_formula_bit_for_bit(kernels_on, data, dtype):
    shape = data.draw(SHAPES)
    values = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8) | st.sampled_from([0.0, -0.0, np.nan])
    x, dout = (data.draw(hnp.arrays(dtype, shape, elements=values)) for _ in range(2))
    relu = layers_fast.FastReLU()
    relu.forward(backend.to_device(x))
    [fused] = host(relu.backward(backend.to_device(dout)))

    def plain():
        reference = layers.ReLU()
        reference.forward(x)
        return reference.backward(dout)

    np.testing.assert_array_equal(fused, on_numpy(plain))  # nan where nan, and dout * 0's sign


def test_the_threaded_relu_takes_the_kernel_too(kernels_on):
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    relu = layers_fast.ThreadedReLU()
    out = relu.forward(backend.to_device(x))
    [dx] = host(relu.backward(out))
    np.testing.assert_array_equal(dx, np.maximum(x, 0))  # dout = out: dx = out where out > 0


# ---- the losses


@SETTINGS
@given(data=st.data(), dtype=DTYPES, scale=st.sampled_from([1.0, 0.01]))
def test_the_bce_logits_kernel_is_the_plain_formula(kernels_on, data, dtype, scale):
    rows, columns = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 30))
    logits = data.draw(hnp.arrays(dtype, (rows, columns), elements=st.floats(-60, 60, width=32)))
    x = data.draw(hnp.arrays(dtype, (rows, columns), elements=st.floats(0, 1, width=32)))
    nll, dlogits = host(*losses_fast.bce_logits(backend.to_device(logits), backend.to_device(x), scale))
    plain_nll, plain_dlogits = on_numpy(losses.bce_logits, logits, x, scale)
    assert nll.dtype == dlogits.dtype == dtype and nll.shape == (rows,)
    # the row's sum adds |a| x-sized terms: its roundings scale with the row's largest term
    assert_close(nll / (1 + np.abs(logits).sum(axis=1)), plain_nll / (1 + np.abs(logits).sum(axis=1)), dtype)
    assert_close(dlogits, plain_dlogits, dtype)


@SETTINGS
@given(data=st.data(), dtype=DTYPES)
def test_the_bce_probs_kernel_is_the_plain_formula_clip_included(kernels_on, data, dtype):
    rows, columns = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 30))
    edges = st.sampled_from([0.0, 1.0, 1e-9, 1 - 1e-9, losses.PROB_CLIP, 0.5])
    probs = data.draw(hnp.arrays(dtype, (rows, columns), elements=st.floats(0, 1, width=32) | edges))
    x = data.draw(hnp.arrays(dtype, (rows, columns), elements=st.floats(0, 1, width=32)))
    nll, dprobs = host(*losses_fast.bce_probs(backend.to_device(probs), backend.to_device(x), 0.5))
    plain_nll, plain_dprobs = on_numpy(losses.bce_probs, probs, x, 0.5)
    assert_close(nll / (1 + plain_nll), plain_nll / (1 + plain_nll), dtype)
    scale = 1 + np.abs(plain_dprobs)  # (p - x) / (p (1 - p)) reaches 1e7 at the clip
    assert_close(dprobs / scale, plain_dprobs / scale, dtype)
    np.testing.assert_array_equal(dprobs == 0, plain_dprobs == 0)  # the same clipped pixels


def test_the_loss_kernels_give_no_gradient_when_asked_for_none(kernels_on):
    a = backend.to_device(np.zeros((2, 3), np.float32))
    for loss in (losses_fast.bce_logits, losses_fast.bce_probs):
        nll, gradient = loss(a + 0.5, a, grad=False)
        assert gradient is None and nll.shape == (2,)


# ---- the sampler and the KL


@SETTINGS
@given(data=st.data(), dtype=DTYPES, k=st.sampled_from([None, 3]))
def test_the_sampler_kernels_are_the_plain_formulas(kernels_on, data, dtype, k):
    batch, latent = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    normal = st.floats(-5, 5, width=32)
    mu, logvar, dz_base = (data.draw(hnp.arrays(dtype, (batch, latent), elements=normal)) for _ in range(3))
    eps_shape = (batch, latent) if k is None else (k, batch, latent)  # the IWAE's K samples broadcast mu, logvar
    eps = data.draw(hnp.arrays(dtype, eps_shape, elements=normal))
    dz = np.broadcast_to(dz_base, eps_shape).copy()
    fused = gaussian_fast.FastLogvarGaussian()
    z = fused.sample(*(backend.to_device(a) for a in (mu, logvar, eps)))
    dmu, dlogvar = fused.backward(backend.to_device(dz))
    kl, dkl_dmu, dkl_dlogvar = gaussian_fast.FastLogvarGaussian.kl(backend.to_device(mu), backend.to_device(logvar))

    def plain():
        reference = gaussian.LogvarGaussian()
        return (reference.sample(mu, logvar, eps), *reference.backward(dz), *gaussian.LogvarGaussian.kl(mu, logvar))

    for got, expected in zip(host(z, dmu, dlogvar, kl, dkl_dmu, dkl_dlogvar), on_numpy(plain), strict=True):
        assert got.shape == expected.shape and got.dtype == dtype
        assert_close(got / (1 + np.abs(expected)), expected / (1 + np.abs(expected)), dtype)


# ---- the dispatch: the kernels where the backend compiles them, the plain formulas elsewhere


def launches_of_a_training_step(model, x, monkeypatch):
    """The names of the kernels one step of model on x and its Adam update launch, in order."""
    names = []
    launch = kernels.Kernel.__call__

    def counted(kernel, *args):
        names.append(kernel.name)
        return launch(kernel, *args)

    monkeypatch.setattr(kernels.Kernel, "__call__", counted)
    optimizer = optim_fast.FastAdam(model.params)
    model.step(x, eps=backend.to_device(np.zeros((len(x), model.latent), np.float32)))
    optimizer.step(model.grads)
    return names


def test_a_training_step_fuses_the_sampler_kl_loss_relu_and_adam_where_kernels_run(kernels_on, monkeypatch):
    model = mlp_vae(hidden=(8,), latent=2, rng=np.random.default_rng(0))
    names = launches_of_a_training_step(model, backend.to_device(np.full((3, 784), 0.5, np.float32)), monkeypatch)
    assert names == ["minivae_logvar_sample", "minivae_bce_logits", "minivae_logvar_kl", "minivae_relu_backward",
                     "minivae_logvar_sample_backward", "minivae_relu_backward"] + ["minivae_adam"] * len(model.params)


@pytest.mark.parametrize("backend_name", ["numpy", "cupy"])
def test_without_a_kernel_compiler_the_fast_twins_run_the_plain_formulas(backend_name, monkeypatch):
    monkeypatch.setattr(backend, "import_cupy", lambda: fake_cupy)  # CuPy's stand-in
    monkeypatch.delattr(fake_cupy, "ElementwiseKernel", raising=False)  # as it is: no ElementwiseKernel
    backend.use(backend_name)
    model = mlp_vae(hidden=(8,), latent=2, rng=np.random.default_rng(0))
    assert not kernels.available()
    assert launches_of_a_training_step(model, backend.to_device(np.full((3, 784), 0.5, np.float32)),
                                       monkeypatch) == []


@pytest.mark.parametrize("build, objective, pixels", [
    (lambda: mlp_vae(hidden=(16,), latent=3, rng=np.random.default_rng(0)), "vae", 784),
    (lambda: mlp_vae(hidden=(16,), latent=3, recon="bce-prob", rng=np.random.default_rng(0)), "iwae", 784),
    (lambda: conv_vae(channels=(2, 3, 3, 2), dense=4, image_shape=(6, 6), rng=np.random.default_rng(0)), "vae", 36),
], ids=["mlp", "mlp-iwae-bce-prob", "convnet"])
def test_training_on_the_kernels_follows_training_on_numpy(kernels_on, build, objective, pixels):
    """Five steps and Adam updates of a whole model: the same losses and weights to float32's precision."""
    rng = np.random.default_rng(1)
    model_on_kernels = build()
    xs = [rng.random((4, pixels), dtype=np.float32) for _ in range(5)]
    eps = [rng.standard_normal((2, 4, model_on_kernels.latent), dtype=np.float32) for _ in range(5)]

    def train(model):
        optimizer = optim_fast.FastAdam(model.params, lr=1e-2)
        trained = []
        for x, e in zip(xs, eps):
            if objective == "iwae":
                loss = iwae.step(model, backend.to_device(x), "iwae", eps=backend.to_device(e))
            else:
                loss = model.step(backend.to_device(x), eps=backend.to_device(e[0]))
            optimizer.step(model.grads)
            trained.append(loss.loss)
        return trained, host(*model.params.values())

    fused_losses, fused_params = train(model_on_kernels)
    plain_losses, plain_params = on_numpy(lambda: train(build()))
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-5)
    for fused, plain in zip(fused_params, plain_params, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-5)
