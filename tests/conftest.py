"""Shared fixtures: the backend every test starts on, a CuPy backend that skips cleanly without a GPU, data
folders that never reach the real network, and the `--backend` option. The test folders mirror minivae's: core/,
models/, checks/, run/, figures/, bench/, commands/ (train, evaluate and their faults) and demos/.

`python -m pytest --backend fake-cupy` runs every test on tests/fake_cupy.py, a strict stand-in for CuPy (no GPU
needed): `backend.use("cupy")` loads it, and each test starts on it instead of NumPy. Only the modules that
exercise array code run (BACKEND_SENSITIVE); tests marked `numpy_only` (about NumPy itself, e.g. its floating
point warnings) are skipped. `python -m pytest --backend cupy` does the same on the real CuPy, on a machine with a
GPU (scripts/gpu_check.py runs it so).

The fused GPU kernels (minivae/core/kernels.py) run in the tests that take the `kernels_on` fixture, twice: on the
stand-in with tests/kernel_emulator.py's ElementwiseKernel (the kernels compiled as C++ for the CPU; skipped
without a C++ compiler), and on a real CuPy (skipped without a GPU).
"""

import re
import urllib.request
import zipfile
from pathlib import Path

import fake_cupy
import kernel_emulator
import numpy as np
import pytest

from minivae.core import backend
from minivae.core.layers import ReLU
from minivae.run import data, download

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The test modules that run under --backend fake-cupy: the ones that compute with arrays. The others (plots,
# data files, the command lines, demos) handle NumPy data on the host whatever the backend.
BACKEND_SENSITIVE = {"test_backend.py", "test_layers.py", "test_losses.py", "test_gaussian.py", "test_vae.py",
                     "test_optim.py", "test_gradcheck.py", "test_train.py", "test_checkpoint.py", "test_fake_cupy.py",
                     "test_conv.py", "test_conv_vae.py", "test_iwae.py",
                     "test_continuous_bernoulli.py", "test_conditional_vae.py", "test_m2.py", "test_train_labels.py",
                     "test_conv_fast.py", "test_kernels.py", "test_explorer.py",
                     "test_gradcheck_mistakes.py", "test_densities.py", "test_extreme_ranges.py",
                     "test_conv_work_arrays.py", "test_conv_init.py", "test_references.py", "test_float32.py",
                     "test_metrics.py", "test_training_loop.py", "test_feeds.py", "test_classifier.py",
                     "test_model_mistakes.py", "test_core_mistakes.py", "test_bookkeeping_mistakes.py"}
DEVICE_BACKENDS = ("fake-cupy", "cupy")  # the --backend values that start every test on CuPy (or its stand-in)


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("numpy", *DEVICE_BACKENDS), default="numpy",
                     help="the array backend every test starts on: numpy, fake-cupy (tests/fake_cupy.py, a strict "
                          "stand-in for CuPy) or cupy (the real one, on a GPU); the last two run only the "
                          "backend-sensitive tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "numpy_only: a test about NumPy itself, skipped under --backend fake-cupy "
                                       "and cupy")
    if config.getoption("--backend") == "fake-cupy":  # for the whole session, module-scoped fixtures included
        backend.import_cupy = lambda: fake_cupy
    if config.getoption("--backend") in DEVICE_BACKENDS:
        backend.requested = "cupy"  # as MINIVAE_BACKEND=cupy: the commands run on it too
        try:
            backend.use("cupy")
        except backend.BackendError as err:
            pytest.exit(f"--backend {config.getoption('--backend')}: {err}", returncode=2)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--backend") not in DEVICE_BACKENDS:
        return

    def runs(item):
        return item.path.name in BACKEND_SENSITIVE

    config.hook.pytest_deselected(items=[item for item in items if not runs(item)])
    items[:] = [item for item in items if runs(item)]
    for item in items:
        if item.get_closest_marker("numpy_only"):
            item.add_marker(pytest.mark.skip(reason="about NumPy itself, not the backend"))


@pytest.fixture(autouse=True)
def start_backend(request):
    """Every test starts on the --backend's array module (NumPy by default) with a seeded generator, and leaves
    it that way."""
    name = "cupy" if request.config.getoption("--backend") in DEVICE_BACKENDS else "numpy"
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


@pytest.fixture(params=["emulated", "gpu"])
def kernels_on(request, monkeypatch):
    """The backend that runs the fused kernels, for one test: the CuPy stand-in with emulated kernels, then the real
    CuPy. Each is skipped where it cannot run (no C++ compiler; no GPU, or the stand-in in its place)."""
    if request.param == "emulated":
        if request.config.getoption("--backend") == "fake-cupy":
            pytest.skip("the emulated kernels run in the NumPy session (the same stand-in)")
        if kernel_emulator.COMPILER is None:
            pytest.skip("no C++ compiler to emulate CuPy's ElementwiseKernel")
        monkeypatch.setattr(fake_cupy, "ElementwiseKernel", kernel_emulator.ElementwiseKernel, raising=False)
        monkeypatch.setattr(backend, "import_cupy", lambda: fake_cupy)
    try:
        backend.use("cupy", 0)
    except backend.BackendError as err:
        pytest.skip(f"no GPU backend here: {err}")
    if not hasattr(backend.xp, "ElementwiseKernel"):
        pytest.skip("the CuPy stand-in is not a GPU")
    yield backend.xp


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """No real environment leaks in: own HOME and cache, no MINIVAE_DATA_DIR, no Debian folder, no mirrors."""
    monkeypatch.delenv("MINIVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [], "fashion-mnist": []})
    # An opener that ignores proxy variables, so 127.0.0.1 is reached directly.
    monkeypatch.setattr(download, "urlopen", urllib.request.build_opener(urllib.request.ProxyHandler({})).open)


def write_dataset(folder, n_train=20, n_test=10, seed=0):
    """Write the four IDX files of a small random dataset into folder. Image i of train has pixel 0 = i."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(n_train)
    data.write_idx(folder / "train-images-idx3-ubyte.gz", train)
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train, dtype=np.uint8))
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    data.write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test, dtype=np.uint8))
    return folder


def write_tiny_dataset(folder, n_train, n_test):
    """data.tiny_dataset (synthetic strokes and blobs) as the four gzip IDX files that data.load looks for."""
    ds = data.tiny_dataset(n_train, n_test)
    images = [np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28) for x in (ds.x_train, ds.x_test)]
    for name, array in zip(data.FILES, (images[0], ds.y_train, images[1], ds.y_test)):
        data.write_idx(Path(folder) / name, array.astype(np.uint8))
    return Path(folder)


def relu_margin(sequential, x):
    """The smallest |input| of any ReLU in `sequential` (a layers.Sequential) fed x. A finite difference with step
    h is wrong where a ReLU's input is within ~h of 0 (it steps over the kink): property tests of ReLU models
    `assume` a margin, as the gradient check's rows are chosen to have one."""
    margin = np.inf
    for layer in sequential.layers:
        if isinstance(layer, ReLU):
            margin = min(margin, float(backend.xp.abs(x).min())) if x.size else margin
        x = layer.forward(x)
    return margin


def vae_relu_margin(model, x, eps, y=None):
    """relu_margin over a VAE's encoder (fed x, with y if it is conditioned) and decoder (fed z = mu + std eps)."""
    mu, scale = model.encode(x, y)
    z = model.posterior.sample(mu, scale, eps)
    return min(relu_margin(model.encoder, model.with_class(x, y)), relu_margin(model.decoder, model.with_class(z, y)))


def forge_shape(path, entry, shape):
    """Rewrite the .npy header of one entry of the .npz file at `path` to declare `shape`; the bytes stay, so a
    damaged header can be shown to be refused before anything is allocated."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    raw = members[entry + ".npy"]
    end = 10 + int.from_bytes(raw[8:10], "little")  # format 1.0: magic, version, 2-byte header length
    header = raw[10:end].decode("latin1")
    forged = re.sub(r"'shape': \([^)]*\)", f"'shape': {tuple(shape)!r}", header).rstrip()
    members[entry + ".npy"] = raw[:10] + (forged.ljust(len(header) - 1) + "\n").encode("latin1") + raw[end:]
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
