"""The one place that decides NumPy or CuPy.

Every module of minivae reads the array module as `backend.xp` at call time, never by importing numpy
directly for array work, so the same code runs on the CPU (NumPy) and the GPU (CuPy). Arrays are converted
to NumPy only at the edges: saving, plotting, printing (`to_numpy`).

Choose the backend with the environment variable MINIVAE_BACKEND=numpy|cupy, with `use("cupy")`, or with the
commands' `--device gpu`. Asking for CuPy where it is missing or no GPU is present raises BackendError with a
one-line message: at once from `use`, and at the first use of `xp` when the environment variable asked (so
that importing minivae never fails, and the commands can print the message instead of a traceback).

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
            f"CuPy is not installed ({err}); install it with `pip install -e .[gpu-cuda12]` (CUDA 12) or "
            f"`.[gpu-cuda13]` (CUDA 13; `nvidia-smi` shows your CUDA version), or use the NumPy backend"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: CuPy raises its own runtime errors
        raise BackendError(f"CuPy is installed but no usable GPU was found ({err}); use the NumPy backend") from None
    if count < 1:
        raise BackendError("CuPy is installed but no GPU is present; use the NumPy backend")
    return cupy


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
