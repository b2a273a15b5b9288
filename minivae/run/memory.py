"""When sizes do not fit in memory: how NumPy says so, and the error that names what to make smaller.

An array too big to allocate is a MemoryError, or, for sizes past what NumPy can index at all, a ValueError.
The library turns either into DoesNotFit, whose `keys` are the config keys (hidden, latent, batch_size, k,
eval_samples) a smaller value of which would fit; the commands name the options that set them.

Linux grants an allocation it cannot back and kills the process when the memory is written, without a word, so
a failed allocation is not the only sign: `check_step` estimates what a training step needs before training.
"""

import os
import tracemalloc

import numpy as np

from minivae.core import backend

# How NumPy says that an array cannot even be allocated, besides MemoryError: sizes past what it can index.
TOO_BIG = ("array is too big", "Maximum allowed dimension exceeded", "Maximum allowed size exceeded")


class DoesNotFit(Exception):
    """Sizes that do not fit in memory (the message says which); keys: the config keys to make smaller."""

    def __init__(self, message, keys):
        super().__init__(message)
        self.keys = tuple(keys)


def is_allocation_failure(err):
    """True if `err` is a failure to allocate an array: MemoryError, or NumPy's ValueError for absurd sizes."""
    return isinstance(err, MemoryError) or (isinstance(err, ValueError) and any(s in str(err) for s in TOO_BIG))


def total_memory():
    """The machine's RAM in bytes, or None where it cannot be told. (Not what is free now: a check against this
    refuses only what could never fit.)"""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def bytes_per_row(vae, classes, image_size, small=2, large=6):
    """The bytes NumPy allocates for each image in a training step of `vae` (VAE.weighted_step, what VAE.step
    runs), measured: the growth of the peak traced by tracemalloc from `small` images to `large`, so that what does
    not grow with the batch (the weights' gradients, work arrays of a fixed size) does not count. The gradients it
    leaves are overwritten by the next step, as every step's are."""
    def peak(n):
        x = np.zeros((n, image_size), dtype=vae.dtype)
        y = np.zeros(n, dtype=np.int64) if classes else None
        eps = np.zeros((n, vae.latent), dtype=vae.dtype)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        with np.errstate(all="ignore"):  # (an absurd --beta overflows here too: training says so, in one line)
            vae.weighted_step(x, 1.0 / n, y, eps=eps)
        return tracemalloc.get_traced_memory()[1] - before

    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        return max(peak(large) - peak(small), 0) / (large - small)
    finally:
        if not started:
            tracemalloc.stop()


# bytes_per_row overstates a full batch's step, by less than this for each kind of model (docs/faults.md has the
# measurement): a step is refused when even the estimate divided by it is more than the machine has.
OVERSTATED = 2


def check_step(vae, rows, classes, image_size, keys):
    """Raise DoesNotFit (naming `keys`) when a training step on `rows` images (K * batch for K samples) could never
    fit in the machine's memory: rows times bytes_per_row, divided by OVERSTATED, is more than it has. On Linux an
    array too large is granted and fails only when written, killing the process mid-step without a word; this
    says so before training. (A step between that bound and the memory that is free can still be killed.) NumPy
    only: CuPy's allocator refuses at once."""
    total = None if backend.is_gpu() else total_memory()
    if total is None:
        return
    needed = bytes_per_row(vae, classes, image_size) * rows / OVERSTATED
    if needed > total:
        raise DoesNotFit(f"a training step on {rows:,} rows of images needs at least {_gib(needed)} of memory and "
                         f"this machine has {_gib(total)}", keys)


def _gib(size):
    return f"{size / 2**30:,.0f} GiB" if size >= 10 * 2**30 else f"{size / 2**30:.2g} GiB"
