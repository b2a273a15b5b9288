"""The fast convolutions keep their work arrays (the columns, the padded copies with their zero border) from call
to call (core/conv_fast.py). A layer called on one input size, then another, then the first again -- and on inputs
of two dtypes -- must compute what a layer that was never used computes, and what the loops of conv_reference.py
compute: a stale border from the other size, or a work array of the other dtype, would show.

forward is compared with the loop reference directly. backward is compared with a never-used layer, and with the
reference through the adjoint identities of a linear map: conv(x) - b is linear in x and in W, so for any v and V

    <dx, v> = <dout, conv(v; W, b=0)>      <dW, V> = <dout, conv(x; V, b=0)>      db = dout summed over b, y, x
"""

import numpy as np
import pytest

from minivae.core import backend
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D
from minivae.core.conv_reference import conv2d_reference, conv_transpose2d_reference

on_device, on_host = backend.to_device, backend.to_numpy

# (name, layer options, first size, second size): the second pads to a work array of its own (or, for the first
# case, to one of the same shape with the odd pixel elsewhere: 5x5 pads (1, 1), 6x6 pads (0, 1), both to 7x7)
CONV2D_CASES = [
    ("3x3 stride 2 same, 5x5 then 6x6 (the same padded shape)", dict(kernel_size=3, stride=2, padding="same"),
     (5, 5), (6, 6)),
    ("3x3 stride 1 same, 3 -> 2 (by shifts, dx by convolution)", dict(kernel_size=3, stride=1, padding="same"),
     (4, 5), (6, 3)),
    ("2x3 stride (1, 2) padding (1, 0)", dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)), (4, 6), (5, 5)),
    ("1x1 stride 2 (kernel smaller than stride)", dict(kernel_size=1, stride=2), (5, 4), (3, 6)),
]
CONV_TRANSPOSE2D_CASES = [
    ("3x3 stride 2 same", dict(kernel_size=3, stride=2, padding="same"), (3, 3), (4, 2)),
    ("3x3 stride 2 padding 1 output_padding 1", dict(kernel_size=3, stride=2, padding=1, output_padding=1),
     (3, 4), (2, 2)),
    ("4x4 stride 2 padding 1", dict(kernel_size=4, stride=2, padding=1), (3, 2), (2, 3)),
    ("1x1 stride 2 (kernel smaller than stride)", dict(kernel_size=1, stride=2), (3, 3), (2, 4)),
]
C_IN, C_OUT, BATCH = 3, 2, 2


def make(layer_class, options, seed=0):
    return layer_class(C_IN, C_OUT, rng=np.random.default_rng(seed), dtype="float64", **options)


def reference(layer_class, options):
    """reference(x, W, b): the loop reference of this layer with these options."""
    extra = {key: options[key] for key in ("stride", "padding", "output_padding") if key in options}
    loops = conv2d_reference if layer_class is FastConv2D else conv_transpose2d_reference
    return lambda x, W, b: on_host(loops(on_device(x), on_device(W), on_device(b), **extra))


def check_call(layer, layer_class, options, x, seed):
    """One forward and backward of a used layer on x (dout of x's dtype), against a never-used layer (the same
    numbers, bit for bit) and the loop reference (float64; float32 inputs to float64 weights are held to float32's
    rounding, since some ways round compute in the input's dtype)."""
    fresh = make(layer_class, options)
    fresh.params["b"][...] = layer.params["b"]
    loops = reference(layer_class, options)
    W, b = on_host(layer.params["W"]), on_host(layer.params["b"])
    x_host = on_host(x).astype(np.float64)
    tolerance = dict(rtol=1e-10, atol=1e-12) if x.dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    out_on_device = layer.forward(x)
    out = on_host(out_on_device)
    np.testing.assert_array_equal(out, on_host(fresh.forward(x)))
    np.testing.assert_allclose(out, loops(x_host, W, b), **tolerance)
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(out.shape).astype(x.dtype)
    dx_on_device = layer.backward(on_device(dout, dtype=x.dtype))
    dx = on_host(dx_on_device)
    np.testing.assert_array_equal(dx, on_host(fresh.backward(on_device(dout, dtype=x.dtype))))
    for name in ("W", "b"):
        np.testing.assert_array_equal(on_host(layer.grads[name]), on_host(fresh.grads[name]), err_msg=name)
    v, V = rng.standard_normal(x_host.shape), rng.standard_normal(W.shape)
    zero, dout = np.zeros_like(b), dout.astype(np.float64)
    for grad, direction, expected in ((dx, v, dout * loops(v, W, zero)),
                                      (on_host(layer.grads["W"]), V, dout * loops(x_host, V, zero))):
        # two sums of many terms of either sign: their rounding is relative to the terms, not to the sum
        assert np.sum(grad * direction) == pytest.approx(np.sum(expected), rel=tolerance["rtol"],
                                                         abs=tolerance["rtol"] * np.sum(np.abs(expected)))
    np.testing.assert_allclose(on_host(layer.grads["b"]), dout.sum(axis=(0, 2, 3)), **tolerance)
    return out_on_device, dx_on_device  # the arrays the layer handed out, as they are


def calls(first, second):
    """The sizes and dtypes a layer is called with, in order: the first size in float32, then in float64 (its work
    arrays remade in float64), another size, the first again, twice (its work arrays reused), and float32 and
    float64 once more."""
    return [(first, np.float32), (first, np.float64), (second, np.float64), (first, np.float64), (first, np.float64),
            (first, np.float32), (first, np.float64)]


@pytest.mark.parametrize("layer_class, case", [(FastConv2D, case) for case in CONV2D_CASES]
                         + [(FastConvTranspose2D, case) for case in CONV_TRANSPOSE2D_CASES],
                         ids=[f"Conv2D {c[0]}" for c in CONV2D_CASES]
                         + [f"ConvTranspose2D {c[0]}" for c in CONV_TRANSPOSE2D_CASES])
def test_a_layer_called_on_one_size_another_and_the_first_again_computes_what_a_new_one_does(layer_class, case):
    _, options, first, second = case
    layer = make(layer_class, options)
    layer.params["b"][...] = on_device(np.random.default_rng(1).uniform(-1, 1, C_OUT))
    rng = np.random.default_rng(2)
    returned = []
    for i, (size, dtype) in enumerate(calls(first, second)):
        x = on_device(rng.standard_normal((BATCH, C_IN, *size)).astype(dtype), dtype=dtype)
        returned += [(array, on_host(array).copy())
                     for array in check_call(layer, layer_class, options, x, seed=10 + i)]
    for array, then in returned:  # what a call returned is the caller's: no later call writes into it
        np.testing.assert_array_equal(on_host(array), then)
