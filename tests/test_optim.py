"""Optimizers: Adam against a hand-computed reference, in-place updates, and state round trips."""

import math

import numpy as np
import pytest

from minivae import backend, optim

on_device, on_host = backend.to_device, backend.to_numpy


def test_adam_first_three_steps_equal_a_hand_computed_reference():
    # Textbook Adam written out by hand for one scalar, lr 0.1, betas (0.9, 0.999), eps 1e-8.
    p, m, v = 1.0, 0.0, 0.0
    expected = []
    for t, g in enumerate([0.5, -0.2, 0.1], start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        p = p - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)
        expected.append(p)
    # Step 1 by hand: m_hat = g, v_hat = g^2, so p moves by exactly lr: 1.0 - 0.1 = 0.9.
    assert expected[0] == pytest.approx(0.9, abs=1e-7)
    params = {"w": on_device(np.array([1.0]))}
    adam = optim.Adam(params, lr=0.1)
    got = []
    for g in [0.5, -0.2, 0.1]:
        adam.step({"w": on_device(np.array([g]))})
        got.append(float(params["w"][0]))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_sgd_with_momentum_follows_its_formula():
    params = {"w": on_device(np.array([0.0]))}
    sgd = optim.SGD(params, lr=0.1, momentum=0.5)
    sgd.step({"w": on_device(np.array([1.0]))})  # velocity 1, w = -0.1
    sgd.step({"w": on_device(np.array([1.0]))})  # velocity 1.5, w = -0.25
    np.testing.assert_allclose(on_host(params["w"]), [-0.25])


def test_rmsprop_first_step_follows_its_formula():
    params = {"w": on_device(np.array([0.0]))}
    optim.RMSprop(params, lr=0.01, rho=0.9, eps=1e-7).step({"w": on_device(np.array([2.0]))})
    np.testing.assert_allclose(on_host(params["w"]), [-0.01 * 2.0 / (math.sqrt(0.1 * 4.0) + 1e-7)])


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_updates_happen_in_place(name):
    weights = backend.xp.ones((3, 4), np.float32)
    params = {"w": weights}
    optim.OPTIMIZERS[name](params).step({"w": backend.xp.ones((3, 4), np.float32)})
    assert params["w"] is weights and bool((weights < 1).all()) and weights.dtype == np.float32


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_optimizers_minimise_a_quadratic(name):
    params = {"w": on_device(np.array([3.0, -2.0]))}
    opt = optim.OPTIMIZERS[name](params, lr=0.05)
    for _ in range(500):
        opt.step({"w": 2 * params["w"]})  # gradient of |w|^2
    assert np.abs(on_host(params["w"])).max() < 0.05


def test_chunked_update_equals_a_whole_array_update(monkeypatch):
    rng = np.random.default_rng(0)
    start, grad = rng.standard_normal(1000), rng.standard_normal(1000)
    results = []
    for chunk in (64, 1 << 16):
        monkeypatch.setattr(optim, "CHUNK", chunk)
        params = {"w": on_device(start)}
        opt = optim.Adam(params)
        opt.step({"w": on_device(grad)})
        opt.step({"w": on_device(-grad)})
        results.append(on_host(params["w"]))
    np.testing.assert_array_equal(*results)


def test_state_dict_round_trip_resumes_exactly():
    rng = np.random.default_rng(0)
    grads = [{"w": on_device(rng.standard_normal(5))} for _ in range(4)]
    straight = {"w": backend.xp.zeros(5)}
    opt = optim.Adam(straight)
    for g in grads:
        opt.step(g)
    resumed = {"w": backend.xp.zeros(5)}
    first = optim.Adam(resumed)
    for g in grads[:2]:
        first.step(g)
    saved = {k: np.array(on_host(v), copy=True) for k, v in first.state_dict().items()}  # as a checkpoint keeps it
    second = optim.Adam(resumed)
    second.load_state_dict(saved)
    for g in grads[2:]:
        second.step(g)
    np.testing.assert_array_equal(on_host(straight["w"]), on_host(resumed["w"]))


def test_non_positive_learning_rate_is_refused():
    with pytest.raises(ValueError, match="learning rate must be positive"):
        optim.Adam({"w": backend.xp.zeros(1)}, lr=0)


def test_moments_that_decay_into_subnormals_are_flushed_to_zero():
    params = {"w": backend.xp.ones(3, np.float32)}
    grad = {"w": on_device(np.array([1.0, 0.0, 0.0], np.float32))}
    adam = optim.Adam(params)
    adam.step(grad)
    adam.state["m"]["w"][1] = 1e-40  # a subnormal float32, as a dead unit's moment becomes
    adam.state["v"]["w"][2] = 1e-35
    for _ in range(optim.FLUSH_EVERY):
        adam.step(grad)
    m, v = on_host(adam.state["m"]["w"]), on_host(adam.state["v"]["w"])
    assert m[1] == 0 and v[2] == 0
    assert m[0] > 0.5  # live entries untouched
