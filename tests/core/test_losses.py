"""Reconstruction losses: gradients, stability, and agreement with the textbook formulas."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minivae.checks.finite_differences import check_function
from minivae.core import backend, losses

TOL = 1e-6
shapes = st.tuples(st.integers(1, 4), st.integers(1, 6))
on_device, on_host = backend.to_device, backend.to_numpy


def device_arrays(shape, elements):
    """float64 arrays of `shape` on the backend in use."""
    return arrays(np.float64, shape, elements=elements).map(on_device)


def grad_fn(loss, x):
    return lambda out: (loss(out, x)[0], (loss(out, x)[1],))


def naive_bce(logits, x):
    p = 1 / (1 + np.exp(-logits))
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)


@settings(max_examples=50, deadline=None)
@given(st.data(), shapes)
def test_bce_logits_gradient_matches_finite_differences_for_logits_up_to_40(data, shape):
    logits = data.draw(device_arrays(shape, st.floats(-40, 40)))
    x = data.draw(device_arrays(shape, st.floats(0, 1)))
    assert check_function(grad_fn(losses.bce_logits, x), [logits])[0] < TOL


@settings(max_examples=50, deadline=None)
@given(st.data(), shapes)
def test_bce_probs_gradient_matches_finite_differences_inside_the_clip(data, shape):
    probs = data.draw(device_arrays(shape, st.floats(0.01, 0.99)))
    x = data.draw(device_arrays(shape, st.floats(0, 1)))
    assert check_function(grad_fn(losses.bce_probs, x), [probs])[0] < TOL


@settings(max_examples=50, deadline=None)
@given(st.data(), shapes)
def test_squared_error_gradient_matches_finite_differences(data, shape):
    out, x = (data.draw(device_arrays(shape, st.floats(-2, 2))) for _ in range(2))
    assert check_function(grad_fn(losses.squared_error, x), [out])[0] < TOL


@settings(max_examples=50, deadline=None)
@given(st.data(), shapes)
def test_stable_bce_equals_the_naive_formula_where_both_are_finite(data, shape):
    logits = data.draw(device_arrays(shape, st.floats(-15, 15)))
    x = data.draw(device_arrays(shape, st.floats(0, 1)))
    np.testing.assert_allclose(on_host(losses.bce_logits(logits, x)[0]), naive_bce(on_host(logits), on_host(x)),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.numpy_only  # NumPy's overflow warnings
def test_stable_bce_stays_finite_where_the_naive_formula_overflows():
    logits = np.array([[-1000.0, -100.0, 100.0, 1000.0]], dtype=np.float32)
    x = np.array([[1.0, 1.0, 0.0, 0.0]], dtype=np.float32)  # the worst case: confidently wrong
    with np.errstate(all="ignore"):
        assert not np.isfinite(naive_bce(logits, x)).all()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        nll, dlogits = losses.bce_logits(logits, x)
    np.testing.assert_allclose(nll, [2200.0], rtol=1e-6)  # softplus(|a|) ~ |a| for each pixel
    np.testing.assert_array_equal(dlogits, [[-1, -1, 1, 1]])


def test_bce_logits_gradient_is_sigmoid_minus_x_times_scale():
    logits, x = np.array([[0.0, 2.0]]), np.array([[1.0, 0.0]])
    _, dlogits = losses.bce_logits(on_device(logits), on_device(x), scale=0.5)
    np.testing.assert_allclose(on_host(dlogits), 0.5 * (1 / (1 + np.exp(-logits)) - x))


def test_bce_probs_gradient_is_zero_where_probabilities_were_clipped():
    probs, x = np.array([[0.0, 1.0, 0.5]]), np.array([[1.0, 0.0, 1.0]])
    nll, dprobs = (on_host(a) for a in losses.bce_probs(on_device(probs), on_device(x)))
    assert np.isfinite(nll).all()
    np.testing.assert_allclose(nll, [-2 * np.log(1e-7) - np.log(0.5)], rtol=1e-6)
    np.testing.assert_array_equal(dprobs[0, :2], 0)


def test_losses_are_summed_over_pixels_per_example():
    nll, _ = losses.squared_error(backend.xp.ones((3, 5)), backend.xp.zeros((3, 5)))
    np.testing.assert_array_equal(on_host(nll), [5, 5, 5])


def test_gaussian_constant_makes_squared_error_a_log_density():
    out, x = np.array([[0.2, 0.7]]), np.array([[0.0, 1.0]])
    nll = on_host(losses.squared_error(on_device(out), on_device(x), grad=False)[0]) + losses.gaussian_nll_constant(2)
    variance = 0.5
    expected = -np.sum(-0.5 * np.log(2 * np.pi * variance) - (x - out) ** 2 / (2 * variance))
    assert nll[0] == pytest.approx(expected)


def test_float32_inputs_give_float32_outputs():
    xp = backend.xp
    nll, dlogits = losses.bce_logits(xp.zeros((2, 3), np.float32), xp.ones((2, 3), np.float32), scale=0.5)
    assert nll.dtype == np.float32 and dlogits.dtype == np.float32
