"""Each layer's backward equals finite differences, for any shapes and values hypothesis draws."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minivae.checks.finite_differences import check_layer
from minivae.core import backend, layers

TOL = 1e-6
small = st.integers(1, 6)
values = st.floats(-5, 5, allow_nan=False, width=64)


def inputs(batch, dim, elements=values):
    """(batch, dim) float64 arrays on the backend in use."""
    return arrays(np.float64, (batch, dim), elements=elements).map(backend.to_device)


@settings(max_examples=30, deadline=None)
@given(st.data(), small, small, small)
def test_dense_gradients_match_finite_differences(data, batch, n_in, n_out):
    x = data.draw(inputs(batch, n_in))
    errors = check_layer(layers.Dense(n_in, n_out, dtype="float64"), x)
    assert max(errors.values()) < TOL, errors


@settings(max_examples=30, deadline=None)
@given(st.data(), small, small)
def test_relu_gradient_matches_finite_differences_away_from_the_kink(data, batch, dim):
    away = st.one_of(st.floats(0.01, 5), st.floats(-5, -0.01))  # ReLU has no derivative at exactly 0
    errors = check_layer(layers.ReLU(), data.draw(inputs(batch, dim, away)))
    assert errors["x"] < TOL


@settings(max_examples=30, deadline=None)
@given(st.data(), small, small)
def test_sigmoid_gradient_matches_finite_differences(data, batch, dim):
    # Beyond |x| ~ 10 the slope (< 5e-5) is below what finite differences resolve; see the extreme-input test.
    x = data.draw(inputs(batch, dim, st.floats(-10, 10)))
    assert check_layer(layers.Sigmoid(), x)["x"] < TOL


@settings(max_examples=30, deadline=None)
@given(st.data(), small, small)
def test_tanh_gradient_matches_finite_differences(data, batch, dim):
    assert check_layer(layers.Tanh(), data.draw(inputs(batch, dim)))["x"] < TOL


@settings(max_examples=15, deadline=None)
@given(st.data(), small, st.lists(small, min_size=1, max_size=3), st.sampled_from(["relu", "tanh", "sigmoid"]))
def test_sequential_gradients_match_finite_differences(data, batch, sizes, activation):
    net = layers.mlp([3, *sizes, 2], activation, dtype="float64")
    for name, param in net.params.items():  # zero biases would sit dead ReLUs exactly on their kink
        if name.endswith(".b"):
            param += 0.1
    x = data.draw(inputs(batch, 3, st.floats(-2, 2).map(lambda v: v if abs(v) > 0.01 else 0.5)))
    h = x
    for layer in net.layers[:-1]:  # finite differences are wrong across a ReLU's kink: keep every input off it
        h = layer.forward(h)
        assume(not isinstance(layer, layers.Dense) or float(backend.xp.abs(h).min()) > 1e-3)
    errors = check_layer(net, x)
    assert max(errors.values()) < TOL, errors


@pytest.mark.numpy_only  # NumPy's overflow warnings
def test_sigmoid_is_finite_and_exact_at_extreme_inputs():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):  # no overflow warning either
        out = layers.sigmoid(x)
    np.testing.assert_allclose(out, [0, 1 / (1 + np.exp(50.0)), 0.5, 1, 1], rtol=1e-6, atol=0)


def test_sigmoid_backward_is_the_closed_form_slope_at_extreme_inputs():
    sigmoid = layers.Sigmoid()
    x = backend.to_device(np.array([-30.0, 30.0]))
    sigmoid.forward(x)
    # s (1 - s) loses digits as s -> 1 (1 - s keeps ~3 of them at x = 30), but stays finite and right in size
    slope = backend.to_numpy(sigmoid.backward(backend.xp.ones(2)))
    np.testing.assert_allclose(slope, np.exp(-30) / (1 + np.exp(-30)) ** 2, rtol=1e-2)


def test_backward_twice_on_the_same_forward_gives_the_same_gradients(rng):
    net = layers.mlp([5, 4, 3], "relu", dtype="float64")
    out = net.forward(backend.to_device(rng.standard_normal((6, 5))))
    dout = backend.to_device(rng.standard_normal(out.shape))
    dx1 = backend.to_numpy(net.backward(dout))
    first = {k: backend.to_numpy(g).copy() for k, g in net.grads.items()}
    dx2 = backend.to_numpy(net.backward(dout))
    np.testing.assert_array_equal(dx1, dx2)
    for k in first:
        np.testing.assert_array_equal(first[k], backend.to_numpy(net.grads[k]))


def test_the_base_layer_has_no_parameters_and_no_passes_of_its_own():
    base = layers.Layer()
    assert base.params == {} and base.grads == {}
    with pytest.raises(NotImplementedError):
        base.forward(np.ones(2))
    with pytest.raises(NotImplementedError):
        base.backward(np.ones(2))


def test_sequential_names_parameters_by_layer_index():
    net = layers.mlp([5, 4, 3], "relu")
    assert list(net.params) == ["0.W", "0.b", "2.W", "2.b"]
    assert net.params["0.W"] is net.layers[0].params["W"]
    assert net.grads["2.b"] is net.layers[2].grads["b"]


def test_first_layer_can_skip_its_input_gradient(rng):
    dense = layers.Dense(5, 3, dtype="float64")
    dense.forward(backend.to_device(rng.standard_normal((4, 5))))
    assert dense.backward(backend.xp.ones((4, 3)), need_dx=False) is None
    np.testing.assert_allclose(backend.to_numpy(dense.grads["b"]), [4, 4, 4])


def test_no_input_gradient_is_computed_before_the_first_layer_with_parameters(rng):
    class Counting(layers.Dense):
        calls_with_dx = 0

        def backward(self, dout, need_dx=True):
            Counting.calls_with_dx += need_dx
            return super().backward(dout, need_dx)

    net = layers.Sequential(layers.Tanh(), Counting(5, 4, dtype="float64"), layers.ReLU(),
                            Counting(4, 3, dtype="float64"))
    out = net.forward(backend.to_device(rng.standard_normal((2, 5))))
    assert net.backward(backend.xp.ones_like(out), need_dx=False) is None
    assert Counting.calls_with_dx == 1  # only the second Dense: something before it still learns
    assert net.backward(backend.xp.ones_like(out)).shape == (2, 5)


@pytest.mark.parametrize(("init", "expected_std"), [("he", np.sqrt(2 / 500)), ("lecun", np.sqrt(1 / 500)),
                                                    ("uniform", np.sqrt(1 / (3 * 500))), (0.1, 0.1)])
def test_dense_initialisation_has_the_documented_scale(init, expected_std):
    dense = layers.Dense(500, 400, init=init)
    assert dense.params["W"].dtype == np.float32
    assert abs(dense.params["W"].std() / expected_std - 1) < 0.02
    assert not dense.params["b"].any()


def test_uniform_initialisation_stays_inside_its_bound():
    weights = backend.to_numpy(layers.Dense(400, 300, init="uniform").params["W"])
    assert np.abs(weights).max() <= 1 / np.sqrt(400)
    assert np.abs(weights).max() > 0.99 / np.sqrt(400)


def test_a_deliberately_broken_backward_is_caught_by_the_checker(rng):
    class BrokenDense(layers.Dense):
        def backward(self, dout, need_dx=True):
            dx = super().backward(dout, need_dx)
            self.grads["W"] *= 1.01  # a 1% error in dW
            return dx

    errors = check_layer(BrokenDense(4, 3, dtype="float64"), backend.to_device(rng.standard_normal((5, 4))))
    assert errors["W"] > 1e-3
    assert errors["x"] < TOL


def test_a_relu_with_the_wrong_mask_is_caught_by_the_checker(rng):
    class LeakyByMistake(layers.ReLU):
        def backward(self, dout, need_dx=True):
            return dout  # forgot the mask

    x = backend.to_device(rng.standard_normal((4, 5)) + 0.1)
    assert check_layer(LeakyByMistake(), x)["x"] > 0.5


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        layers.mlp([3, 2, 1], "swish")


def test_layer_gradients_match_on_cupy(gpu):
    x = gpu.asarray(np.random.default_rng(0).standard_normal((4, 5)))
    errors = check_layer(layers.mlp([5, 4, 3], "tanh", dtype="float64"), x)
    assert max(errors.values()) < TOL
    assert backend.name == "cupy"
