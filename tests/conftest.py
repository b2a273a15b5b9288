"""Shared fixtures: the NumPy backend by default, a CuPy backend that skips cleanly without a GPU, and data
folders that never reach the real network."""

import urllib.request
from pathlib import Path

import numpy as np
import pytest

from minivae import backend, data, download

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def numpy_backend():
    """Every test starts on NumPy with a seeded generator, and leaves it that way."""
    backend.use("numpy", 0)
    yield
    backend.use("numpy", 0)


@pytest.fixture
def gpu():
    """Switch to CuPy for one test, or skip it when CuPy or a GPU is missing."""
    try:
        backend.use("cupy", 0)
    except backend.BackendError as err:
        pytest.skip(f"no GPU backend here: {err}")
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
