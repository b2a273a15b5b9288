"""The gradient checker itself: it must pass correct gradients and fail wrong ones."""

import subprocess
import sys

import numpy as np
import pytest

from minivae import backend, gradcheck, layers

on_device, on_host = backend.to_device, backend.to_numpy


def test_numerical_gradient_of_a_known_function():
    x = on_device(np.array([0.3, -1.2, 2.0]))
    grad = gradcheck.numerical_grad(lambda: float((x**3).sum()), x)
    np.testing.assert_allclose(on_host(grad), 3 * on_host(x) ** 2, rtol=1e-8)


def test_numerical_gradient_leaves_its_input_unchanged():
    x = on_device(np.array([0.3, -1.2, 2.0]))
    before = on_host(x).copy()
    gradcheck.numerical_grad(lambda: float(backend.xp.sin(x).sum()), x)
    np.testing.assert_array_equal(on_host(x), before)


def test_relative_error_is_zero_for_equal_and_one_for_opposite_gradients():
    g = np.array([1.0, -2.0, 3.0])
    assert gradcheck.rel_error(g, g) == 0.0
    assert gradcheck.rel_error(g, -g) == 1.0


def test_relative_error_ignores_differences_within_the_numeric_error():
    assert gradcheck.rel_error(np.array([0.0]), np.array([1e-10]), numeric_error=1e-9) == 0.0
    assert gradcheck.rel_error(np.array([0.0]), np.array([1e-10])) == 1.0


def test_a_one_percent_error_is_caught():
    def wrong(x):
        return (x**2).sum(), (2.02 * x,)

    assert gradcheck.check_function(wrong, [on_device(np.array([0.5, -1.0, 2.0]))])[0] > 1e-3


def test_a_missing_term_is_caught():
    dense = layers.Dense(3, 2, dtype="float64")

    class NoBiasGradient(layers.Dense):
        def backward(self, dout, need_dx=True):
            dx = super().backward(dout, need_dx)
            self.grads["b"][...] = 0
            return dx

    broken = NoBiasGradient(3, 2, dtype="float64")
    broken.params["W"][...] = dense.params["W"]
    assert gradcheck.check_layer(broken, backend.xp.ones((2, 3)))["b"] == 1.0


@pytest.mark.numpy_only  # a fresh process starts on NumPy (`python tests/fake_cupy.py minivae.gradcheck`: the fake)
def test_command_prints_a_table_and_exits_zero_when_every_gradient_matches():
    out = subprocess.run([sys.executable, "-m", "minivae.gradcheck"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.split()[:1] and line.split()[0] in
            {"layer", "conv", "loss", "sampler", "KL", "model"}]
    assert len(rows) >= 15
    for row in rows:
        raw, verdict = (float(v) for v in row.split()[-3:-1])
        assert raw <= gradcheck.TOLERANCE and verdict <= gradcheck.TOLERANCE, row
    assert "all gradients match" in out.stdout


def test_command_exits_non_zero_when_a_gradient_is_wrong(monkeypatch, capsys):
    original = layers.Tanh.backward
    monkeypatch.setattr(layers.Tanh, "backward", lambda self, dout, need_dx=True: 1.1 * original(self, dout))
    assert gradcheck.main([]) == 1
    assert "FAIL" in capsys.readouterr().out
