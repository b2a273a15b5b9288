"""minivae: a variational autoencoder in NumPy with every gradient written by hand.

The folders are the layers of the design, each using only the ones listed before it (bench/, the last, also
drives the commands it times):

    core/      the math: NumPy or CuPy, layers, the sampler and KL, losses, optimizers, convolutions
    models/    the VAE (optionally conditioned on a class), the K-sample objectives, the convnet, M2
    checks/    every backward against finite differences
    run/       a training run: config, data, seeds, the loop, checkpoints, scores
    figures/   pictures of what a model learned, and the explorer page
    bench/     how fast it is, against PyTorch

and the commands beside them: train.py, evaluate.py, explore.py, gradcheck.py (and bench/__main__.py), with cli.py and
faults.py, what they share. The README's reading order follows the folders.
"""

import os

__version__ = "0.2.1"

# Read by OpenBLAS when NumPy loads it, so it must come first: after each matrix product OpenBLAS's idle
# threads then sleep at once instead of spinning on the core that minivae's elementwise threads need next
# (core/threads.py; docs/speed.md has what it measured).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
