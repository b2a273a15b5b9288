"""The fast convolution layers (core/conv_fast.py) compute what the plain ones (core/conv.py) compute: forward,
dx and every gradient, on random shapes, strides and paddings; each of their ways round (dx as a convolution,
by shifts, col2im by phases) where it is used, the work arrays they keep, and a step on two threads.

Everything runs on the backend in use (`pytest --backend fake-cupy` runs it all on the CuPy stand-in)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv import build, conv_cases, conv_transpose_cases, random_input, seeds

from minivae.checks.finite_differences import TOLERANCE, check_layer
from minivae.core import backend, threads
from minivae.core.conv import Conv2D, ConvTranspose2D
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D
from minivae.core.layers import ReLU
from minivae.core.layers_fast import ThreadedReLU
from minivae.models.convnet import conv_vae

on_device, on_host = backend.to_device, backend.to_numpy


def normal(shape, seed):
    return on_device(np.random.default_rng(seed).standard_normal(shape))


def assert_same_layer(plain, fast, x):
    """forward, dx and every gradient of the two layers agree (float64: only the order of sums differs)."""
    out = plain.forward(x)
    np.testing.assert_allclose(on_host(fast.forward(x)), on_host(out), rtol=1e-10, atol=1e-12)
    dout = normal(out.shape, 7)
    np.testing.assert_allclose(on_host(fast.backward(dout)), on_host(plain.backward(dout)), rtol=1e-10, atol=1e-12)
    for name, grad in plain.grads.items():
        np.testing.assert_allclose(on_host(fast.grads[name]), on_host(grad), rtol=1e-10, atol=1e-12, err_msg=name)


@settings(max_examples=100, deadline=None)
@given(conv_cases(), seeds)
def test_fast_conv2d_computes_what_conv2d_computes(case, seed):
    args, shape = case
    assert_same_layer(build(Conv2D, args, shape[1], seed), build(FastConv2D, args, shape[1], seed),
                      random_input(shape, seed))


@settings(max_examples=100, deadline=None)
@given(conv_transpose_cases(), seeds)
def test_fast_conv_transpose2d_computes_what_conv_transpose2d_computes(case, seed):
    args, shape = case
    assert_same_layer(build(ConvTranspose2D, args, shape[1], seed), build(FastConvTranspose2D, args, shape[1], seed),
                      random_input(shape, seed))


@pytest.mark.parametrize("threads_used", [1, 2])
def test_threaded_relu_computes_what_relu_computes(threads_used):
    x = normal((4, 32, 40, 40), 0)  # big enough for in_slices to cut it in two
    dout = normal(x.shape, 1)
    plain, fast = ReLU(), ThreadedReLU()
    with threads.limit_threads(threads_used):
        np.testing.assert_array_equal(on_host(fast.forward(x)), on_host(plain.forward(x)))
        np.testing.assert_array_equal(on_host(fast.backward(dout)), on_host(plain.backward(dout)))


# ---- Conv2D's two input gradients -------------------------------------------------------------------------------


@st.composite
def stride_one_cases(draw):
    """A stride-1 Conv2D with at most as many output as input channels, and an input for it."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    in_channels = draw(st.integers(1, 3))
    out_channels = draw(st.integers(1, in_channels))
    shape = (draw(st.integers(1, 2)), in_channels, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    return dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel, padding=padding), shape


@settings(max_examples=60, deadline=None)
@given(stride_one_cases(), st.integers(0, 2**16))
def test_dx_by_convolution_equals_dx_by_col2im_and_finite_differences(case, seed):
    args, shape = case
    layer = FastConv2D(**args, rng=np.random.default_rng(seed), dtype="float64")
    x = normal(shape, seed + 1)
    out = layer.forward(x)
    dout = normal(out.shape, seed + 2)
    pads_fit = all(p < k for pair, k in zip(layer.pads, layer.kernel_size, strict=True) for p in pair)
    assert layer.dx_is_a_convolution() == pads_fit  # stride 1, C_out <= C_in: only large pads use col2im
    dx = on_host(layer.backward(dout)).copy()  # a copy: backward may reuse its arrays
    layer.dx_is_a_convolution = lambda: False  # force the col2im way
    np.testing.assert_allclose(dx, on_host(layer.backward(dout)), rtol=1e-10, atol=1e-12)
    del layer.dx_is_a_convolution
    errors = check_layer(layer, x)
    assert max(errors.values()) < TOLERANCE, errors


def test_dx_by_convolution_is_used_only_where_it_is_smaller():
    x = backend.xp.zeros((1, 4, 5, 5))
    for layer, expected in [(FastConv2D(4, 1, 3, padding="same"), True), (FastConv2D(4, 4, 3, padding=1), True),
                            (FastConv2D(4, 8, 3, padding="same"), False), (FastConv2D(4, 1, 3, stride=2), False),
                            (FastConv2D(4, 1, 1, padding=1), False)]:
        layer.forward(x.astype(layer.params["W"].dtype))
        assert layer.dx_is_a_convolution() == expected, layer


def test_forward_goes_by_shifts_only_with_fewer_output_than_input_channels_at_stride_1():
    assert FastConv2D(32, 1, 3, padding="same").by_shifts()
    assert not FastConv2D(32, 32, 3, padding="same").by_shifts()
    assert not FastConv2D(32, 1, 3, stride=2, padding="same").by_shifts()


def test_work_arrays_are_reused_and_the_padding_stays_zero():
    layer = FastConv2D(2, 3, 3, stride=2, padding="same", rng=np.random.default_rng(0), dtype="float64")
    rng = np.random.default_rng(1)
    layer.forward(on_device(rng.standard_normal((2, 2, 6, 6))))
    cols = layer.work["cols"]
    x = on_device(rng.standard_normal((2, 2, 6, 6)))
    out = on_host(layer.forward(x)).copy()
    assert layer.work["cols"] is cols
    fresh = FastConv2D(2, 3, 3, stride=2, padding="same", rng=np.random.default_rng(0), dtype="float64")
    np.testing.assert_array_equal(out, on_host(fresh.forward(x)))
    # 5x5 and 6x6 inputs both pad to 7x7, with the odd pixel in different places: the border must not go stale
    x5 = on_device(rng.standard_normal((2, 2, 5, 5)))
    np.testing.assert_array_equal(on_host(layer.forward(x5)), on_host(fresh.forward(x5)))
    np.testing.assert_array_equal(on_host(layer.forward(x)), on_host(fresh.forward(x)))


@pytest.mark.numpy_only
def test_a_step_on_two_threads_gives_the_same_gradients_as_on_one(monkeypatch):
    # The tutorial's own sizes at batch 16, so that the copies, col2im's adds and ReLU's passes are big enough
    # for threads.in_slices to hand each of 2 threads a block (recorded below); every gradient is the same.
    model = conv_vae(rng=np.random.default_rng(0))
    x = on_device(np.random.default_rng(0).uniform(0, 1, (16, 784)), dtype="float32")
    eps = on_device(normal((16, 2), seed=1), dtype="float32")
    blocks = []
    run = threads.run
    monkeypatch.setattr(threads, "run", lambda tasks: (blocks.append(len(tasks)), run(tasks)))
    grads = {}
    for n in (1, 2):
        with threads.limit_threads(n):
            model.step(x, eps=eps)
        grads[n] = {name: on_host(g).copy() for name, g in model.grads.items()}
    assert blocks and set(blocks) == {2}  # only the 2-thread step cut arrays in blocks
    for name in grads[1]:
        np.testing.assert_allclose(grads[2][name], grads[1][name], rtol=1e-5, atol=1e-7, err_msg=name)
