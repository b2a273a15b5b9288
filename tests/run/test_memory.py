"""run/memory.py: a training step that could never fit in memory is refused before training, not killed mid-step."""

import tracemalloc

import numpy as np
import pytest

from minivae.core import backend
from minivae.models.convnet import conv_vae
from minivae.models.vae import mlp_vae
from minivae.run import memory
from minivae.run.memory import DoesNotFit

pytestmark = pytest.mark.skipif(backend.is_gpu(), reason="the check measures NumPy's allocations")


def step_peak(vae, batch, classes=0):
    """What tracemalloc sees the first step on `batch` images allocate at its peak, in bytes: the work arrays the
    layers keep for later steps of that size included."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, classes, batch) if classes else None
    eps = rng.standard_normal((batch, vae.latent), dtype=np.float32)
    tracemalloc.start()
    try:
        vae.step(x, y, eps=eps)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("vae, classes", [
    (mlp_vae(hidden=(400,), latent=20, rng=np.random.default_rng(0)), 0),
    (mlp_vae(hidden=(64,), latent=4, classes=10, recon="cb", rng=np.random.default_rng(0)), 10),
    (conv_vae(latent=2, rng=np.random.default_rng(0)), 0),
], ids=["default-mlp", "conditional-cb", "convnet"])
def test_the_bytes_per_row_measured_on_small_steps_bound_a_full_batchs_step_from_both_sides(vae, classes):
    per_row = memory.bytes_per_row(vae, classes, 784)
    peak = step_peak(vae, 128, classes)
    # what is refused, the estimate over OVERSTATED, never fits; the estimate itself covers the step
    assert per_row * 128 / memory.OVERSTATED <= peak <= per_row * 128


def test_a_step_that_needs_more_than_the_machine_has_is_refused_naming_the_keys(monkeypatch):
    vae = mlp_vae(hidden=(32,), latent=2, rng=np.random.default_rng(0))
    per_row = memory.bytes_per_row(vae, 0, 784)
    monkeypatch.setattr(memory, "total_memory", lambda: int(per_row * 1000))
    memory.check_step(vae, 1000 * memory.OVERSTATED, 0, 784, ("batch_size",))  # may fit: not refused
    with pytest.raises(DoesNotFit, match="a training step on 2,100 rows of images needs at least") as refused:
        memory.check_step(vae, 2100, 0, 784, ("k", "batch_size"))
    assert refused.value.keys == ("k", "batch_size")


def test_the_machines_memory_is_known_here():
    assert memory.total_memory() > 2**28
