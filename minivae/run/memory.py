"""When sizes do not fit in memory: how NumPy says so, and the error that names what to make smaller.

An array too big to allocate is a MemoryError, or, for sizes past what NumPy can index at all, a ValueError.
The library turns either into DoesNotFit, whose `keys` are the config keys (hidden, latent, batch_size, k,
eval_samples) a smaller value of which would fit; the commands name the options that set them.
"""

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
