"""The gradient checker itself: it must pass correct gradients and fail wrong ones."""

import subprocess
import sys

import numpy as np
import pytest

from minivae import gradcheck
from minivae.checks import finite_differences as fd
from minivae.checks.table import CHECKS, Check
from minivae.core import backend, layers

on_device, on_host = backend.to_device, backend.to_numpy


def test_numerical_gradient_of_a_known_function():
    x = on_device(np.array([0.3, -1.2, 2.0]))
    grad = fd.numerical_grad(lambda: float((x**3).sum()), x)
    np.testing.assert_allclose(on_host(grad), 3 * on_host(x) ** 2, rtol=1e-8)


def test_numerical_gradient_leaves_its_input_unchanged():
    x = on_device(np.array([0.3, -1.2, 2.0]))
    before = on_host(x).copy()
    fd.numerical_grad(lambda: float(backend.xp.sin(x).sum()), x)
    np.testing.assert_array_equal(on_host(x), before)


def test_relative_error_is_zero_for_equal_and_one_for_opposite_gradients():
    g = np.array([1.0, -2.0, 3.0])
    assert fd.rel_error(g, g) == 0.0
    assert fd.rel_error(g, -g) == 1.0


def test_relative_error_ignores_differences_within_the_numeric_error():
    assert fd.rel_error(np.array([0.0]), np.array([1e-10]), numeric_error=1e-9) == 0.0
    assert fd.rel_error(np.array([0.0]), np.array([1e-10])) == 1.0


def test_a_one_percent_error_is_caught():
    def wrong(x):
        return (x**2).sum(), (2.02 * x,)

    assert fd.check_function(wrong, [on_device(np.array([0.5, -1.0, 2.0]))])[0] > 1e-3


def test_a_missing_term_is_caught():
    dense = layers.Dense(3, 2, dtype="float64")

    class NoBiasGradient(layers.Dense):
        def backward(self, dout, need_dx=True):
            dx = super().backward(dout, need_dx)
            self.grads["b"][...] = 0
            return dx

    broken = NoBiasGradient(3, 2, dtype="float64")
    broken.params["W"][...] = dense.params["W"]
    assert fd.check_layer(broken, backend.xp.ones((2, 3)))["b"] == 1.0


def test_a_gradient_that_is_not_finite_fails():
    assert fd.rel_error(np.array([1.0, np.inf]), np.array([1.0, 2.0])) == np.inf
    assert fd.rel_error(np.array([1.0, np.nan]), np.array([1.0, 2.0])) == np.inf


def test_pass_rule_judges_the_verdict_and_fails_on_inf_or_an_exception():
    assert fd.passes({"x": fd.TOLERANCE, "W": 0.0}, None)
    assert not fd.passes({"x": 2 * fd.TOLERANCE}, None)
    assert not fd.passes({"x": float("inf")}, None)
    assert not fd.passes({}, "ValueError: shapes differ")


class AccumulatingDense(layers.Dense):
    """dW added to the old grads instead of overwriting them: right on fresh zeros, wrong on any second call."""

    def backward(self, dout, need_dx=True):
        self.grads["W"] += self.x.T @ dout
        self.grads["b"][...] = dout.sum(axis=0)
        return dout @ self.params["W"].T


def test_check_layer_catches_gradients_that_accumulate():
    errors = fd.check_layer(AccumulatingDense(3, 2, dtype="float64"), backend.xp.ones((2, 3)))
    assert errors["W"] > 0.1 and errors["b"] == 0.0


def test_check_model_catches_gradients_that_accumulate():
    from minivae.models.vae import VAE

    encoder = layers.mlp([4, 3], rng=np.random.default_rng(0), dtype="float64")
    decoder = layers.Sequential(AccumulatingDense(2, 4, rng=np.random.default_rng(1), dtype="float64"))
    model = VAE(encoder, decoder, features=3, latent=2, rng=np.random.default_rng(2), dtype="float64")
    rng = np.random.default_rng(3)
    x, eps = on_device(rng.uniform(0, 1, (3, 4))), on_device(rng.standard_normal((3, 2)))

    def loss():
        recon, kl = model.per_example_losses(x, eps=eps)
        return float((recon + kl).mean())

    errors = fd.check_model(model, lambda: model.step(x, eps=eps), loss)
    assert errors["decoder.0.W"] > 0.1 and errors["decoder.0.b"] == 0.0


def test_a_check_that_raises_fails_its_row():
    def crash(rng, noise_aware):
        raise ValueError("operands could not be broadcast together")

    verdicts, raws, problem = fd.run_check(Check("layer", "broken", 0, crash))
    assert problem == "ValueError: operands could not be broadcast together"
    assert not fd.passes(verdicts, problem)


def test_every_row_has_its_own_seed_and_name():
    assert len({check.seed for check in CHECKS}) == len({check.name for check in CHECKS}) == len(CHECKS)


def test_the_table_covers_every_mlp_a_config_can_build():
    names = {check.name for check in CHECKS}
    for recon in ("bce", "bce-prob", "mse", "cb"):
        for posterior in ("logvar", "sigma"):
            for activation in ("relu", "tanh", "sigmoid"):
                assert f"MLP {recon}/{posterior}/{activation}" in names


@pytest.mark.numpy_only  # a fresh process starts on NumPy (`python tests/fake_cupy.py minivae.gradcheck`: the fake)
def test_command_prints_a_table_and_exits_zero_when_every_gradient_matches():
    out = subprocess.run([sys.executable, "-m", "minivae.gradcheck"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    groups = {check.group for check in CHECKS}
    rows = [line for line in out.stdout.splitlines() if line.split()[:1] and line.split()[0] in groups]
    assert len(rows) == len(CHECKS) >= 50
    for row in rows:
        verdict = float(row.split()[-2])  # the raw error (column -3) is shown, not judged
        assert verdict <= fd.TOLERANCE, row
    assert f"{len(CHECKS)} checks in" in out.stdout and "all gradients match" in out.stdout


def test_the_printed_legend_gives_the_numbers_the_code_uses(capsys, monkeypatch):
    monkeypatch.setattr("minivae.checks.table.CHECKS", CHECKS[:1])
    assert gradcheck.main([]) == 0
    legend = capsys.readouterr().out
    for number in (fd.STEP, fd.ROUNDING, fd.SMALL_ENTRY, fd.TOLERANCE):
        assert f"{number:g}" in legend
    assert "|g_h - g_2h|" in legend and "decides nothing" in legend


def test_command_exits_non_zero_when_a_gradient_is_wrong(monkeypatch, capsys):
    original = layers.Tanh.backward
    monkeypatch.setattr(layers.Tanh, "backward", lambda self, dout, need_dx=True: 1.1 * original(self, dout))
    assert gradcheck.main([]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_only_checks_the_rows_it_names(capsys):
    assert gradcheck.main(["--only", "relu"]) == 0
    out = capsys.readouterr().out
    rows = [check for check in CHECKS if "relu" in f"{check.group} {check.name}".lower()]
    assert f"{len(rows)} checks in" in out and 0 < len(rows) < len(CHECKS)
    assert all(check.name in out for check in rows)


def test_only_with_no_matching_row_is_a_one_line_error(capsys):
    assert gradcheck.main(["--only", "no-such-row"]) == 2
    assert "error: --only no-such-row: no row of the table has that in its group or name" in capsys.readouterr().err
