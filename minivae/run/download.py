"""Finding MNIST or Fashion-MNIST on this machine, or downloading it safely.

`data.load` asks `locate` for a folder holding the four gzip IDX files of a dataset, and it looks, in order:

    1. the `data_dir` argument (the commands' --data-dir),
    2. the environment variable MINIVAE_DATA_DIR,
    3. the per-user cache, $XDG_CACHE_HOME/minivae/<dataset> (by default ~/.cache/minivae/<dataset>),
    4. for Fashion-MNIST, /usr/share/datasets/fashion-mnist (Debian's package dataset-fashion-mnist).

For 1 and 2 either the folder with the files or a parent with a `<dataset>/` subfolder will do. A folder the
user named that lacks some files is an error that names the folder, what is in it and what is missing: it is
never silently passed over for a download. Only when the user named no folder and none of the others has the
files are the missing ones downloaded into the cache from a list of mirrors. A download is streamed into a
temporary file next to its target, checked against the SHA-256 in `SHA256`, and only then renamed onto the real
name, so an interrupted or corrupted download never leaves a file that looks finished. Files found locally are
not checksummed (Debian re-compressed its copy, so its bytes differ from upstream's); `data.read_idx` still
checks that their structure is sound.
"""

import hashlib
import http.client
import os
import sys
import urllib.request
from pathlib import Path

from minivae.run.files import atomic_file, make_folders, one_line, remove_made

DATASETS = ("mnist", "fashion-mnist")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")
TEST_FILES = FILES[2:]  # all that evaluating a trained model needs

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


class DataError(Exception):
    """The data cannot be found, downloaded or read (the one-line message says why and what to do)."""


# ---------------------------------------------------------------- finding the files

def cache_dir(dataset):
    """The per-user download folder: $XDG_CACHE_HOME/minivae/<dataset>, by default ~/.cache/minivae/<dataset>."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minivae" / dataset


def locate(dataset, data_dir=None, download=True, files=FILES):
    """The folder that holds `files` of `dataset` (see the module docstring for the order). Raises DataError.

    A folder the user named (data_dir, else MINIVAE_DATA_DIR) must hold the files: if it does not, the error
    names it, what it holds and what it lacks. Otherwise the cache, then Debian's folder; else, with
    `download`, the missing files are downloaded into the cache.
    """
    for given, where in ((data_dir, "--data-dir"), (os.environ.get("MINIVAE_DATA_DIR"), "MINIVAE_DATA_DIR")):
        if given:
            return _named_folder(dataset, Path(given), where, files)
    standard = [cache_dir(dataset)] + ([Path(DEBIAN_DIR)] if dataset == "fashion-mnist" else [])
    for folder in standard:
        if all((folder / name).is_file() for name in files):
            return folder
    if download:
        return download_missing(dataset, files=files)
    missing = [name for name in files if not (standard[0] / name).is_file()]
    raise DataError(f"{dataset}: missing {', '.join(missing)} in {standard[0]} (downloading is off); "
                    f"{_how_to_provide(dataset)}")


def _named_folder(dataset, given, where, files):
    """`given` or its <dataset>/ subfolder, whichever holds all of `files`; else a DataError that says why."""
    for folder in (given, given / dataset):
        if all((folder / name).is_file() for name in files):
            return folder
    if not given.is_dir():
        raise DataError(f"{where} {given}: no such folder; check the path, or leave {where} out to use "
                        f"{cache_dir(dataset)} (downloading there if needed)")
    folder = given / dataset if (given / dataset).is_dir() else given
    present = [name for name in files if (folder / name).is_file()]
    missing = [name for name in files if name not in present]
    holds = f"holds {len(present)} of the {len(files)} {dataset} files needed" if present else \
        f"holds none of the {dataset} files ({', '.join(sorted(p.name for p in folder.iterdir())[:5]) or 'empty'})"
    raise DataError(f"{where} {folder} {holds}; missing: {', '.join(missing)}; copy them there, or leave "
                    f"{where} out to use {cache_dir(dataset)} (downloading there if needed)")


def _how_to_provide(dataset):
    ways = f"to provide the files, pass --data-dir DIR, set MINIVAE_DATA_DIR=DIR, or put them in {cache_dir(dataset)}"
    if dataset == "fashion-mnist":
        return ways + ", or run `apt install dataset-fashion-mnist`"
    return ways + ", or use --dataset fashion-mnist (Debian packages it: `apt install dataset-fashion-mnist`)"


# ---------------------------------------------------------------- downloading

class _ChecksumMismatch(Exception):
    """The bytes a mirror served are not the file SHA256 names."""


def _fetch(url, target, sha256):
    """Stream `url` into `target` through files.atomic_file, which renames it onto `target` only if the block
    ends well: a checksum mismatch, a network error or Ctrl-C leave neither a half-written file nor a temporary
    one. Returns None on success or the reason for failure (one line).
    """
    digest = hashlib.sha256()
    try:
        with atomic_file(target) as out, urlopen(url, timeout=TIMEOUT) as response:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise _ChecksumMismatch(f"checksum mismatch (got sha256 {digest.hexdigest()[:12]}...)")
    except _ChecksumMismatch as err:
        return str(err)
    except (OSError, http.client.HTTPException, ValueError) as err:  # URLError and timeouts are OSErrors
        return one_line(err)
    return None


def download_missing(dataset, folder=None, files=FILES):
    """Download those of `files` that `folder` (default: the cache folder) lacks, each checked against SHA256.
    Returns the folder.

    Mirrors are tried in order for each file; a checksum mismatch or a network error moves on to the next. When
    a file cannot be had from any (offline, say) or the download is stopped, the folders this call made are
    removed again if they hold nothing: a failed download leaves no empty cache folder behind.
    """
    folder = Path(folder) if folder is not None else cache_dir(dataset)
    try:
        made = make_folders(folder)
    except OSError as err:
        raise DataError(f"cannot create the download folder {folder} ({one_line(err)}); "
                        f"{_how_to_provide(dataset)}") from None
    try:
        for name in files:
            _download_one(dataset, folder, name, files)
    except BaseException:
        remove_made(made)
        raise
    return folder


def _download_one(dataset, folder, name, files):
    """Download folder/name from the first mirror that serves it with the right checksum; DataError if none does."""
    target = folder / name
    if target.is_file():
        return
    failures = []  # (url, reason)
    for mirror in MIRRORS[dataset]:
        url = mirror + name
        print(f"downloading {name} from {url} ...", file=sys.stderr, flush=True)
        failure = _fetch(url, target, SHA256[dataset][name])
        if failure is None:
            return
        failures.append((url, failure))
    missing = [n for n in files if not (folder / n).is_file()]
    reasons = {reason for _, reason in failures}
    if not failures:
        why = "no mirrors"
    elif len(reasons) == 1:  # offline, typically: say it once, not once per mirror
        why = f"all {len(failures)} mirrors failed: {reasons.pop()}"
    else:
        why = "; ".join(f"{url}: {reason}" for url, reason in failures)
    raise DataError(f"{dataset}: could not download {name} ({why}); still missing: {', '.join(missing)}; "
                    f"{_how_to_provide(dataset)}")


