"""Optimizers: Adam against a hand-computed reference and the textbook formulas, in-place updates, the fast twins
(chunks and threads) equal to the plain ones, and state round trips."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.core import backend, optim, optim_fast, threads

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


def test_adam_equals_the_textbook_formulas_over_many_steps_to_float32_rounding():
    rng = np.random.default_rng(0)
    shapes = {"W": (300, 70), "b": (70,), "tiny": (3,)}  # W spans several chunks
    start = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    params = {k: on_device(a) for k, a in start.items()}
    adam = optim.Adam(params, lr=1e-3)
    ref = {k: [a.astype(np.float64), 0.0, 0.0] for k, a in start.items()}  # textbook p, m, v in float64
    for t in range(1, 301):
        scale = 10.0 ** rng.uniform(-4, 1)  # gradients of every size, as training sees them
        grads = {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
        adam.step({k: on_device(g) for k, g in grads.items()})
        for k, g in grads.items():
            p, m, v = ref[k]
            ref[k] = optim.adam_reference_step(p, g.astype(np.float64), m, v, t)
    for k in shapes:
        # 300 updates of ~lr each, every one rounded to float32 (~6e-8 relative): a few 1e-6 at most
        np.testing.assert_allclose(on_host(params[k]), ref[k][0], rtol=0, atol=5e-6, err_msg=k)
        for mine, textbook in zip(adam.moments(k), ref[k][1:]):  # sums of +-terms: error relative to the largest
            np.testing.assert_allclose(on_host(mine), textbook, rtol=0, atol=1e-5 * np.abs(textbook).max(), err_msg=k)


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(1, 200), n_threads=st.integers(1, 4), sizes=st.lists(st.integers(0, 500), min_size=1,
                                                                               max_size=4))
def test_chunks_and_threads_do_not_change_the_update(chunk, n_threads, sizes):
    rng = np.random.default_rng(0)
    start = {f"p{i}": rng.standard_normal(n).astype(np.float32) for i, n in enumerate(sizes)}
    grads = [{k: rng.standard_normal(a.shape).astype(np.float32) for k, a in start.items()} for _ in range(3)]
    results = []
    for chunk_size, threads_used in ((1 << 20, 1), (chunk, n_threads)):
        params = {k: on_device(a) for k, a in start.items()}
        opt = optim_fast.FastAdam(params)
        with threads.limit_threads(threads_used), pytest.MonkeyPatch.context() as patch:
            patch.setattr(optim_fast, "CHUNK", chunk_size)
            for g in grads:
                opt.step({k: on_device(a) for k, a in g.items()})
        results.append({k: on_host(a) for k, a in params.items()})
    for k in start:
        np.testing.assert_array_equal(results[0][k], results[1][k])


def test_a_step_reads_the_gradient_arrays_it_is_given_not_those_of_the_first_step():
    params = {"w": backend.xp.zeros(4)}
    adam = optim.Adam(params, lr=0.1)
    p, m, v = np.zeros(4), 0.0, 0.0
    for t, g in enumerate([np.ones(4), -np.ones(4)], start=1):  # a new array each step
        adam.step({"w": on_device(g)})
        p, m, v = optim.adam_reference_step(p, g, m, v, t, lr=0.1)
    np.testing.assert_allclose(on_host(params["w"]), p, rtol=1e-12)


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


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_the_fast_optimizers_give_the_plain_ones_numbers_bit_for_bit_until_the_first_flush(name):
    rng = np.random.default_rng(0)
    start = {"w": rng.standard_normal((70, 1000)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    plain_params = {k: on_device(a) for k, a in start.items()}
    fast_params = {k: on_device(a) for k, a in start.items()}
    plain = optim.OPTIMIZERS[name](plain_params, lr=1e-2)
    fast = optim_fast.OPTIMIZERS[name](fast_params, lr=1e-2)
    assert isinstance(fast, type(plain))  # the same class underneath: the same hyperparameters and state
    with threads.limit_threads(2):  # 70,000 entries: two chunks of optim_fast.CHUNK, one per thread
        for _ in range(optim_fast.FLUSH_EVERY - 1):
            grads = {k: on_device(rng.standard_normal(a.shape).astype(np.float32)) for k, a in start.items()}
            plain.step(grads)
            fast.step(grads)
    for k in start:
        np.testing.assert_array_equal(on_host(plain_params[k]), on_host(fast_params[k]), err_msg=k)
    for k, value in plain.state_dict().items():
        np.testing.assert_array_equal(on_host(value), on_host(fast.state_dict()[k]), err_msg=k)


def test_moments_that_decay_into_subnormals_are_flushed_to_zero():
    params = {"w": backend.xp.ones(3, np.float32)}
    grad = {"w": on_device(np.array([1.0, 0.0, 0.0], np.float32))}
    adam = optim_fast.FastAdam(params)
    adam.step(grad)
    adam.state["M"]["w"][1] = 1e-40  # a subnormal float32, as a dead unit's moment becomes
    adam.state["V"]["w"][2] = 1e-35
    for _ in range(optim_fast.FLUSH_EVERY):
        adam.step(grad)
    m, v = on_host(adam.state["M"]["w"]), on_host(adam.state["V"]["w"])
    assert m[1] == 0 and v[2] == 0
    assert m[0] > 0.5  # live entries untouched


def test_adam_takes_the_textbook_moments_an_older_minivae_saved():
    weights = np.linspace(-1, 1, 6, dtype=np.float32)
    grads = {"w": on_device(np.linspace(0.5, -0.5, 6, dtype=np.float32))}
    textbook = optim.Adam({"w": on_device(weights.copy())}, lr=1e-2)
    textbook.step(grads)
    m, v = textbook.moments("w")
    older = {"t": 1, "m.w": on_host(m), "v.w": on_host(v)}  # the first checkpoints' names: the textbook m and v
    resumed = optim.Adam({"w": on_device(weights.copy())}, lr=1e-2)
    resumed.load_state_dict(resumed.from_older(older))
    np.testing.assert_allclose(on_host(resumed.moments("w")[0]), on_host(m), rtol=1e-6)
    np.testing.assert_allclose(on_host(resumed.moments("w")[1]), on_host(v), rtol=1e-6)
