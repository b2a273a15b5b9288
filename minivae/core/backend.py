"""The one place that decides NumPy or CuPy.

Every module of minivae reads the array module as `backend.xp` at call time, never by importing numpy
directly for array work, so the same code runs on the CPU (NumPy) and the GPU (CuPy). Arrays are converted
to NumPy only at the edges: saving, plotting, printing (`to_numpy`).

Choose the backend with the environment variable MINIVAE_BACKEND=numpy|cupy, with `use("cupy")`, or with the
commands' `--device gpu`. Asking for CuPy where it cannot run raises BackendError with a one-line message that
says what to install: at once from `use`, and at the first use of `xp` when the environment variable asked (so
that importing minivae never fails, and the commands can print the message instead of a traceback).

"Where it cannot run" is found out at once, not mid-run: the first `use("cupy")` of a process asks for the GPUs,
then compiles and runs one tiny elementwise kernel (CuPy compiles every kernel with NVRTC at its first use),
one matrix product (cuBLAS) and one random draw (cuRAND). CuPy loads each of those CUDA libraries only when
first needed, so a machine with the NVIDIA driver but without them (CuPy installed without its `[ctk]` extra)
would otherwise fail with a traceback in the middle of the first training step.

One seeded random generator lives here per backend (`rng`), re-seeded with `seed(n)`; code that needs
reproducible draws can also make its own with `default_rng(seed)`.
"""

import os

import numpy as np

NAMES = ("numpy", "cupy")


class BackendError(RuntimeError):
    """The requested array backend cannot be used here (the message says why and what to do)."""


xp = np  # the array module in use: numpy or cupy
name = "numpy"
rng = np.random.default_rng(0)  # the backend's random generator


def import_cupy():
    """Import CuPy. The one place that does: tests/conftest.py puts a stand-in here for `pytest --backend fake-cupy`."""
    import cupy

    return cupy


def _load_cupy():
    try:
        cupy = import_cupy()
    except ImportError as err:
        raise BackendError(
            f"CuPy is not installed ({_first_line(err)}); install it with `pip install -e .[gpu-cuda12]` (CUDA 12) "
            f"or `.[gpu-cuda13]` (CUDA 13; `nvidia-smi` shows your CUDA version), or use the NumPy backend"
        ) from None
    except Exception as err:  # a broken installation (two CuPy packages at once, say) raises its own errors
        raise BackendError(f"CuPy is installed but cannot be imported ({_first_line(err)}); reinstall it with "
                           f"`pip install -e .[gpu-cuda12]` or `.[gpu-cuda13]`, or use the NumPy backend") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: CuPy raises its own runtime errors
        raise BackendError(_driver_problem(cupy, err)) from None
    if count < 1:
        raise BackendError("CuPy is installed but no GPU is present; use the NumPy backend")
    if not any(module is cupy for module in _libraries_checked):
        _check_libraries(cupy)
        _libraries_checked.append(cupy)
    return cupy


_libraries_checked = []  # the CuPy modules whose CUDA libraries ran: once per process is enough


def _probe_kernel(cupy):
    """A kernel of our own (as core/kernels.py builds them) and one of CuPy's (a sum): both are compiled by NVRTC."""
    x = cupy.arange(4, dtype="float32")
    doubled = cupy.ElementwiseKernel("T x", "T y", "y = x + x", "minivae_probe")(x) \
        if hasattr(cupy, "ElementwiseKernel") else x + x  # (tests/fake_cupy.py has no ElementwiseKernel)
    return float(doubled.sum()) == 12.0


def _probe_product(cupy):
    return float(cupy.matmul(cupy.ones((2, 3), dtype="float32"), cupy.ones((3, 2), dtype="float32")).sum()) == 12.0


def _probe_draw(cupy):
    draws = cupy.random.default_rng(0).standard_normal(64, dtype="float32")
    return bool(cupy.isfinite(draws).all()) and float(abs(draws).sum()) > 0


# What minivae needs of CUDA beyond the driver: (what it does, the library CuPy does it with, a check that does it)
LIBRARIES = (("compile and run an elementwise kernel", "NVRTC", _probe_kernel),
             ("multiply matrices", "cuBLAS", _probe_product),
             ("draw random numbers", "cuRAND", _probe_draw))


def _check_libraries(cupy):
    """Run each of LIBRARIES' checks; the first that fails (or computes a wrong number) is a BackendError naming
    the library and the package that brings it."""
    for what, library, check in LIBRARIES:
        try:
            right = check(cupy)
        except Exception as err:  # a missing library is an ImportError or RuntimeError of CuPy's own kinds
            raise BackendError(f"CuPy cannot {what} on this GPU: {library} failed ({_first_line(err)}); "
                               f"{_libraries_hint(cupy)}") from None
        if not right:
            raise BackendError(f"CuPy computed a wrong result when asked to {what} ({library}); "
                               f"{_libraries_hint(cupy)}")


def _cuda_major(cupy):
    """The CUDA major version this CuPy was built for (12, 13, ...), or None if it cannot say."""
    try:
        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001 (only the advice depends on it)
        return None


def _libraries_hint(cupy):
    major = _cuda_major(cupy)
    if major in (12, 13):
        return (f"install CuPy with CUDA's libraries: `pip install -e .[gpu-cuda{major}]` "
                f"(cupy-cuda{major}x[ctk]), or use the NumPy backend")
    return ("install CuPy with CUDA's libraries: `pip install -e .[gpu-cuda12]` or `.[gpu-cuda13]` (the CUDA version "
            "`nvidia-smi` shows), or use the NumPy backend")


def _driver_problem(cupy, err):
    """The one line for a failed device count: no driver, a driver too old for this CuPy, or no GPU."""
    major = _cuda_major(cupy)
    try:
        driver = int(cupy.cuda.runtime.driverGetVersion())
    except Exception:  # noqa: BLE001 (only the advice depends on it)
        driver = None
    if driver == 0:
        return (f"CuPy is installed but no NVIDIA driver was found ({_first_line(err)}); install the NVIDIA driver "
                f"(`nvidia-smi` should list the GPU), or use the NumPy backend")
    if driver and major and driver // 1000 < major:
        return (f"the NVIDIA driver supports CUDA {driver // 1000}.{driver % 1000 // 10}, but this CuPy is built for "
                f"CUDA {major} ({_first_line(err)}); update the driver, or install the CuPy of your CUDA version "
                f"(`pip install -e .[gpu-cuda{driver // 1000}]`), or use the NumPy backend")
    return f"CuPy is installed but no usable GPU was found ({_first_line(err)}); use the NumPy backend"


def _first_line(err, limit=200):
    """An exception as one short line: its type, and the first line of its message."""
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def use(backend_name, seed_value=0):
    """Switch the array backend to 'numpy' or 'cupy' and seed its generator. Returns the array module.

    Switch before building a model: arrays made under one backend are not moved by a later switch.
    """
    global xp, name
    if backend_name not in NAMES:
        raise BackendError(f"unknown backend {backend_name!r}; choose one of {', '.join(NAMES)}")
    xp = _load_cupy() if backend_name == "cupy" else np
    name = backend_name
    seed(seed_value)
    return xp


def default_rng(seed_value):
    """A new random generator of the current backend (np.random.Generator or its CuPy twin)."""
    return xp.random.default_rng(seed_value)


def seed(seed_value):
    """Re-seed the backend's shared generator `rng`."""
    global rng
    rng = default_rng(seed_value)
    return rng


def to_numpy(array):
    """A NumPy copy (or the array itself) of a NumPy or CuPy array: for saving, plotting and printing."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):  # a cupy.ndarray copies itself to the host with .get()
        return array.get()
    return np.asarray(array)


def to_device(array, dtype=None):
    """The array on the current backend (a copy only when needed), optionally cast to `dtype`."""
    return xp.asarray(array, dtype=dtype)


def is_gpu():
    return name == "cupy"


def use_device(device=None):
    """For the commands' --device: 'cpu' -> NumPy, 'gpu' -> CuPy, None -> what MINIVAE_BACKEND asks for."""
    if device is None and requested != "numpy":
        try:
            return use(requested)
        except BackendError as err:
            raise BackendError(f"MINIVAE_BACKEND={requested}: {err}") from None
    return use("cupy" if device == "gpu" else "numpy")


class _Unavailable:
    """Stands in for the array module when MINIVAE_BACKEND asked for one that cannot load: any use raises."""

    def __init__(self, error):
        self.error = error

    def __getattr__(self, attribute):
        raise BackendError(f"MINIVAE_BACKEND={requested}: {self.error}")


requested = os.environ.get("MINIVAE_BACKEND", "numpy").strip().lower() or "numpy"
if requested != "numpy":
    try:
        use(requested)
    except BackendError as err:
        xp, name = _Unavailable(err), "unavailable"
