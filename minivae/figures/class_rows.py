"""Pictures of models that use labels (a conditional VAE, M2): rows of images, each row named.

    image_rows     one labelled row of images per class: a conditional VAE's samples with the same z down each
                   column (style held, class changed), or an image's style moved to every class

Like plots.py: NumPy arrays in (flattened rows of pixels in [0, 1], or already (n, 28, 28)), one file written
atomically, the pathlib.Path returned.
"""

from pathlib import Path

from minivae.figures.plots import DPI, IMAGE_SHAPE, _as_images, _figure, _show


def image_rows(rows, row_labels, path, title=None, image_shape=IMAGE_SHAPE, figsize=None, dpi=DPI):
    """A grid with one row per entry of `rows`, its label written to its left.

    rows: (R, n, h*w) or a list of R arrays of n images each; row_labels: R strings. Pixel values in [0, 1].
    """
    rows = [_as_images(row, image_shape) for row in rows]
    if len(rows) != len(row_labels):
        raise ValueError(f"{len(rows)} rows of images but {len(row_labels)} row labels")
    n = len(rows[0])
    if n == 0 or any(len(row) != n for row in rows):
        raise ValueError(f"every row needs the same number of images, at least one; got {[len(r) for r in rows]}")
    # in quarter inches, so that figsize * dpi is a whole number of pixels
    with _figure(path, figsize or (0.75 * n + 1.5, 0.75 * len(rows) + 0.75), dpi) as fig:
        axes = fig.subplots(len(rows), n, squeeze=False)
        for r, (row, label) in enumerate(zip(rows, row_labels)):
            for c, image in enumerate(row):
                _show(axes[r, c], image)
            axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
        height = fig.get_size_inches()[1]
        fig.subplots_adjust(left=1.3 / fig.get_size_inches()[0], right=0.98, bottom=0.1 / height,
                            top=1 - 0.6 / height, wspace=0.05, hspace=0.05)
        if title:
            fig.suptitle(title, fontsize=10)
    return Path(path)
