"""Tests of minivae.conv: forward against the definitions as plain loops (conv2d_reference and
conv_transpose2d_reference), backward against finite differences, the adjoint relation between Conv2D and
ConvTranspose2D, and the shapes the 003 tutorial's convolutional VAE relies on.

Everything runs on the backend in use (`pytest --backend fake-cupy` runs it all on the CuPy stand-in): inputs go
to the device with `on_device`, results come back with `on_host` to be compared. The references compute on that
backend too (their loops index device arrays one element at a time: slow, but only on these tiny shapes)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minivae.checks.finite_differences import TOLERANCE, check_layer
from minivae.core import backend
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.conv_reference import conv2d_reference, conv_transpose2d_reference

on_device, on_host = backend.to_device, backend.to_numpy

# ---- hypothesis strategies ------------------------------------------------------------------------------------


@st.composite
def conv_cases(draw, max_size=6, max_channels=3):
    """Conv2D arguments and an input shape whose output is at least 1x1."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, max_channels)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    if padding != "same":
        assume(shape[2] + 2 * padding[0] >= kernel[0] and shape[3] + 2 * padding[1] >= kernel[1])
    out_channels = draw(st.integers(1, max_channels))
    return dict(kernel_size=kernel, stride=stride, padding=padding, out_channels=out_channels), shape


@st.composite
def conv_transpose_cases(draw, max_size=4, max_channels=3):
    """ConvTranspose2D arguments and an input shape whose output is at least 1x1."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    output_padding = (0, 0)
    if padding != "same":
        output_padding = (draw(st.integers(0, stride[0] - 1)), draw(st.integers(0, stride[1] - 1)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, max_channels)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    if padding != "same":
        for axis in (0, 1):
            out = (shape[2 + axis] - 1) * stride[axis] - 2 * padding[axis] + kernel[axis] + output_padding[axis]
            assume(out >= 1)
    out_channels = draw(st.integers(1, max_channels))
    args = dict(kernel_size=kernel, stride=stride, padding=padding, output_padding=output_padding,
                out_channels=out_channels)
    return args, shape


def build(layer_class, args, in_channels, seed, dtype="float64", bias=True):
    """A layer with random weights (and a random bias unless bias=False), in float64 by default."""
    args = dict(args)
    layer = layer_class(in_channels, args.pop("out_channels"), **args, rng=np.random.default_rng(seed), dtype=dtype)
    if bias:
        layer.params["b"][...] = on_device(np.random.default_rng(seed + 1).standard_normal(layer.params["b"].shape))
    return layer


def random_input(shape, seed, dtype="float64"):
    """A standard normal array on the backend in use (the same numbers on every backend)."""
    return on_device(np.random.default_rng(seed + 2).standard_normal(shape).astype(dtype))


seeds = st.integers(0, 2**16)


# ---- forward ----------------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(conv_cases(), seeds)
def test_conv2d_forward_matches_direct_loops(case, seed):
    args, shape = case
    layer = build(Conv2D, args, shape[1], seed)
    x = random_input(shape, seed)
    expected = conv2d_reference(x, layer.params["W"], layer.params["b"], args["stride"], args["padding"])
    np.testing.assert_allclose(on_host(layer.forward(x)), on_host(expected), rtol=1e-10, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(conv_transpose_cases(), seeds)
def test_conv_transpose2d_forward_matches_direct_loops(case, seed):
    args, shape = case
    layer = build(ConvTranspose2D, args, shape[1], seed)
    x = random_input(shape, seed)
    expected = conv_transpose2d_reference(
        x, layer.params["W"], layer.params["b"], args["stride"], args["padding"], args["output_padding"]
    )
    np.testing.assert_allclose(on_host(layer.forward(x)), on_host(expected), rtol=1e-10, atol=1e-12)


def test_same_padding_puts_the_odd_pixel_on_the_bottom_right():
    # 2x2 input, 2x2 kernel of ones, stride 1: one pixel of padding in total per axis, all of it after.
    layer = Conv2D(1, 1, 2, padding="same", dtype="float64")
    layer.params["W"][...] = 1.0
    x = on_device(np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2))
    np.testing.assert_array_equal(on_host(layer.forward(x))[0, 0], [[10.0, 6.0], [7.0, 4.0]])


def test_the_references_compute_a_small_case_by_hand():
    image = np.array([[1.0, 2.0], [3.0, 4.0]])
    x, ones, bias = on_device(image.reshape(1, 1, 2, 2)), on_device(np.ones((1, 1, 2, 2))), on_device([0.5])
    # each output pixel sums the window below and right of it (the padding goes after), plus the bias
    summed = on_host(conv2d_reference(x, ones, bias, 1, "same"))[0, 0]
    np.testing.assert_array_equal(summed, [[10.5, 6.5], [7.5, 4.5]])
    # stride 2, no padding: each input pixel stamps the kernel times itself onto its own 2x2 block
    stamped = on_host(conv_transpose2d_reference(x, ones, bias, 2, 0))[0, 0]
    np.testing.assert_array_equal(stamped, np.kron(image, np.ones((2, 2))) + 0.5)


def test_valid_padding_means_no_padding():
    x = random_input((1, 2, 5, 5), 0)
    valid = build(Conv2D, dict(out_channels=2, kernel_size=3, padding="valid"), 2, seed=0)
    unpadded = build(Conv2D, dict(out_channels=2, kernel_size=3, padding=0), 2, seed=0)
    np.testing.assert_array_equal(on_host(valid.forward(x)), on_host(unpadded.forward(x)))


def test_tutorial_003_encoder_stack_gives_64_channels_at_14x14():
    x = backend.xp.zeros((3, 1, 28, 28), dtype="float32")
    for layer in (Conv2D(1, 32, 3, padding="same"), Conv2D(32, 64, 3, stride=2, padding="same"),
                  Conv2D(64, 64, 3, padding="same"), Conv2D(64, 64, 3, padding="same")):
        x = layer.forward(x)
    assert x.shape == (3, 64, 14, 14)


def test_tutorial_003_decoder_upsamples_14x14_to_28x28():
    layer = ConvTranspose2D(64, 32, 3, stride=2, padding="same")
    assert layer.forward(backend.xp.zeros((3, 64, 14, 14), dtype="float32")).shape == (3, 32, 28, 28)


def test_weights_use_the_pytorch_layouts():
    assert Conv2D(3, 5, (2, 4)).params["W"].shape == (5, 3, 2, 4)
    assert ConvTranspose2D(3, 5, (2, 4)).params["W"].shape == (3, 5, 2, 4)
    assert Conv2D(3, 5, 2).params["b"].shape == ConvTranspose2D(3, 5, 2).params["b"].shape == (5,)


@pytest.mark.parametrize("layer_class", [Conv2D, ConvTranspose2D])
def test_float32_in_gives_float32_out_and_gradients(layer_class):
    layer = layer_class(2, 3, 3, stride=2, padding="same")  # dtype float32 is the default
    x = backend.xp.ones((2, 2, 5, 5), dtype="float32")
    out = layer.forward(x)
    dx = layer.backward(backend.xp.ones_like(out))
    assert out.dtype == dx.dtype == layer.grads["W"].dtype == layer.grads["b"].dtype == np.float32


def test_output_padding_must_be_smaller_than_stride():
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2D(1, 1, 3, stride=2, output_padding=2)


def test_conv2d_rejects_an_input_smaller_than_the_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Conv2D(1, 1, 3).forward(backend.xp.zeros((1, 1, 2, 2)))


# ---- backward ---------------------------------------------------------------------------------------------------


def assert_gradients_match(layer, x):
    errors = check_layer(layer, x)
    assert max(errors.values()) < TOLERANCE, errors


@settings(max_examples=100, deadline=None)
@given(conv_cases(max_size=5, max_channels=2), seeds)
def test_conv2d_gradients_match_finite_differences(case, seed):
    args, shape = case
    assert_gradients_match(build(Conv2D, args, shape[1], seed), random_input(shape, seed))


@settings(max_examples=100, deadline=None)
@given(conv_transpose_cases(max_size=3, max_channels=2), seeds)
def test_conv_transpose2d_gradients_match_finite_differences(case, seed):
    args, shape = case
    assert_gradients_match(build(ConvTranspose2D, args, shape[1], seed), random_input(shape, seed))


small_shapes = st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple)


@settings(max_examples=25, deadline=None)
@given(small_shapes, seeds)
def test_flatten_gradient_matches_finite_differences(shape, seed):
    assert_gradients_match(Flatten(), random_input(shape, seed))


@settings(max_examples=25, deadline=None)
@given(small_shapes, seeds)
def test_reshape_gradient_matches_finite_differences(shape, seed):
    layer = Reshape((1, int(np.prod(shape[1:]))))  # (B, ...) -> (B, 1, prod(...))
    assert_gradients_match(layer, random_input(shape, seed))


def test_flatten_and_reshape_are_inverses():
    x = random_input((2, 3, 4, 5), 0)
    flat = Flatten().forward(x)
    assert flat.shape == (2, 60)
    np.testing.assert_array_equal(on_host(Reshape((3, 4, 5)).forward(flat)), on_host(x))


@settings(max_examples=100, deadline=None)
@given(conv_transpose_cases(), seeds)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case, seed):
    # With shared W and no bias, <conv(x), y> = <x, convT(y)> for every x and y: the two are transposes.
    args, shape = case
    conv_transpose = build(ConvTranspose2D, args, shape[1], seed, bias=False)
    y = random_input(shape, seed)
    convT_y = conv_transpose.forward(y)
    conv = Conv2D(args["out_channels"], shape[1], args["kernel_size"], args["stride"], args["padding"], dtype="float64")
    conv.params["W"][...] = conv_transpose.params["W"]
    x = random_input(convT_y.shape, seed + 1)
    conv_x = conv.forward(x)
    assert conv_x.shape == y.shape
    np.testing.assert_allclose(float((conv_x * y).sum()), float((x * convT_y).sum()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layer_class", [Conv2D, ConvTranspose2D])
def test_backward_twice_gives_identical_grads(layer_class):
    layer = layer_class(2, 3, 3, stride=2, padding="same", dtype="float64", rng=np.random.default_rng(0))
    out = layer.forward(random_input((2, 2, 5, 5), 0))
    dout = random_input(out.shape, 1)
    dx_first = on_host(layer.backward(dout)).copy()  # copies: backward may reuse its arrays
    grads_first = {name: on_host(grad).copy() for name, grad in layer.grads.items()}
    dx_second = layer.backward(dout)
    np.testing.assert_array_equal(dx_first, on_host(dx_second))
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(on_host(grad), grads_first[name])


@pytest.mark.parametrize("layer_class", [Conv2D, ConvTranspose2D])
def test_backward_without_dx_returns_none_and_the_same_grads(layer_class):
    layer = layer_class(2, 3, 3, stride=2, padding=1, dtype="float64", rng=np.random.default_rng(0))
    out = layer.forward(random_input((2, 2, 5, 5), 0))
    dout = random_input(out.shape, 1)
    layer.backward(dout)
    grads_with_dx = {name: on_host(grad).copy() for name, grad in layer.grads.items()}
    assert layer.backward(dout, need_dx=False) is None
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(on_host(grad), grads_with_dx[name])


class SignFlippedConv2D(Conv2D):
    """dx with the wrong sign."""

    def backward(self, dout, need_dx=True):
        return -super().backward(dout, need_dx)


class FlippedKernelConvTranspose2D(ConvTranspose2D):
    """dx computed with the kernel rotated by 180 degrees: a classic transposed-convolution mistake."""

    def backward(self, dout, need_dx=True):
        W = self.params["W"]
        rotated = W[:, :, ::-1, ::-1].copy()
        self.params["W"] = rotated
        try:
            return super().backward(dout, need_dx)
        finally:
            self.params["W"] = W


@pytest.mark.parametrize("broken_class", [SignFlippedConv2D, FlippedKernelConvTranspose2D])
def test_gradcheck_catches_a_broken_backward(broken_class):
    broken = broken_class(2, 2, 3, stride=2, padding=1, dtype="float64", rng=np.random.default_rng(0))
    errors = check_layer(broken, random_input((1, 2, 4, 4), 0))
    assert max(errors.values()) > 1e-3, errors


# ---- GPU ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_class", [Conv2D, ConvTranspose2D])
def test_gradients_match_finite_differences_on_gpu(gpu, layer_class):
    # `gpu` (conftest.py) switches to CuPy or skips with the reason; the autouse fixture switches back to NumPy.
    layer = layer_class(2, 2, 3, stride=2, padding="same", dtype="float64")
    x = gpu.asarray(random_input((2, 2, 3, 3), 0))
    assert_gradients_match(layer, x)
