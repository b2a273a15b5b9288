"""The one place that picks NumPy or CuPy."""

import subprocess
import sys

import numpy as np
import pytest

from minivae.core import backend


@pytest.mark.numpy_only  # under --backend fake-cupy every test starts on the fake
def test_numpy_is_the_default_backend():
    assert backend.name == "numpy" and backend.xp is np


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="unknown backend 'torch'; choose one of numpy, cupy"):
        backend.use("torch")


def test_asking_for_cupy_without_it_is_a_one_line_error_naming_the_extras_to_install(monkeypatch):
    def cupy_missing():
        raise ImportError("No module named 'cupy'")

    monkeypatch.setattr(backend, "import_cupy", cupy_missing)
    before = backend.name
    with pytest.raises(backend.BackendError) as err:
        backend.use("cupy")
    message = str(err.value)
    assert "\n" not in message and message.startswith("CuPy is not installed")
    assert "pip install -e .[gpu-cuda12]` (CUDA 12)" in message and "`.[gpu-cuda13]` (CUDA 13" in message
    assert "`nvidia-smi` shows your CUDA version" in message
    assert backend.name == before  # a failed switch leaves the backend as it was


def test_environment_variable_selects_the_backend_at_import():
    code = "from minivae.core import backend; print(backend.name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"MINIVAE_BACKEND": "numpy", "PATH": ""}, check=True)
    assert out.stdout.strip() == "numpy"


def test_an_unusable_backend_in_the_environment_fails_at_first_use_not_at_import():
    code = ("import minivae.models.vae\n"
            "try:\n    minivae.models.vae.mlp_vae()\nexcept minivae.core.backend.BackendError as err:\n"
            "    print('error:', err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"MINIVAE_BACKEND": "no-such-backend", "PATH": ""}, check=True)
    assert out.stdout.startswith("error: MINIVAE_BACKEND=no-such-backend: unknown backend")


@pytest.mark.parametrize("command", ["train", "gradcheck", "bench", "evaluate"])
def test_commands_report_an_unusable_backend_in_one_line(command):
    args = ["/no/checkpoint"] if command == "evaluate" else []
    out = subprocess.run([sys.executable, "-m", f"minivae.{command}", *args], capture_output=True, text=True,
                         env={"MINIVAE_BACKEND": "no-such-backend", "PATH": ""}, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("error: MINIVAE_BACKEND=no-such-backend: unknown backend")


def test_seed_makes_the_shared_generator_reproducible():
    backend.seed(7)
    first = backend.to_numpy(backend.rng.standard_normal(3))
    backend.seed(7)
    np.testing.assert_array_equal(first, backend.to_numpy(backend.rng.standard_normal(3)))


def test_to_numpy_and_to_device_round_trip():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    on_device = backend.to_device(a, dtype="float32")
    assert on_device.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(on_device), a)


def test_cupy_round_trip_returns_numpy(gpu):
    a = backend.to_device(np.ones(3))
    assert isinstance(a, gpu.ndarray) and not isinstance(a, np.ndarray)
    assert isinstance(backend.to_numpy(a), np.ndarray)
