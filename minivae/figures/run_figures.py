"""The figures a training run writes into its folder, drawn with plots.py from a trained model.

`write_figures` draws the standard set: reconstructions, samples, loss curves, the latent scatter and
histograms, an interpolation, the progress GIFs (from the frames the loop kept after every epoch: run/progress.py),
and the 2-D manifold when the latent space has two dimensions. A model that uses labels (kinds.py: a conditional
VAE, or M2's) gets its own set, `write_labelled_figures`: reconstructions with the true classes and a grid of one
row per class.
"""

from pathlib import Path

import numpy as np

from minivae.core import backend
from minivae.figures import class_rows, plots
from minivae.run import seeds
from minivae.run.progress import PROGRESS_IMAGES, as_uint8

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
ENCODE_BATCH = 1000  # examples per encoder pass: no gradients, so big batches are fine


def class_names(dataset_name):
    """Names for the labels in plot legends: Fashion-MNIST's garments; None (the digits) otherwise."""
    return FASHION_CLASSES if dataset_name == "fashion-mnist" else None


def host_decoder(model):
    """model.decode as plots wants it, on either backend: NumPy float32 z (n, latent) in, NumPy pixel means
    (n, D) out."""
    return lambda z: backend.to_numpy(model.decode(backend.to_device(z)))


def encoder_means(model, x, y=None, batch_size=ENCODE_BATCH):
    """mu(x) (with classes: mu(x, y)) for every row of x (host array), as a NumPy (N, latent) array."""
    return np.concatenate([
        backend.to_numpy(model.encode(backend.to_device(x[start:start + batch_size]),
                                      None if y is None else y[start:start + batch_size])[0])
        for start in range(0, len(x), batch_size)])


# Every file write_figures may write, whatever the model: the training command refuses a folder that holds one of
# them (a file it did not write), before training.
FIGURES = ("reconstructions.png", "samples.png", "loss_curves.png", "latent_scatter.png", "latent_histograms.png",
           "manifold.png", "interpolation.png", "class_grid.png", "progress_samples.gif",
           "progress_reconstructions.gif")


def drawn_by_minivae(path):
    """Whether the file at `path` may be a figure write_figures drew, so that a run resumed in its folder may draw
    it again: a PNG that Matplotlib wrote (its Software text chunk names it) or a GIF (Pillow's GIF writer names
    no one, so any GIF passes). A link, a folder, a pipe or any other file is not: it is left as it is."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    if path.suffix == ".png":
        return head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00Matplotlib" in head
    return path.suffix == ".gif" and head.startswith(b"GIF89a")


def write_figures(model, kind, dataset, history, frames, folder, seed):
    """The standard set of figures for a trained model (kind: its row of kinds.KINDS), into folder. Returns the
    paths written.

    frames: {"samples": [uint8 (64, 784) per epoch], "reconstructions": [uint8 (16, 784) per epoch]}.
    """
    folder = Path(folder)
    if kind.conditioned:
        return write_labelled_figures(model, kind, dataset, history, frames, folder, seed)
    x, y = dataset.x_test, dataset.y_test
    decode = host_decoder(model)
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
    return paths + progress_gifs(x, history, frames, folder)


def progress_gifs(x_test, history, frames, folder):
    """The two progress GIFs, one frame per epoch: the same z decoded, and test images above their
    reconstructions. Returns the paths written (none without frames)."""
    paths = []
    epochs = [h["epoch"] for h in history]
    originals = as_uint8(x_test[:PROGRESS_IMAGES])
    gifs = (("samples", "the same z decoded", (5.0, 5.5)),  # 8 x 8 images
            ("reconstructions", "test images above reconstructions", (6.0, 3.75)))  # 4 rows of 8
    for name, title, figsize in gifs:
        if frames.get(name):  # one frame per epoch, 8 images a row
            shown = [np.concatenate([originals, f]) if name == "reconstructions" else f for f in frames[name]]
            tiles = [plots.tile(f.astype(np.float32) / 255, 8) for f in shown]
            titles = [f"{title}\nafter epoch {e}" for e in epochs] if len(epochs) == len(tiles) else None
            paths.append(plots.progress_gif(tiles, folder / f"progress_{name}.gif", titles=titles, figsize=figsize))
    return paths


def write_labelled_figures(model, kind, dataset, history, frames, folder, seed):
    """The figures of a model that uses labels (a conditional VAE, or M2's): reconstructions with the true
    classes, class_grid.png (one row per class, the same z down each column), the loss curves (not M2's: its loss
    has other parts), the GIFs."""
    cvae = kind.vae_of(model)
    x, y = dataset.x_test, dataset.y_test
    recon = cvae.reconstruct(backend.to_device(x[:10]), y[:10])
    paths = [plots.reconstructions(x[:10], backend.to_numpy(recon), folder / "reconstructions.png")]
    z = backend.to_device(seeds.generator(seed, seeds.SAMPLES).standard_normal((10, cvae.latent), dtype=np.float32))
    rows = [backend.to_numpy(cvae.decode(z, np.full(10, c))) for c in range(cvae.classes)]
    names = class_names(dataset.name) or [str(c) for c in range(cvae.classes)]
    paths.append(class_rows.image_rows(rows, names, folder / "class_grid.png",
                                       title="One row per class, the same z down each column"))
    if history and not kind.semi_supervised:
        paths.append(plots.loss_curves(history, folder / "loss_curves.png"))
    return paths + progress_gifs(x, history, frames, folder)
