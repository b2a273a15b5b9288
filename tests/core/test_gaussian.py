"""The reparameterized sampler and the KL: gradients, distribution, and the closed forms."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minivae.checks.finite_differences import check_function
from minivae.core import backend, gaussian

TOL = 1e-6
shapes = st.tuples(st.integers(1, 5), st.integers(1, 4))
on_device, on_host = backend.to_device, backend.to_numpy


def device_arrays(shape, elements):
    """float64 arrays of `shape` on the backend in use."""
    return arrays(np.float64, shape, elements=elements).map(on_device)


def sampler_fn(posterior, eps, projection):
    def fn(mu, second):
        return posterior.sample(mu, second, eps=eps) * projection, posterior.backward(projection)

    return fn


def kl_fn(posterior):
    def fn(mu, second):
        value, dmu, dsecond = posterior.kl(mu, second)
        return value, (dmu, dsecond)

    return fn


@settings(max_examples=40, deadline=None)
@given(st.data(), shapes)
def test_logvar_sampler_gradients_match_finite_differences_for_logvar_in_minus_10_to_10(data, shape):
    mu = data.draw(device_arrays(shape, st.floats(-3, 3)))
    logvar = data.draw(device_arrays(shape, st.floats(-10, 10)))
    eps, projection = (data.draw(device_arrays(shape, st.floats(-3, 3))) for _ in range(2))
    errors = check_function(sampler_fn(gaussian.LogvarGaussian(), eps, projection), [mu, logvar])
    assert max(errors) < TOL, errors


@settings(max_examples=40, deadline=None)
@given(st.data(), shapes)
def test_sigma_sampler_gradients_match_finite_differences(data, shape):
    mu, sigma, eps, projection = (data.draw(device_arrays(shape, st.floats(-3, 3))) for _ in range(4))
    errors = check_function(sampler_fn(gaussian.SigmaGaussian(), eps, projection), [mu, sigma])
    assert max(errors) < TOL, errors


@settings(max_examples=40, deadline=None)
@given(st.data(), shapes)
def test_logvar_kl_gradients_match_finite_differences(data, shape):
    mu = data.draw(device_arrays(shape, st.floats(-5, 5)))
    logvar = data.draw(device_arrays(shape, st.floats(-10, 10)))
    assert max(check_function(kl_fn(gaussian.LogvarGaussian()), [mu, logvar])) < TOL


@settings(max_examples=40, deadline=None)
@given(st.data(), shapes)
def test_sigma_kl_gradients_match_finite_differences(data, shape):
    mu = data.draw(device_arrays(shape, st.floats(-5, 5)))
    magnitude = st.floats(0.05, 5)  # sigma near 0 sends log(sigma^2) to -inf: the KL blows up there by design
    sigma = data.draw(device_arrays(shape, st.one_of(magnitude, magnitude.map(lambda v: -v))))
    assert max(check_function(kl_fn(gaussian.SigmaGaussian()), [mu, sigma])) < TOL


def test_sampler_empirical_variance_equals_exp_logvar():
    rng = np.random.default_rng(0)
    logvar = np.array([[-4.0, -1.0, 0.0, 1.5]])
    mu = np.array([[2.0, -1.0, 0.0, 0.5]])
    n = 200_000
    z = gaussian.LogvarGaussian().sample(on_device(np.repeat(mu, n, 0)), on_device(np.repeat(logvar, n, 0)), rng=rng)
    z = on_host(z)
    np.testing.assert_allclose(z.var(axis=0), np.exp(logvar[0]), rtol=0.02)
    np.testing.assert_allclose(z.mean(axis=0), mu[0], atol=0.02)


def test_sampling_with_exp_logvar_would_give_the_wrong_variance():
    """The tutorial-003 bug: std = exp(logvar) has variance exp(2 logvar), not the exp(logvar) the KL assumes."""
    rng = np.random.default_rng(0)
    logvar = np.full((100_000, 1), 1.0)
    eps = rng.standard_normal(logvar.shape)
    buggy = np.exp(logvar) * eps
    correct = on_host(gaussian.LogvarGaussian().sample(*map(on_device, (np.zeros_like(logvar), logvar, eps))))
    assert abs(correct.var() / np.exp(1.0) - 1) < 0.02
    assert abs(buggy.var() / np.exp(2.0) - 1) < 0.02


def test_kl_is_zero_exactly_at_the_prior():
    mu, logvar = backend.xp.zeros((3, 4)), backend.xp.zeros((3, 4))
    kl, dmu, dlogvar = map(on_host, gaussian.LogvarGaussian.kl(mu, logvar))
    np.testing.assert_array_equal(kl, 0)
    np.testing.assert_array_equal(dlogvar, 0)
    kl_sigma, _, dsigma = map(on_host, gaussian.SigmaGaussian.kl(mu, backend.xp.ones((3, 4))))
    np.testing.assert_allclose(kl_sigma, 0, atol=1e-9)
    np.testing.assert_allclose(dsigma, 0, atol=1e-9)


def test_the_two_parametrizations_agree_on_the_kl():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((5, 3)), rng.uniform(-3, 3, (5, 3))
    kl_logvar = gaussian.LogvarGaussian.kl(on_device(mu), on_device(logvar))[0]
    kl_sigma = gaussian.SigmaGaussian.kl(on_device(mu), on_device(np.exp(0.5 * logvar)))[0]
    np.testing.assert_allclose(on_host(kl_logvar), on_host(kl_sigma), rtol=1e-8)


def test_kl_matches_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mu, logvar = on_device(np.array([[0.7, -1.2]])), on_device(np.array([[-0.5, 0.8]]))
    post = gaussian.LogvarGaussian()
    z = post.sample(backend.xp.repeat(mu, 400_000, 0), backend.xp.repeat(logvar, 400_000, 0), rng=rng)
    monte_carlo = float((post.log_q(z, mu, logvar) - gaussian.log_prior(z)).mean())
    assert abs(monte_carlo - float(post.kl(mu, logvar)[0][0])) < 0.01


def test_given_noise_makes_sampling_reproducible():
    xp = backend.xp
    mu, logvar, eps = xp.ones((2, 3)), xp.zeros((2, 3)), xp.full((2, 3), 0.5)
    np.testing.assert_array_equal(on_host(gaussian.LogvarGaussian().sample(mu, logvar, eps=eps)), 1.5)


@settings(max_examples=30, deadline=None)
@given(st.data(), shapes, st.sampled_from(["logvar", "sigma"]))
def test_log_q_partials_match_finite_differences_with_z_mu_and_scale_each_held_fixed(data, shape, posterior):
    q = gaussian.POSTERIORS[posterior]()
    low, high = (-5, 5) if posterior == "logvar" else (0.3, 3)
    z, mu = (on_device(data.draw(arrays(np.float64, shape, elements=st.floats(-3, 3)))) for _ in range(2))
    scale = on_device(data.draw(arrays(np.float64, shape, elements=st.floats(low, high))))

    def fn(z, mu, scale):
        return q.log_q(z, mu, scale), q.log_q_partials(z, mu, scale)

    errors = check_function(fn, [z, mu, scale])
    assert max(errors) < TOL, errors
