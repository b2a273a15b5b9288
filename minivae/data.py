"""MNIST and Fashion-MNIST as NumPy arrays, found or downloaded safely.

Both datasets come as four gzip-compressed IDX files (a tiny binary format: a magic number, the dimensions,
then the raw uint8 values). `load` looks for a folder that holds all four files, in this order:

    1. the `data_dir` argument (the training command's --data-dir),
    2. the environment variable MINIVAE_DATA_DIR,
    3. the per-user cache, $XDG_CACHE_HOME/minivae/<dataset> (by default ~/.cache/minivae/<dataset>),
    4. for Fashion-MNIST, /usr/share/datasets/fashion-mnist (Debian's package dataset-fashion-mnist).

For 1 and 2 either the folder with the files or a parent with a `<dataset>/` subfolder will do. If no folder
has the files, the missing ones are downloaded into the cache from a list of mirrors. A download is streamed
into a temporary file next to its target, checked against the SHA-256 in `SHA256`, and only then renamed onto
the real name, so an interrupted or corrupted download never leaves a file that looks finished. Files found
locally are not checksummed (Debian re-compressed its copy, so its bytes differ from upstream's); `read_idx`
still checks that their structure is sound.

Everything here returns NumPy arrays; the training loop moves batches to the device itself. Every problem
with the data raises DataError, whose message is one line saying what is wrong and what to do.
"""

import gzip
import hashlib
import http.client
import math
import os
import struct
import sys
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion-mnist")
BINARIZE = ("none", "threshold", "dynamic")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")

# Tried in order; a file's URL is the mirror followed by its name.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

# SHA-256 of the files the mirrors serve. Fashion-MNIST's are the upstream files' (as listed by
# tensorflow/datasets and keras), not those of Debian's re-compressed copy.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # where `apt install dataset-fashion-mnist` puts the files
TIMEOUT = 30  # seconds a mirror may stay silent before we give up on it
urlopen = urllib.request.urlopen  # module attribute, so tests can swap in their own opener

_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels (1 dimension), images (3 dimensions); dtype byte 0x08 = uint8


class DataError(Exception):
    """The data cannot be found, downloaded or read (the one-line message says why and what to do)."""


def _one_line(err):
    """An exception's text on one line, for messages built around it."""
    return " ".join(str(err).split()) or type(err).__name__


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
        raise DataError(f"{path}: not a readable gzip file ({_one_line(err)}); {fix}") from None
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


# ---------------------------------------------------------------- finding the files

def cache_dir(dataset):
    """The per-user download folder: $XDG_CACHE_HOME/minivae/<dataset>, by default ~/.cache/minivae/<dataset>."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minivae" / dataset


def search_dirs(dataset, data_dir=None):
    """The folders `load` looks in, in order (the first that holds all four files wins)."""
    dirs = []
    for given in (data_dir, os.environ.get("MINIVAE_DATA_DIR")):
        if given:  # the folder with the files, or a parent with a <dataset>/ subfolder
            dirs += [Path(given), Path(given) / dataset]
    dirs.append(cache_dir(dataset))
    if dataset == "fashion-mnist":
        dirs.append(Path(DEBIAN_DIR))
    return dirs


def find_dir(dataset, data_dir=None):
    """The first of search_dirs that holds all four files, or None."""
    for folder in search_dirs(dataset, data_dir):
        if all((folder / name).is_file() for name in FILES):
            return folder
    return None


def _how_to_provide(dataset):
    ways = f"to provide the files, pass --data-dir DIR, set MINIVAE_DATA_DIR=DIR, or put them in {cache_dir(dataset)}"
    if dataset == "fashion-mnist":
        return ways + ", or run `apt install dataset-fashion-mnist`"
    return ways + ", or use --dataset fashion-mnist (Debian packages it: `apt install dataset-fashion-mnist`)"


# ---------------------------------------------------------------- downloading

def _fetch(url, target, sha256):
    """Stream `url` into a temporary file beside `target`; rename it onto `target` only if the checksum matches.

    Returns None on success or the reason for failure (one line). The temporary file is removed on every way out,
    including Ctrl-C, so nothing half-written is ever left under the real name or beside it.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=TIMEOUT) as response:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            return f"checksum mismatch (got sha256 {digest.hexdigest()[:12]}...)"
        os.replace(tmp, target)
        return None
    except (OSError, http.client.HTTPException, ValueError) as err:  # URLError and timeouts are OSErrors
        return _one_line(err)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_missing(dataset, folder=None):
    """Download the files `folder` (default: the cache folder) lacks, each checked against SHA256. Returns folder.

    Mirrors are tried in order for each file; a checksum mismatch or a network error moves on to the next.
    """
    folder = Path(folder) if folder is not None else cache_dir(dataset)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the download folder {folder} ({_one_line(err)}); "
                        f"{_how_to_provide(dataset)}") from None
    for name in FILES:
        target = folder / name
        if target.is_file():
            continue
        failures = []  # (url, reason)
        for mirror in MIRRORS[dataset]:
            url = mirror + name
            print(f"downloading {name} from {url} ...", file=sys.stderr, flush=True)
            failure = _fetch(url, target, SHA256[dataset][name])
            if failure is None:
                break
            failures.append((url, failure))
        else:
            missing = [n for n in FILES if not (folder / n).is_file()]
            reasons = {reason for _, reason in failures}
            if not failures:
                why = "no mirrors"
            elif len(reasons) == 1:  # offline, typically: say it once, not once per mirror
                why = f"all {len(failures)} mirrors failed: {reasons.pop()}"
            else:
                why = "; ".join(f"{url}: {reason}" for url, reason in failures)
            raise DataError(f"{dataset}: could not download {name} ({why}); still missing: {', '.join(missing)}; "
                            f"{_how_to_provide(dataset)}")
    return folder


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
    split_rng, test_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
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


def load(dataset, data_dir=None, download=True, binarize="none", seed=0, validation=0.0):
    """Load MNIST or Fashion-MNIST (see the module docstring for where the files are looked for).

    dataset: "mnist" or "fashion-mnist". binarize: "none" (grayscale), "threshold" (x > 0.5) or "dynamic"
    (test and validation images drawn once as Bernoulli(x) with `seed`; training images left grayscale for
    binarize_batch). validation: the fraction of the training set split off, by a permutation seeded with
    `seed`. Returns a Dataset; raises DataError (one line) when the files cannot be found, fetched or read.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    _check_options(binarize, validation)  # before reading 50 MB, not after
    folder = find_dir(dataset, data_dir)
    if folder is None and download:
        folder = download_missing(dataset)
    if folder is None:  # name what is missing from the first folder that exists (the one the user meant)
        dirs = search_dirs(dataset, data_dir)
        closest = next((d for d in dirs if d.is_dir()), cache_dir(dataset))
        missing = [name for name in FILES if not (closest / name).is_file()]
        raise DataError(f"{dataset}: missing {', '.join(missing)} in {closest} (looked in {len(dirs)} folders; "
                        f"downloading is off); {_how_to_provide(dataset)}")
    x_train, y_train, x_test, y_test = (read_idx(folder / name) for name in FILES)
    for images, labels, image_file, label_file in ((x_train, y_train, *FILES[:2]), (x_test, y_test, *FILES[2:])):
        if images.shape[1:] != (28, 28) or images.ndim != 3:
            raise DataError(f"{folder / image_file}: images of shape {images.shape[1:]}, expected 28x28")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{folder / label_file}: {len(labels)} labels for {len(images)} images in "
                            f"{image_file}; replace the pair with good copies")
    return _split_and_binarize(dataset, _to_unit(x_train), y_train.astype(np.int64), _to_unit(x_test),
                               y_test.astype(np.int64), binarize, seed, validation)


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
