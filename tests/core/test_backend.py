"""The one place that picks NumPy or CuPy."""

import configparser
import subprocess
import sys
import types

import fake_cupy
import numpy as np
import pytest
from conftest import REPO

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


# ---- a CuPy that cannot run: the one-line errors of `use("cupy")`, with fakes of each failure


class DynamicLibNotFoundError(RuntimeError):
    """What cuda.pathfinder raises when it cannot find a CUDA library (CuPy 14 loads NVRTC through it)."""


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError."""


def not_found(library):
    return (f'Failure finding "{library}": No such file: {library}, No such file: {library}\n'
            f'  searched: site-packages/nvidia/...')


class BrokenCupy:
    """The CuPy stand-in with some of its names replaced, as a real CuPy behaves when a part of CUDA is missing."""

    def __init__(self, **replaced):
        self.replaced = replaced

    def __getattr__(self, name):
        return self.replaced[name] if name in self.replaced else getattr(fake_cupy, name)


def raising(err):
    def fail(*args, **kwargs):
        raise err
    return fail


class NoNvrtcKernel:
    """cupy.ElementwiseKernel without NVRTC: building it is fine, compiling it at the first call is not."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args):
        raise DynamicLibNotFoundError(not_found("libnvrtc.so.13"))


def runtime(count=1, driver=13000, cuda=13000):
    def device_count():
        if isinstance(count, Exception):
            raise count
        return count
    return types.SimpleNamespace(Device=fake_cupy.cuda.Device, runtime=types.SimpleNamespace(
        getDeviceCount=device_count, driverGetVersion=lambda: driver, runtimeGetVersion=lambda: cuda))


INSUFFICIENT = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime "
                                "version")
BROKEN = {  # what is missing -> (the fake CuPy, what the one line must say)
    "NVRTC": (BrokenCupy(ElementwiseKernel=NoNvrtcKernel),
              ["CuPy cannot compile and run an elementwise kernel on this GPU: NVRTC failed",
               "libnvrtc.so.13", "`pip install -e .[gpu-cuda13]` (cupy-cuda13x[ctk])"]),
    "cuBLAS": (BrokenCupy(matmul=raising(ImportError(not_found("libcublasLt.so.13")))),
               ["CuPy cannot multiply matrices on this GPU: cuBLAS failed (ImportError", "libcublasLt.so.13",
                "`pip install -e .[gpu-cuda13]` (cupy-cuda13x[ctk])"]),
    "cuRAND": (BrokenCupy(random=types.SimpleNamespace(default_rng=raising(ImportError(not_found("libcurand.so.10")))),
                          cuda=runtime(cuda=12080)),
               ["CuPy cannot draw random numbers on this GPU: cuRAND failed", "libcurand.so.10",
                "`pip install -e .[gpu-cuda12]` (cupy-cuda12x[ctk])"]),
    "driver": (BrokenCupy(cuda=runtime(count=INSUFFICIENT, driver=0)),
               ["no NVIDIA driver was found (CUDARuntimeError: cudaErrorInsufficientDriver",
                "install the NVIDIA driver"]),
    "a new enough driver": (BrokenCupy(cuda=runtime(count=INSUFFICIENT, driver=12080, cuda=13000)),
                            ["the NVIDIA driver supports CUDA 12.8, but this CuPy is built for CUDA 13",
                             "update the driver", "`pip install -e .[gpu-cuda12]`"]),
    "a GPU": (BrokenCupy(cuda=runtime(count=0)), ["CuPy is installed but no GPU is present"]),
    "a working cuBLAS": (BrokenCupy(matmul=lambda a, b: fake_cupy.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)),
                         ["CuPy computed a wrong result when asked to multiply matrices (cuBLAS)"]),
}


@pytest.mark.parametrize("missing", BROKEN)
def test_a_cupy_that_cannot_run_is_one_line_saying_what_to_install(missing, monkeypatch):
    broken, says = BROKEN[missing]
    monkeypatch.setattr(backend, "import_cupy", lambda: broken)
    before = backend.name
    with pytest.raises(backend.BackendError) as err:
        backend.use("cupy")
    message = str(err.value)
    assert "\n" not in message and message.endswith("use the NumPy backend")
    for part in says:
        assert part in message
    assert backend.name == before


def test_the_cuda_libraries_are_checked_once_per_process(monkeypatch):
    calls = []

    def counted_matmul(a, b):
        calls.append(1)
        return fake_cupy.matmul(a, b)

    cupy = BrokenCupy(matmul=counted_matmul)
    monkeypatch.setattr(backend, "import_cupy", lambda: cupy)
    backend.use("cupy")
    backend.use("cupy")
    assert len(calls) == 1 and backend.name == "cupy"


def test_the_gpu_extras_install_cupy_with_its_cuda_libraries():
    """The extras the messages above name exist, and bring CUDA's libraries with CuPy ([ctk])."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    extras = {name: value.split() for name, value in config["options.extras_require"].items()}
    assert extras["gpu-cuda12"] == ["cupy-cuda12x[ctk]>=14"] and extras["gpu-cuda13"] == ["cupy-cuda13x[ctk]>=14"]
    assert extras["gpu"] == extras["gpu-cuda12"]  # the older name
