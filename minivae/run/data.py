"""MNIST and Fashion-MNIST as NumPy arrays: reading the files, binarizing, and cutting batches.

Both datasets come as four gzip-compressed IDX files (a tiny binary format: a magic number, the dimensions,
then the raw uint8 values): 60,000 training and 10,000 test images of 28x28 pixels, and their labels.
`load` reads them (download.py finds the files, or downloads them) into a Dataset of (N, 784) float32 images
in [0, 1]; `batches` cuts an epoch into shuffled index batches; `binarize_batch` draws binary images.

Everything here returns NumPy arrays; the training loop moves batches to the device itself. Every problem
with the data raises DataError, whose message is one line saying what is wrong and what to do.
"""

import gzip
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from minivae.run import download as downloads
from minivae.run import seeds
from minivae.run.download import DATASETS, FILES, DataError
from minivae.run.files import one_line

__all__ = ["BINARIZE", "DATASETS", "DataError", "Dataset", "batches", "binarize_batch", "load", "read_idx",
           "tiny_dataset", "write_idx"]

BINARIZE = ("none", "threshold", "dynamic")
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels (1 dimension), images (3 dimensions); dtype byte 0x08 = uint8


# ---------------------------------------------------------------- IDX files

def read_idx(path):
    """Read a gzip-compressed IDX file into a uint8 array: (N,) for labels, (N, rows, cols) for images.

    The array is a read-only view of the decompressed bytes. Raises DataError if the file is not gzip, has a
    wrong magic number, or holds fewer or more bytes than its header promises.
    """
    fix = "delete it to download again, or replace it with a good copy"
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a cut-off stream is an EOFError
        raise DataError(f"{path}: not a readable gzip file ({one_line(err)}); {fix}") from None
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes); {fix}")
    (magic,) = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if _IDX_MAGIC.get(ndim) != magic:
        raise DataError(f"{path}: magic number 0x{magic:08x} is neither 0x00000803 (images) nor 0x00000801 "
                        f"(labels); {fix}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: header cut short ({len(data)} bytes); {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise DataError(f"{path}: header promises {expected} values of shape {dims} but the file holds "
                        f"{len(data) - header} (truncated or corrupt); {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path, array):
    """Write a uint8 array of 1 (labels) or 3 (images) dimensions as a gzip IDX file that read_idx accepts."""
    array = np.asarray(array)
    if array.ndim not in _IDX_MAGIC:
        raise ValueError(f"IDX files here hold 1-D labels or 3-D images, not shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(f"IDX values must be integers in 0..255, got dtype {array.dtype}")
        array = array.astype(np.uint8)
    header = struct.pack(f">I{array.ndim}I", _IDX_MAGIC[array.ndim], *array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime=0: the same array gives the same bytes
        f.write(header + np.ascontiguousarray(array).tobytes())


# ---------------------------------------------------------------- the dataset

@dataclass
class Dataset:
    """Images as (N, 784) float32 in [0, 1], labels as (N,) int64. x_val/y_val are None without a validation split.

    binarize says how the images were binarized: with "dynamic" the training images are still grayscale and
    the training loop draws binary ones for every batch with binarize_batch.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    binarize: str = "none"
    folder: str | None = None  # where the files were read from (None for a synthetic dataset)


def binarize_batch(x, rng):
    """Bernoulli(x) draws as x's dtype: each pixel is 1 with probability x. Works for NumPy and CuPy alike."""
    return (rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)


def _check_options(binarize, validation):
    if binarize not in BINARIZE:
        raise DataError(f"unknown binarization {binarize!r}; choose one of {', '.join(BINARIZE)}")
    if not 0.0 <= validation < 1.0:
        raise DataError(f"validation must be a fraction in [0, 1), got {validation}")


def _split_and_binarize(name, x_train, y_train, x_test, y_test, binarize, seed, validation):
    """Split a validation set off the training set and binarize, both reproducibly from `seed`."""
    _check_options(binarize, validation)
    split_rng, test_rng, val_rng = seeds.data_generators(seed)
    data = Dataset(name, x_train, y_train, x_test, y_test, binarize=binarize)
    if validation > 0:
        order = split_rng.permutation(len(x_train))
        n_val = int(round(validation * len(x_train)))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])  # sorted: keep the files' order
        data.x_val, data.y_val = x_train[val], y_train[val]
        data.x_train, data.y_train = x_train[train], y_train[train]
    if binarize == "threshold":
        for split in ("x_train", "x_test", "x_val"):
            if getattr(data, split) is not None:
                setattr(data, split, (getattr(data, split) > 0.5).astype(np.float32))
    elif binarize == "dynamic":  # evaluation sets are drawn once, so every evaluation sees the same pixels
        data.x_test = binarize_batch(data.x_test, test_rng)
        if data.x_val is not None:
            data.x_val = binarize_batch(data.x_val, val_rng)
    return data


def load(dataset, data_dir=None, download=True, binarize="none", seed=0, validation=0.0, test_only=False):
    """Load MNIST or Fashion-MNIST (download.py says where the files are looked for).

    dataset: "mnist" or "fashion-mnist". binarize: "none" (grayscale), "threshold" (x > 0.5) or "dynamic"
    (test and validation images drawn once as Bernoulli(x) with `seed`; training images left grayscale for
    binarize_batch). validation: the fraction of the training set split off, by a permutation seeded with
    `seed`. test_only: read only the two test files (the training arrays are then empty): all that evaluating
    a trained model needs. Returns a Dataset; raises DataError (one line) when the files cannot be found,
    fetched or read.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    _check_options(binarize, validation)  # before reading 50 MB, not after
    files = downloads.TEST_FILES if test_only else FILES
    folder = downloads.locate(dataset, data_dir, download, files)
    train_images, train_labels, test_images, test_labels = (folder / name for name in FILES)
    x_test, y_test = _read_pair(test_images, test_labels)
    if test_only:
        x_train, y_train = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    else:
        x_train, y_train = _read_pair(train_images, train_labels)
    data = _split_and_binarize(dataset, _to_unit(x_train), y_train.astype(np.int64), _to_unit(x_test),
                               y_test.astype(np.int64), binarize, seed, validation)
    data.folder = str(folder)
    return data


def _read_pair(image_path, label_path):
    """An images file and its labels file, checked against each other: (N, 28, 28) and (N,) uint8."""
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_path}: images of shape {images.shape[1:]}, expected 28x28; replace it with a "
                        f"good copy")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{label_path}: {len(labels)} labels for {len(images)} images in {image_path.name}; "
                        f"replace the pair with good copies")
    if len(images) == 0:
        raise DataError(f"{image_path}: the file holds no images; replace it with a good copy")
    if labels.max() > 9:
        raise DataError(f"{label_path}: label {int(labels.max())} is not a class 0-9; replace it with a good copy")
    return images, labels


def _to_unit(images):
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1]."""
    return images.reshape(len(images), 784).astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------- batches and a synthetic dataset

def batches(n, batch_size, rng=None):
    """Yield int64 index arrays covering range(n) once: in order if rng is None, else one permutation by
    rng (a NumPy Generator). Every batch has batch_size indices except perhaps the last."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.arange(n, dtype=np.int64) if rng is None else rng.permutation(n).astype(np.int64, copy=False)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def tiny_dataset(n_train=64, n_test=32, seed=0, binarize="none", validation=0.0):
    """A deterministic synthetic Dataset of 28x28 images, for tests and quick demos: no files needed.

    Classes 0-4 are a blurred stroke at one of five angles (0, 36, ..., 144 degrees); classes 5-9 a blurred
    blob at the centre or towards one of four corners. Positions and angles jitter a little per image.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = np.arange(n, dtype=np.int64) % 10  # balanced classes in both splits
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float32)
    centre = 13.5 + rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    dr = rows - centre[:, 0, None, None]  # (n, 28, 28): offset of every pixel from the image's centre
    dc = cols - centre[:, 1, None, None]
    angle = np.pi * (y % 5) / 5 + rng.uniform(-0.15, 0.15, n)
    ur, uc = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    along = np.clip(dr * ur + dc * uc, -8, 8)  # position along the 16-pixel segment, clipped to its ends
    stroke = np.exp(-((dr - along * ur) ** 2 + (dc - along * uc) ** 2) / (2 * 1.2**2))
    offsets = np.array([[0, 0], [-6, -6], [-6, 6], [6, -6], [6, 6]], dtype=np.float32)[y % 5]
    blob = np.exp(-((dr - offsets[:, 0, None, None]) ** 2 + (dc - offsets[:, 1, None, None]) ** 2) / (2 * 2.5**2))
    x = np.where((y < 5)[:, None, None], stroke, blob).reshape(n, 784).astype(np.float32)
    return _split_and_binarize("tiny", x[:n_train], y[:n_train], x[n_train:], y[n_train:], binarize, seed,
                               validation)
