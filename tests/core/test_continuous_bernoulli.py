"""The continuous Bernoulli: a true density on [0, 1], its mean, its gradient, and float32 across the range."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate

from minivae.checks import table as gradcheck_table
from minivae.checks.finite_differences import check_function
from minivae.core import backend, losses
from minivae.core import continuous_bernoulli as cb
from minivae.models.vae import mlp_vae

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy
# Hard logits (0, tiny, both sides of each Taylor switch, the tails) and random ones of every magnitude.
hard = st.sampled_from(cb.HARD_LOGITS + (-0.0, 0.5, -0.5, 0.01, -0.01, 1e-45, 88.0, -89.0, 1e6))
logits = st.one_of(hard, st.floats(-60, 60), st.floats(-1e-3, 1e-3))


def cb_density(x, a):
    """p(x|a) from minivae's nll, one pixel on the backend in use, as a float for the host's quadrature."""
    return np.exp(-float(cb.nll(on_device(np.array([[a]])), on_device(np.array([[x]])), grad=False)[0][0]))


def cb_mean(a):
    """cb.mean of one logit on the backend in use, as a float."""
    return float(cb.mean(on_device(np.array([a])))[0])


def density(x, a):
    """p(x|a) from the paper's formula in lam = sigmoid(a), in float64, for moderate a away from 0."""
    lam = 1 / (1 + np.exp(-a))
    c = 2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam)
    return c * lam ** x * (1 - lam) ** (1 - x)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.tuples(st.integers(1, 3), st.integers(1, 6)))
def test_gradient_matches_finite_differences_across_the_whole_range_of_logits(data, shape):
    a = data.draw(arrays(np.float64, shape, elements=logits))
    x = on_device(data.draw(arrays(np.float64, shape, elements=st.floats(0, 1))))
    assert check_function(lambda out: (cb.nll(out, x)[0], (cb.nll(out, x)[1],)), [on_device(a)])[0] < TOL


@pytest.mark.parametrize("draw", [gradcheck_table.shuffled(cb.HARD_LOGITS, (3, 5)),
                                  gradcheck_table.uniform((3, 5), -60, 60)])
def test_gradient_check_rows_pass_at_the_hard_logits_and_across_the_range(draw):
    run = gradcheck_table.loss_check("continuous_bernoulli", draw)
    assert run(np.random.default_rng(0), True)["out"] < TOL


@pytest.mark.parametrize("a", [-8.0, -1.0, -0.3, 0.2, 0.7, 3.0, 12.0])
def test_it_is_a_density_on_0_1(a):
    total, _ = integrate.quad(lambda x: cb_density(x, a), 0, 1)
    assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("a", [-8.0, -1.0, -0.3, 0.2, 0.7, 3.0, 12.0])
def test_nll_equals_the_papers_formula_in_lambda(a):
    x = np.array([[0.0, 0.3, 1.0]])
    expected = -np.log(density(x, a)).sum(axis=1)
    np.testing.assert_allclose(on_host(cb.nll(on_device(np.full((1, 3), a)), on_device(x), grad=False)[0]), expected,
                               rtol=1e-10)


@pytest.mark.parametrize("a", [-8.0, -1.0, -0.3, 0.0, 1e-9, 0.2, 0.7, 3.0, 12.0])
def test_mean_is_the_integral_of_x_times_the_density(a):
    expected, _ = integrate.quad(lambda x: x * cb_density(x, a), 0, 1)
    assert cb_mean(a) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("a", [-8.0, -1.0, -0.3, 0.7, 3.0, 12.0])
def test_mean_equals_the_papers_formula_in_lambda(a):
    lam = 1 / (1 + np.exp(-a))
    expected = lam / (2 * lam - 1) + 1 / (2 * np.arctanh(1 - 2 * lam))
    assert cb_mean(a) == pytest.approx(expected, rel=1e-10)


def test_at_lambda_one_half_c_is_2_the_mean_is_one_half_and_the_gradient_is_finite():
    a, x = on_device(np.zeros((1, 2))), on_device(np.array([[0.0, 1.0]]))
    assert on_host(cb.log_normalizer(a)) == pytest.approx(np.log(2))
    np.testing.assert_array_equal(on_host(cb.mean(a)), 0.5)
    nll, dlogits = map(on_host, cb.nll(a, x))
    np.testing.assert_allclose(nll, [2 * (np.log(2) - np.log(2))], atol=1e-15)  # the uniform density: log 1
    np.testing.assert_array_equal(dlogits, [[0.5, -0.5]])


@pytest.mark.parametrize("fn, switch", [(cb.log_normalizer, cb.LOG_C_TAYLOR_BELOW), (cb.mean, cb.MEAN_TAYLOR_BELOW)])
def test_taylor_series_and_closed_form_meet_at_the_switch(fn, switch):
    below, above = np.nextafter(switch, 0), np.float64(switch)
    for sign in (1, -1):
        assert abs(float(fn(on_device(np.array([sign * below])))[0]) -
                   float(fn(on_device(np.array([sign * above])))[0])) < 1e-12


def test_the_mean_is_flatter_than_sigmoid():
    # The decoder needs a logit of ~100 for a mean of 0.99, where the Bernoulli's mean sigmoid(4.6) is 0.99.
    assert cb_mean(100.0) == pytest.approx(0.99)
    assert cb_mean(4.6) < 0.8


def test_a_density_on_0_1_can_exceed_1_so_its_nll_can_be_negative():
    nll, _ = cb.nll(on_device(np.array([[10.0]])), on_device(np.array([[1.0]])), grad=False)
    assert float(nll[0]) < -2


def test_float32_is_finite_and_matches_float64_across_the_range():
    magnitudes = np.concatenate([[0.0], np.logspace(-40, 6, 300)])
    a32 = np.concatenate([-magnitudes[::-1], magnitudes]).astype(np.float32)[:, None]  # one pixel per row
    x32 = np.random.default_rng(0).uniform(0, 1, a32.shape).astype(np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # not even in the branch not used
        nll32, grad32 = map(on_host, cb.nll(on_device(a32), on_device(x32)))
        mean32 = on_host(cb.mean(on_device(a32)))
    # the same inputs, in float64
    nll64, grad64 = map(on_host, cb.nll(on_device(a32.astype(np.float64)), on_device(x32.astype(np.float64))))
    assert np.isfinite(nll32).all() and np.isfinite(grad32).all()
    # The nll sums softplus(a) - a x: float32 keeps it to a few float32 roundings of |a| (and of the result)
    roundings = 6e-8 * (1 + np.abs(a32[:, 0]) + np.abs(nll64))
    assert np.all(np.abs(nll32 - nll64) <= 4 * roundings)
    np.testing.assert_allclose(grad32, grad64, rtol=0, atol=3e-7)  # E[x] - x is in [-1, 1]
    np.testing.assert_allclose(mean32, on_host(cb.mean(on_device(a32.astype(np.float64)))), rtol=0, atol=3e-7)


def test_float32_in_float32_out():
    nll, dlogits = cb.nll(backend.xp.zeros((2, 3), np.float32), backend.xp.ones((2, 3), np.float32), scale=0.5)
    assert nll.dtype == np.float32 and dlogits.dtype == np.float32 and cb.mean(dlogits).dtype == np.float32


def test_cb_is_a_reconstruction_loss_on_logits_and_decodes_to_its_mean():
    assert losses.RECONSTRUCTIONS["cb"] is cb.nll
    model = mlp_vae(input_dim=9, hidden=(7,), latent=3, recon="cb", rng=np.random.default_rng(0), dtype="float64")
    z = on_device(np.random.default_rng(1).standard_normal((4, 3)))
    logits = model.decoder_output(z)
    np.testing.assert_array_equal(on_host(model.decode(z)), on_host(cb.mean(logits)))
    assert not np.allclose(on_host(model.decode(z)), 1 / (1 + np.exp(-on_host(logits))))


@pytest.mark.parametrize("recon, binarize, is_density", [
    ("bce", "none", False), ("bce-prob", "none", False), ("bce", "dynamic", True), ("bce", "threshold", True),
    ("cb", "none", True), ("mse", "none", True)])
def test_which_likelihoods_are_true_densities_of_the_data(recon, binarize, is_density):
    assert losses.likelihood_meaning(recon, binarize)[0] is is_density
