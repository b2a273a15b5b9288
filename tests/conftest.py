"""Shared fixtures: float64 arrays for gradient checks, and a CuPy backend that skips cleanly without a GPU."""

import numpy as np
import pytest

from minivae import backend

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
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
