"""Where every random number of a run comes from: one generator per (seed, epoch, purpose).

A run never draws from a generator shared across purposes. Each purpose below gets its own NumPy generator,
seeded by the run's seed, the epoch (0 for what is the same at every epoch) and the purpose's number:

    weights                 default_rng(seed)                   the initial weights
    ORDER                   default_rng([seed, epoch, 0])       epoch e's shuffle of the training set
    NOISE                   default_rng([seed, epoch, 1])       epoch e's noise, binarization, M2's labelled batches
    TEST_NOISE              default_rng([seed, 0, 2])           the sampler noise of every test-loss evaluation
    IMPORTANCE              seeded from (seed, 0, 3)            the importance samples of the log-likelihood
    SAMPLES                 default_rng([seed, 0, 4])           the z of the final samples figure
    FIXED_Z                 default_rng([seed, 0, 5])           the z decoded after every epoch (progress GIF)
    LABELS                  default_rng([seed, 0, 6])           which training images keep their labels
    data_generators(seed)   SeedSequence(seed).spawn(3)         the validation split, and the one binary draw of
                                                                the test and of the validation images (data.py)

So nothing depends on what ran earlier in the process: a run resumed from a checkpoint (which stores the
epoch, the step, and the NOISE generator's state) draws exactly what a run that never stopped would have, and
epoch 3's test loss differs from epoch 4's only because the model changed. The draws are made on the host
with NumPy and copied to the device, so a GPU run sees the same numbers as a CPU run (the importance samples
are the exception: they are drawn on the device, see `device_generator`).
"""

import numpy as np

from minivae.core import backend

ORDER, NOISE = 0, 1  # per epoch e >= 1
TEST_NOISE, IMPORTANCE, SAMPLES, FIXED_Z, LABELS = 2, 3, 4, 5, 6  # epoch 0: the same at every epoch


def weights(seed):
    """The generator that draws a model's initial weights."""
    return np.random.default_rng(seed)


def generator(seed, purpose, epoch=0):
    """The host (NumPy) generator for one purpose: the same every time it is asked for."""
    return np.random.default_rng([seed, epoch, purpose])


def device_generator(seed, purpose, epoch=0):
    """A generator of the backend in use (NumPy or CuPy) for one purpose, seeded with one integer: the (seed,
    epoch, purpose) triple hashed into one by NumPy's SeedSequence (both backends' default_rng take it alike)."""
    return backend.default_rng(int(np.random.SeedSequence([seed, epoch, purpose]).generate_state(1)[0]))


def data_generators(seed):
    """The three generators data.py draws from when it loads a dataset: (the validation split, the test images'
    binary draw, the validation images' binary draw), children of SeedSequence(seed). (They predate the
    [seed, epoch, purpose] scheme above; changing them would change the test set of every binarized run.)"""
    return tuple(np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3))
