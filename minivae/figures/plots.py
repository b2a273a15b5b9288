"""Pictures of a trained VAE, each a plain function that takes NumPy arrays and writes one image file.

What they show, in the order a lesson might use them:

    reconstructions     test images above what the VAE makes of them (encode, then decode)
    image_grid          new images decoded from z ~ N(0, I), i.e. samples of the generative model
    manifold            a 2-D slice of latent space decoded on a grid: how images change as z moves
    latent_scatter(_3d) where the encoder puts each class (on principal components, pca.py, when the latent
                        space has more dimensions)
    latent_histograms   each latent coordinate of the encoder means against the N(0, 1) prior
    loss_curves         training and test loss per epoch, with the reconstruction and KL terms apart
    interpolation(_gif) decoding the straight line between two latent points
    progress_gif        the same latent points decoded after every epoch, as an animation
    score_extremes      for anomaly detection: the images the model finds most and least surprising

Images are flattened rows of pixels in [0, 1] (n, 784), or already (n, 28, 28); `image_shape` says how to
fold them. A `decode` argument is any callable taking a (n, latent_dim) float32 NumPy array and returning
(n, 784) pixel means in [0, 1]. Every function returns the pathlib.Path it wrote.

Files are written atomically: the figure goes to a hidden temporary file in the target folder, which is then
renamed over the target, so an interrupted run never leaves a half-written image. Figures are drawn with the
Agg backend (no display needed) and closed after saving. Every function takes `figsize` (inches) and `dpi`; the
image has figsize * dpi pixels (defaults are in quarter inches, so that this is a whole number).

matplotlib and scipy are imported inside the functions that use them: together they take one to two seconds
to import, which every command would otherwise pay before it even shows its --help.
"""

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from minivae.core.backend import to_numpy
from minivae.figures.pca import pca
from minivae.run.files import atomic_path

DPI = 100
IMAGE_SHAPE = (28, 28)


# ---------------------------------------------------------------- helpers: files, figures, image tiles


@contextmanager
def _figure(path, figsize, dpi):
    """A new figure to draw on, saved (atomically) to `path` unless that is None.

    A bare matplotlib Figure, not pyplot: it renders to files with no display and no GUI backend, and it
    leaves the user's own pyplot state alone (a notebook's inline plots keep working after importing us).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    yield fig
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)


def _as_images(images, image_shape):
    """(n, h*w) or (n, h, w) -> float NumPy array (n, h, w)."""
    return np.asarray(to_numpy(images), dtype=float).reshape(-1, *image_shape)


def tile(images, ncols, image_shape=IMAGE_SHAPE):
    """Lay images out in a grid, row by row, as one 2-D array.

    images: (n, h*w) or (n, h, w). Returns (nrows * h, cols * w) with cols = min(ncols, n) and
    nrows = ceil(n / cols); cells left over in the last row are 0 (black).
    """
    images = _as_images(images, image_shape)
    n, (h, w) = len(images), image_shape
    if n == 0:
        raise ValueError("tile needs at least one image")
    cols = min(ncols, n)
    nrows = -(-n // cols)  # ceiling division
    padded = np.zeros((nrows * cols, h, w))
    padded[:n] = images
    # (nrows, cols, h, w) -> (nrows, h, cols, w): pixel row r of grid row i sits at i*h + r
    return padded.reshape(nrows, cols, h, w).transpose(0, 2, 1, 3).reshape(nrows * h, cols * w)


def _show(ax, image):
    """Draw one grayscale image with pixel values 0 = black, 1 = white, and no ticks."""
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _two_rows(fig, top, bottom, row_labels, titles=(None, None)):
    """Two rows of images, one axes each, with a label to the left of each row and optional titles."""
    axes = fig.subplots(2, len(top), squeeze=False)
    for r, (row, label) in enumerate(zip((top, bottom), row_labels, strict=True)):
        for c, image in enumerate(row):
            _show(axes[r, c], image)
            if titles[r] is not None:
                axes[r, c].set_title(titles[r][c], fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=9)
    return axes


def _decode(decode, z, image_shape):
    """Call decode on float32 z (n, latent_dim) and fold its (n, h*w) output into images (n, h, w)."""
    return _as_images(decode(np.asarray(z, dtype=np.float32)), image_shape)


# ---------------------------------------------------------------- images


def reconstructions(x, x_rec, path, n=10, image_shape=IMAGE_SHAPE, figsize=None, dpi=DPI):
    """The first n test images (top row) above their reconstructions (bottom row).

    x, x_rec: (N, h*w) or (N, h, w) with N >= n, pixel values in [0, 1].
    """
    x, x_rec = _as_images(x, image_shape)[:n], _as_images(x_rec, image_shape)[:n]
    with _figure(path, figsize or (0.75 * len(x) + 0.75, 2.75), dpi) as fig:
        _two_rows(fig, x, x_rec, ("original", "reconstruction"))
        fig.suptitle("Test images (top) and the VAE's reconstructions of them (bottom)")
    return Path(path)


def image_grid(images, path, ncols=10, title=None, image_shape=IMAGE_SHAPE, figsize=None, dpi=DPI):
    """Images in a grid of ncols columns, e.g. samples decoded from z ~ N(0, I).

    images: (n, h*w) or (n, h, w), pixel values in [0, 1].
    """
    grid = tile(images, ncols, image_shape)
    rows, cols = grid.shape[0] // image_shape[0], grid.shape[1] // image_shape[1]
    with _figure(path, figsize or (0.5 * cols + 0.5, 0.5 * rows + 0.75), dpi) as fig:
        _show(fig.add_subplot(), grid)
        top = 1 - 0.5 / fig.get_size_inches()[1]  # 0.5 inch for the title, little margin elsewhere
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top)
        fig.suptitle(title or f"{len(images)} images")
    return Path(path)


def manifold(decode, path, n=15, latent_dim=2, dims=(0, 1), quantiles=(0.05, 0.95), image_shape=IMAGE_SHAPE,
             figsize=(8.0, 8.5), dpi=DPI):
    """Decode an n x n grid of latent points, varying two latent dimensions, as one big image.

    Along each of the two dims z takes the values norm.ppf(linspace(q0, q1, n)): evenly spaced in
    probability under the N(0, 1) prior, so the grid covers where the prior puts its mass. All other latent
    coordinates are 0. Columns go along z[dims[0]] (left to right), rows along z[dims[1]] (bottom to top).
    decode is called once with a float32 array of shape (n * n, latent_dim).
    """
    d0, d1 = dims
    if d0 == d1 or not (0 <= d0 < latent_dim and 0 <= d1 < latent_dim):
        raise ValueError(f"dims must be two different latent dimensions below latent_dim={latent_dim}, got {dims}")
    from scipy import stats

    values = stats.norm.ppf(np.linspace(quantiles[0], quantiles[1], n))
    labels = [f"{v:.2f}" for v in np.round(values, 2) + 0.0]  # + 0.0 turns -0.0 into 0.0
    z = np.zeros((n, n, latent_dim))
    z[:, :, d0] = values[None, :]  # column j has z[d0] = values[j]
    z[:, :, d1] = values[::-1, None]  # row i (from the top) has z[d1] = values[n - 1 - i]: big values on top
    images = _decode(decode, z.reshape(n * n, latent_dim), image_shape)
    h, w = image_shape
    with _figure(path, figsize, dpi) as fig:
        ax = fig.add_subplot()
        ax.imshow(tile(images, n, image_shape), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(w * np.arange(n) + (w - 1) / 2, labels, rotation=90)
        ax.set_yticks(h * np.arange(n) + (h - 1) / 2, labels[::-1])
        ax.set_xlabel(f"z[{d0}]")
        ax.set_ylabel(f"z[{d1}]")
        others = " (all other latent dimensions 0)" if latent_dim > 2 else ""
        ax.set_title(f"Images decoded over a grid of latent values{others}")
    return Path(path)


def score_extremes(images, scores, path, n=8, image_shape=IMAGE_SHAPE, figsize=None, dpi=DPI):
    """The n lowest-scored images (top row, lowest first) and the n highest (bottom row, highest first).

    images: (N, h*w) or (N, h, w); scores: (N,) anomaly scores, higher = more unusual to the model (for
    instance the negative ELBO of each image). Each image is titled with its score.
    """
    images, scores = _as_images(images, image_shape), np.asarray(to_numpy(scores), dtype=float).ravel()
    n = min(n, len(images))
    order = np.argsort(scores, kind="stable")
    low, high = order[:n], order[::-1][:n]
    titles = ([f"{s:.3g}" for s in scores[low]], [f"{s:.3g}" for s in scores[high]])
    with _figure(path, figsize or (1.0 * n + 0.75, 3.0), dpi) as fig:
        _two_rows(fig, images[low], images[high], ("lowest scores", "highest scores"), titles)
        fig.suptitle("Anomaly scores: the lowest (top row) and the highest (bottom row)")
    return Path(path)


# ---------------------------------------------------------------- latent space


def _latent_points(means, k, what):
    """means (N, d) -> (points (N, k), axis names, title). PCA only when d > k."""
    means = np.asarray(to_numpy(means), dtype=float)
    d = means.shape[1]
    if d < k:
        raise ValueError(f"a {k}-D latent plot needs at least {k} latent dimensions, the means have {d}")
    if d == k:
        return means, [f"z[{i}]" for i in range(k)], f"{what} of test images in latent space"
    points, explained = pca(means, k)
    title = (f"{what} ({d}-D) projected on their first {k} principal components\n"
             f"({100 * explained.sum():.0f}% of the variance shown)")
    return points, [f"PC {i + 1} ({100 * e:.0f}%)" for i, e in enumerate(explained)], title


def _scatter_by_class(ax, points, labels, class_names):
    """Scatter points (N, 2 or 3) with one colour and one legend entry per class label."""
    if labels is None:
        ax.scatter(*points.T, s=4, alpha=0.6)
        return
    labels = np.asarray(to_numpy(labels)).ravel()
    classes = np.unique(labels)
    import matplotlib

    cmap = matplotlib.colormaps.get_cmap("tab10" if len(classes) <= 10 else "viridis")
    for i, c in enumerate(classes):
        colour = cmap(i if len(classes) <= 10 else i / (len(classes) - 1))
        name = str(c) if class_names is None else str(class_names[c])
        ax.scatter(*points[labels == c].T, s=4, alpha=0.6, color=colour, label=name)
    ax.figure.legend(title="class", markerscale=3, fontsize=8, loc="center right")
    ax.figure.subplots_adjust(right=0.85)  # room for the legend on the right


def _latent_scatter(means, labels, path, class_names, k, what, figsize, dpi):
    points, axis_names, title = _latent_points(means, k, what)
    with _figure(path, figsize, dpi) as fig:
        ax = fig.add_subplot(projection="3d" if k == 3 else None)  # "3d" comes from mpl_toolkits.mplot3d
        _scatter_by_class(ax, points, labels, class_names)
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
        if k == 3:
            ax.set_zlabel(axis_names[2])
        ax.set_title(title)
    return Path(path)


def latent_scatter(means, labels, path, class_names=None, what="Encoder means", figsize=(8.0, 6.5), dpi=DPI):
    """Scatter of encoder means coloured by class: directly for a 2-D latent space, else its first 2 PCs.

    means: (N, d) with d >= 2; labels: (N,) integer classes or None; class_names: indexable by a label value;
    what: what the points are, for the title (an autoencoder's codes are no means).
    """
    return _latent_scatter(means, labels, path, class_names, 2, what, figsize, dpi)


def latent_scatter_3d(means, labels, path, class_names=None, what="Encoder means", figsize=(8.0, 7.0), dpi=DPI):
    """latent_scatter in 3-D (mplot3d): directly for a 3-D latent space, else the first 3 principal components."""
    return _latent_scatter(means, labels, path, class_names, 3, what, figsize, dpi)


def latent_histograms(means, path, n=10, ncols=5, figsize=None, dpi=DPI):
    """Histograms (as densities) of the first n latent coordinates of the encoder means, with the N(0, 1) curve.

    means: (N, d); min(n, d) panels, ncols per row. Expect the means to be narrower than the prior: each
    image's posterior also has its own spread, and the prior matches the means and that spread together.
    """
    from scipy import stats

    means = np.asarray(to_numpy(means), dtype=float)
    n = min(n, means.shape[1])
    cols = min(ncols, n)
    rows = -(-n // cols)
    with _figure(path, figsize or (2.5 * cols + 0.5, 2.25 * rows + 0.5), dpi) as fig:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for i, ax in enumerate(axes):
            if i >= n:
                ax.set_visible(False)
                continue
            m = means[:, i]
            edge = max(4.0, np.abs(m).max())
            ax.hist(m, bins=40, range=(-edge, edge), density=True, color="tab:blue", alpha=0.7, label="means")
            grid = np.linspace(-edge, edge, 200)
            ax.plot(grid, stats.norm.pdf(grid), color="black", label="N(0, 1)")
            ax.set_title(f"z[{i}]: mean {m.mean():.2f}, std {m.std():.2f}", fontsize=9)
        axes[0].legend(fontsize=8)
        fig.suptitle("Encoder means per latent dimension (histogram) against the N(0, 1) prior (curve)")
        fig.tight_layout()
    return Path(path)


# ---------------------------------------------------------------- training


def loss_curves(history, path, figsize=(13.0, 4.0), dpi=DPI):
    """Loss per epoch in three panels: total loss, reconstruction term, KL term; train and test in each.

    history: list of per-epoch dicts {"epoch": 1, "train": {"loss", "recon", "kl"}, "test": {...}, ...}.
    "test" may be missing or None in some or all epochs; "epoch" defaults to 1, 2, ...
    """
    if not history:
        raise ValueError("loss_curves needs a history of at least one epoch")
    from matplotlib.ticker import MaxNLocator

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    panels = [("loss", "Total loss"), ("recon", "Reconstruction term"), ("kl", "KL term (to the N(0, I) prior)")]
    with _figure(path, figsize, dpi) as fig:
        for ax, (key, title) in zip(fig.subplots(1, 3), panels, strict=True):
            for split, style in (("train", "-o"), ("test", "--s")):
                points = [(e, h[split][key]) for e, h in zip(epochs, history, strict=True) if h.get(split)]
                if points:  # epochs without this split (e.g. no test run that epoch) are left out
                    ax.plot(*zip(*points, strict=True), style, markersize=3, label=split)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
            ax.set_ylabel("loss (lower is better)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle("Training progress: the loss is the reconstruction term plus the KL term")
        fig.tight_layout()
    return Path(path)


# ---------------------------------------------------------------- interpolation and animations


def _line(z_start, z_end, steps):
    """t (steps,) from 0 to 1 and the points (1 - t) z_start + t z_end, shape (steps, latent_dim)."""
    z_start = np.asarray(to_numpy(z_start), dtype=float).ravel()
    z_end = np.asarray(to_numpy(z_end), dtype=float).ravel()
    t = np.linspace(0.0, 1.0, steps)
    return t, (1 - t[:, None]) * z_start + t[:, None] * z_end


def interpolation(decode, z_start, z_end, path, steps=10, image_shape=IMAGE_SHAPE, figsize=None, dpi=DPI):
    """A strip of `steps` images decoded along the straight line from z_start (left) to z_end (right).

    z_start, z_end: (latent_dim,). decode is called once with (steps, latent_dim) float32.
    """
    t, z = _line(z_start, z_end, steps)
    images = _decode(decode, z, image_shape)
    with _figure(path, figsize or (0.75 * steps + 0.75, 2.0), dpi) as fig:
        ax = fig.add_subplot()
        _show(ax, tile(images, steps, image_shape))
        ax.set_xticks(image_shape[1] * np.arange(steps) + (image_shape[1] - 1) / 2, [f"{v:.2f}" for v in t])
        ax.set_xlabel("t in z = (1 - t) z_start + t z_end")
        ax.set_title("Decoding a straight line in latent space")
    return Path(path)


def _animate(frames, titles, path, fps, figsize, dpi):
    """Write 2-D images `frames` with one title each as a looping GIF."""
    with _figure(None, figsize, dpi) as fig:
        ax = fig.add_subplot()
        shown = ax.imshow(frames[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_axis_off()
        from matplotlib.animation import PillowWriter

        writer = PillowWriter(fps=fps)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with writer.saving(fig, tmp, dpi):
                for frame, title in zip(frames, titles, strict=True):
                    shown.set_data(frame)
                    ax.set_title(title)
                    writer.grab_frame()
        return Path(path)


def interpolation_gif(decode, z_start, z_end, path, steps=20, fps=10, image_shape=IMAGE_SHAPE, figsize=(3.0, 3.25),
                      dpi=DPI):
    """An animated GIF walking the straight line from z_start to z_end and back, looping forever.

    z_start, z_end: (latent_dim,). The GIF has 2 * steps - 2 frames (the two ends are not repeated, so the
    loop is smooth); decode is called once with (steps, latent_dim) float32.
    """
    t, z = _line(z_start, z_end, steps)
    images = _decode(decode, z, image_shape)
    order = list(range(steps)) + list(range(steps - 2, 0, -1))  # there, then back without repeating the ends
    return _animate([images[i] for i in order], [f"t = {t[i]:.2f}" for i in order], path, fps, figsize, dpi)


def progress_gif(frames, path, titles=None, fps=2, figsize=(5.0, 5.5), dpi=DPI):
    """An animated GIF of 2-D images, one frame each: e.g. `tile(decode(z_fixed), 8)` saved after every epoch.

    frames: list of 2-D arrays (H, W), all of one shape, values in [0, 1]; titles: one string per frame
    (default "frame 1 of N", ...).
    """
    frames = [np.asarray(to_numpy(f), dtype=float) for f in frames]
    if not frames or any(f.shape != frames[0].shape for f in frames):
        raise ValueError("progress_gif needs at least one frame, all of one shape")
    titles = titles or [f"frame {i + 1} of {len(frames)}" for i in range(len(frames))]
    return _animate(frames, titles, path, fps, figsize, dpi)
