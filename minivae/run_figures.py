"""The figures a training run writes into its folder, drawn with plots.py from a trained model.

After every epoch the training loop keeps two small frames for the progress GIFs (`progress_frames`): the same
64 z decoded, and the same 16 test images reconstructed. At the end, `write_figures` draws the standard set:
reconstructions, samples, loss curves, the latent scatter and histograms, an interpolation, the GIFs, and the
2-D manifold when the latent space has two dimensions.
"""

from pathlib import Path

import numpy as np

from minivae import backend, plots, seeds

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
PROGRESS_SAMPLES, PROGRESS_IMAGES = 64, 16  # per progress-GIF frame: decoded fixed z, reconstructed test images
ENCODE_BATCH = 1000  # examples per encoder pass: no gradients, so big batches are fine


def class_names(dataset_name):
    """Names for the labels in plot legends: Fashion-MNIST's garments; None (the digits) otherwise."""
    return FASHION_CLASSES if dataset_name == "fashion-mnist" else None


def _decoder(model):
    """model.decode as plots wants it: NumPy float32 z in, NumPy pixel means out."""
    return lambda z: backend.to_numpy(model.decode(backend.to_device(z)))


def _as_uint8(images):
    return np.round(np.clip(backend.to_numpy(images), 0, 1) * 255).astype(np.uint8)


def progress_frames(model, x_test, seed):
    """What the progress GIFs show after one epoch: the same z decoded, and the same test images
    reconstructed, as uint8 (n, 784) arrays (small enough to keep every epoch's in the checkpoint)."""
    z = seeds.generator(seed, seeds.FIXED_Z).standard_normal((PROGRESS_SAMPLES, model.latent), dtype=np.float32)
    recon = model.reconstruct(backend.to_device(x_test[:PROGRESS_IMAGES]))
    return {"samples": _as_uint8(model.decode(backend.to_device(z))), "reconstructions": _as_uint8(recon)}


def encoder_means(model, x, batch_size=ENCODE_BATCH):
    """mu(x) for every row of x (host array), as a NumPy (N, latent) array."""
    return np.concatenate([backend.to_numpy(model.encode(backend.to_device(x[start:start + batch_size]))[0])
                           for start in range(0, len(x), batch_size)])


def write_figures(model, dataset, history, frames, folder, seed):
    """The standard set of figures for a trained model, into folder. Returns the paths written.

    frames: {"samples": [uint8 (64, 784) per epoch], "reconstructions": [uint8 (16, 784) per epoch]}.
    """
    folder = Path(folder)
    x, y = dataset.x_test, dataset.y_test
    decode = _decoder(model)
    names = class_names(dataset.name)
    paths = [plots.reconstructions(x[:10], backend.to_numpy(model.reconstruct(backend.to_device(x[:10]))),
                                   folder / "reconstructions.png")]
    z = seeds.generator(seed, seeds.SAMPLES).standard_normal((100, model.latent), dtype=np.float32)
    paths.append(plots.image_grid(decode(z), folder / "samples.png",
                                  title="100 samples: z ~ N(0, I), decoded (pixel means)"))
    if history:
        paths.append(plots.loss_curves(history, folder / "loss_curves.png"))
    means = encoder_means(model, x)
    if model.latent >= 2:
        paths.append(plots.latent_scatter(means, y, folder / "latent_scatter.png", class_names=names))
    paths.append(plots.latent_histograms(means, folder / "latent_histograms.png"))
    if model.latent == 2:
        paths.append(plots.manifold(decode, folder / "manifold.png"))
    other = int(np.argmax(y != y[0]))  # the first test image of another class than image 0 (or 0 itself)
    paths.append(plots.interpolation(decode, means[0], means[other], folder / "interpolation.png"))
    epochs = [h["epoch"] for h in history]
    originals = _as_uint8(x[:PROGRESS_IMAGES])
    gifs = (("samples", "the same z decoded", (5.0, 5.5)),  # 8 x 8 images
            ("reconstructions", "test images above reconstructions", (6.0, 3.75)))  # 4 rows of 8
    for name, title, figsize in gifs:
        if frames.get(name):  # one frame per epoch, 8 images a row
            shown = [np.concatenate([originals, f]) if name == "reconstructions" else f for f in frames[name]]
            tiles = [plots.tile(f.astype(np.float32) / 255, 8) for f in shown]
            titles = [f"{title}\nafter epoch {e}" for e in epochs] if len(epochs) == len(tiles) else None
            paths.append(plots.progress_gif(tiles, folder / f"progress_{name}.gif", titles=titles, figsize=figsize))
    return paths
