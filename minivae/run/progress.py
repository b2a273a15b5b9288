"""What a run keeps of every epoch for its progress GIFs: the same 64 z decoded and the same 16 test images
reconstructed, as small uint8 arrays that go into the checkpoint (figures/run_figures.py draws them at the end).

A model that uses labels (kinds.py) decodes z number i as class i mod K, and reconstructs with the true classes.
"""

import numpy as np

from minivae.core import backend
from minivae.run import seeds

PROGRESS_SAMPLES, PROGRESS_IMAGES = 64, 16  # per frame: decoded fixed z, reconstructed test images


def as_uint8(images):
    """Pixel values in [0, 1] (NumPy or CuPy) as uint8 on the host, 0-255."""
    return np.round(np.clip(backend.to_numpy(images), 0, 1) * 255).astype(np.uint8)


def progress_frames(model, kind, x_test, y_test, seed):
    """After one epoch: {"samples": the same z decoded, "reconstructions": the same test images reconstructed},
    uint8 (n, 784) arrays (small enough to keep every epoch's in the checkpoint)."""
    vae = kind.vae_of(model)
    z = backend.to_device(seeds.generator(seed, seeds.FIXED_Z).standard_normal((PROGRESS_SAMPLES, vae.latent),
                                                                               dtype=np.float32))
    x = backend.to_device(x_test[:PROGRESS_IMAGES])
    if kind.conditioned:
        samples = vae.decode(z, np.arange(PROGRESS_SAMPLES) % vae.classes)
        recon = vae.reconstruct(x, y_test[:PROGRESS_IMAGES])
    else:
        samples, recon = vae.decode(z), vae.reconstruct(x)
    return {"samples": as_uint8(samples), "reconstructions": as_uint8(recon)}
