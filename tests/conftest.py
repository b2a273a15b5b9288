"""Shared fixtures: float64 arrays for gradient checks, a CuPy backend that skips cleanly without a GPU, and the
`--backend` option.

`python -m pytest --backend fake-cupy` runs every test on tests/fake_cupy.py, a strict stand-in for CuPy (no GPU
needed): `backend.use("cupy")` loads it, and each test starts on it instead of NumPy. Only the modules that
exercise array code run (BACKEND_SENSITIVE); tests marked `numpy_only` (about NumPy itself, e.g. its floating
point warnings) are skipped.
"""

import fake_cupy
import numpy as np
import pytest

from minivae import backend

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The test modules that run under --backend fake-cupy: the ones that compute with arrays. The others (plots,
# data files, the command lines, demos) handle NumPy data on the host whatever the backend.
BACKEND_SENSITIVE = {"test_backend.py", "test_layers.py", "test_losses.py", "test_gaussian.py", "test_vae.py",
                     "test_optim.py", "test_gradcheck.py", "test_train.py", "test_checkpoint.py", "test_fake_cupy.py"}
# Modules whose tests still feed NumPy arrays to the layers: under fake-cupy only their `gpu` tests run (the conv
# layers' gradients, the convnet's gradient and one step against NumPy's). The gradient checker covers the rest.
GPU_TESTS_ONLY = {"test_conv.py", "test_conv_vae.py"}


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("numpy", "fake-cupy"), default="numpy",
                     help="the array backend every test starts on: numpy, or fake-cupy (tests/fake_cupy.py, a "
                          "strict stand-in for CuPy; runs only the backend-sensitive tests)")


def pytest_configure(config):
    config.addinivalue_line("markers", "numpy_only: a test about NumPy itself, skipped under --backend fake-cupy")
    if config.getoption("--backend") == "fake-cupy":  # for the whole session, module-scoped fixtures included
        backend.import_cupy = lambda: fake_cupy
        backend.requested = "cupy"  # as MINIVAE_BACKEND=cupy: the commands run on it too


def pytest_collection_modifyitems(config, items):
    if config.getoption("--backend") != "fake-cupy":
        return
    def runs(item):
        name = item.path.name
        return name in BACKEND_SENSITIVE or (name in GPU_TESTS_ONLY and "gpu" in item.fixturenames)

    config.hook.pytest_deselected(items=[item for item in items if not runs(item)])
    items[:] = [item for item in items if runs(item)]
    for item in items:
        if item.get_closest_marker("numpy_only"):
            item.add_marker(pytest.mark.skip(reason="about NumPy itself, not the backend"))


@pytest.fixture(autouse=True)
def start_backend(request):
    """Every test starts on the --backend's array module (NumPy by default) with a seeded generator, and leaves
    it that way."""
    name = "cupy" if request.config.getoption("--backend") == "fake-cupy" else "numpy"
    backend.use(name, 0)
    yield
    backend.use(name, 0)


@pytest.fixture
def gpu():
    """Switch to CuPy for one test (the fake under --backend fake-cupy), or skip it when CuPy or a GPU is missing."""
    try:
        backend.use("cupy", 0)
    except backend.BackendError as err:
        pytest.skip(f"no GPU backend here: {err}")
    yield backend.xp


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
