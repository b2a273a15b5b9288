"""Checkpoints: everything a run needs to go on exactly where it stopped, in one .npz file.

A checkpoint holds

  * every model parameter under the model's own names ('encoder.0.W', 'mu.b', ...), as NumPy arrays;
  * the optimizer's state (Adam's moments and step count, ...), from `optimizer.state_dict()`;
  * as one JSON string: the run's config, how far it got (`epoch` = epochs finished, `step` = optimizer steps
    done in the next epoch), the metrics history, the noise generator's state mid-epoch, and anything else the
    caller passes as `extra`;
  * any further arrays the caller wants kept (the training command keeps its progress-GIF frames);
  * a format number, so that a later minivae can recognise an older file.

Saving is atomic (files.atomic_file): np.savez writes into a temporary file in the same folder, which is flushed
to the disk and only then renamed onto the real name. Whatever happens during a save -- Ctrl-C, a full disk, a
crash -- the real name holds the old checkpoint or the new one, never a mixture.

Loading checks what it reads: a damaged file (truncated, not a zip, entries missing) raises CheckpointError with
one line naming the file. `restore` compares every parameter's name and shape with the model before it writes a
single value, so a checkpoint of another architecture is refused as a whole, with the parameter that differs.
"""

import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivae.core import backend
from minivae.run.files import atomic_file, one_line

FORMAT = 1  # bump when the layout below changes
FILENAME = "checkpoint.npz"  # the name the training command gives its checkpoints


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the model (the one-line message says which file and why)."""


@dataclass
class Checkpoint:
    """What `load` returns: plain NumPy arrays and JSON values, nothing on the device yet."""

    path: Path
    config: dict
    epoch: int  # epochs finished
    step: int  # optimizer steps done in epoch `epoch + 1` (0 at the end of an epoch)
    history: list
    params: dict  # name -> NumPy array
    optimizer_state: dict  # what optimizer.state_dict() gave: 't' and '<state>.<param name>' arrays
    rng_state: dict | None = None  # a NumPy bit_generator.state, or None
    extra: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


def save(path, model, optimizer, config, epoch, step=0, history=(), rng_state=None, extra=None, arrays=None):
    """Write one checkpoint file at `path`, atomically (see the module docstring). Returns the Path.

    model: anything with `params` (name -> array); optimizer: anything with `state_dict()`, or None.
    config, history, rng_state and extra must be JSON-able (a NumPy bit_generator.state is: big ints are fine).
    arrays: further name -> array entries to keep.
    """
    entries = {"format": np.array(FORMAT)}
    entries |= {f"param/{name}": backend.to_numpy(value) for name, value in model.params.items()}
    if optimizer is not None:
        entries |= {f"optim/{key}": np.asarray(backend.to_numpy(value))
                    for key, value in optimizer.state_dict().items()}
    meta = {"config": config, "epoch": int(epoch), "step": int(step), "history": list(history),
            "rng_state": rng_state, "extra": extra or {}}
    entries["meta"] = np.array(json.dumps(meta))  # a 0-d string array: loads without pickle
    entries |= {f"array/{name}": np.asarray(backend.to_numpy(value)) for name, value in (arrays or {}).items()}
    with atomic_file(path) as f:
        np.savez(f, **entries)
    return Path(path)


def load(path, config_problem=None):
    """Read a checkpoint (the .npz file, or a run folder holding checkpoint.npz) into a Checkpoint.

    Raises CheckpointError (one line naming the file) if it is missing, unreadable, lacks an entry, holds an
    entry of the wrong kind (see `_check_entries`), or if `config_problem(config, params)` (e.g.
    presets.config_problem) says what is wrong with the config it holds. Every array's declared size is checked
    against the bytes the file holds before anything is allocated, so a damaged header cannot ask for terabytes.
    """
    path = _file(path)
    damaged = f"{path}: not a readable minivae checkpoint"
    try:
        entries = _read_entries(path)
    except CheckpointError:
        raise
    # np.load's ways of saying "not this"; RuntimeError: zipfile's for an encrypted member (and, a subclass,
    # NotImplementedError for a compression it lacks)
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointError(f"{damaged} ({one_line(err)}); it is truncated or damaged") from None
    try:
        meta = _meta(path, entries)
        ckpt = Checkpoint(
            path=path, config=meta["config"], epoch=meta["epoch"], step=meta["step"],
            history=meta["history"], rng_state=meta["rng_state"], extra=meta["extra"],
            params={k.removeprefix("param/"): v for k, v in entries.items() if k.startswith("param/")},
            optimizer_state={k.removeprefix("optim/"): v for k, v in entries.items() if k.startswith("optim/")},
            arrays={k.removeprefix("array/"): v for k, v in entries.items() if k.startswith("array/")})
    except KeyError as err:
        raise CheckpointError(f"{damaged}: the entry {one_line(err)} is missing") from None
    except (ValueError, TypeError, RecursionError) as err:  # bad JSON (or JSON nested past Python's stack), or a
        raise CheckpointError(f"{damaged} ({one_line(err)})") from None  # value of the wrong kind
    if not ckpt.params or not isinstance(ckpt.config, dict):
        raise CheckpointError(f"{damaged}: it holds no parameters or no config")
    problem = _check_entries(ckpt) or (config_problem(ckpt.config, ckpt.params) if config_problem else None)
    if problem:
        raise CheckpointError(f"{path}: {problem}; it was written by another version of minivae, or edited")
    return ckpt


def position(path):
    """(epoch, step) of the checkpoint at `path`, read from its metadata alone; CheckpointError when there is no
    readable checkpoint there. What a message about the file on disk says (faults.py)."""
    path = _file(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            _check_sizes(path, npz.zip, ["meta"])
            meta = _meta(path, {"format": npz["format"], "meta": npz["meta"]})
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointError(f"{path}: not a readable minivae checkpoint ({one_line(err)})") from None
    return meta["epoch"], meta["step"]


def _file(path):
    """The checkpoint file a path names (a run folder names its checkpoint.npz); CheckpointError if there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (a run folder holds {FILENAME})")
    if not zipfile.is_zipfile(path):  # (np.load would read a lone .npy array, or a pickle, as something else)
        raise CheckpointError(f"{path}: not a readable minivae checkpoint (not the zip archive an .npz file is); "
                              f"it is truncated or damaged")
    return path


def _read_entries(path):
    """Every entry of the .npz file, read now (damage shows up here), each checked first by _check_sizes."""
    with np.load(path, allow_pickle=False) as npz:
        _check_sizes(path, npz.zip, npz.files)
        return {name: npz[name] for name in npz.files}


COMPRESSION_LIMIT = 1100  # deflate cannot shrink data more than ~1032 times: a larger ratio is a forged size


def _check_sizes(path, archive, names):
    """Each named .npy entry of the zip `archive` declares in its header a shape and a dtype; NumPy allocates that
    much before reading a byte. Refuse (CheckpointError naming the file) an entry whose declared size is not
    what the file holds, before any of it is allocated."""
    file_size = path.stat().st_size
    members = set(archive.namelist())
    for name in names:
        if name + ".npy" not in members:
            raise CheckpointError(f"{path}: its entry {name!r} is not an array; it is damaged or not a minivae "
                                  f"checkpoint")
        info = archive.getinfo(name + ".npy")
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.compress_size > file_size or (stored and info.file_size != info.compress_size) or \
                info.file_size > COMPRESSION_LIMIT * info.compress_size + 4096:
            raise CheckpointError(f"{path}: the entry {name!r} claims {info.file_size:,} bytes, more than the file "
                                  f"can hold; it is truncated or damaged")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise CheckpointError(f"{path}: the entry {name!r} is in .npy format {version}, which minivae "
                                      f"never writes; it is damaged or not a minivae checkpoint")
            header = f.tell()
        declared = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or header + declared != info.file_size:
            raise CheckpointError(f"{path}: the entry {name!r} declares {dtype} of shape {tuple(shape)} "
                                  f"({declared:,} bytes) but holds {info.file_size - header:,} bytes; it is "
                                  f"truncated or damaged")


def _meta(path, entries):
    """The metadata entry as a dict, its numbers checked: epoch and step whole numbers >= 0."""
    format_ = entries["format"]
    if format_.shape != () or format_.dtype.kind not in "iu":
        raise CheckpointError(f"{path}: its format entry is not a whole number; it is damaged")
    if int(format_) != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {int(format_)}, this minivae reads format {FORMAT}")
    if entries["meta"].shape != () or entries["meta"].dtype.kind != "U":
        raise CheckpointError(f"{path}: its meta entry is not a JSON text; it is damaged")
    meta = json.loads(str(entries["meta"]))
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its meta entry is not a JSON object; it is damaged")
    for key in ("epoch", "step"):
        if not _whole(meta[key]):
            raise CheckpointError(f"{path}: its {key} is {meta[key]!r}, not a whole number >= 0; it is damaged or "
                                  f"edited")
    return meta


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value):
    """Whether `value` (read from JSON) is a number a run could have written: an int or float that is a finite
    float (not NaN, not infinite, not an integer too large for a float), and not a bool."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past 1.8e308
        return False


def _check_entries(ckpt):
    """What is wrong with the entries a Checkpoint holds, in words, or None: the parameters and the optimizer's
    arrays must be real floating-point arrays (the optimizer's finite), its step count t a whole number >= 0; the
    history the losses of epochs 1, 2, ... in order, finite numbers; rng_state and extra objects (or None),
    extra's data folder a path and its dataset fingerprint an object."""
    for name, value in ckpt.params.items():
        if value.dtype.kind != "f":
            return f"its parameter {name!r} is an array of {value.dtype}, not of floating-point numbers"
    for name, value in ckpt.optimizer_state.items():
        if name == "t":
            if value.shape != () or value.dtype.kind not in "iuf" or not np.isfinite(value) or value < 0 or \
                    value != np.floor(value):
                return f"its optimizer's step count t is {value!r}, not a whole number >= 0"
        elif value.dtype.kind != "f":
            return f"its optimizer entry {name!r} is an array of {value.dtype}, not of floating-point numbers"
        elif not np.isfinite(value).all():
            return f"its optimizer entry {name!r} holds NaN or infinity"
    if not isinstance(ckpt.history, list):
        return "its history is not a list of epochs"
    for epoch, record in enumerate(ckpt.history, start=1):
        if not (isinstance(record, dict) and record.get("epoch") == epoch and isinstance(record.get("train"), dict)
                and isinstance(record.get("test"), dict)
                and all(is_number(v) for part in ("train", "test") for v in record[part].values())):
            return f"its history entry {record!r:.60} is not an epoch's losses"
    if not isinstance(ckpt.extra, dict):
        return "its extra entry is not an object"
    if not isinstance(ckpt.extra.get("data_folder"), (str, type(None))):
        return "its data folder is not a path"
    if not isinstance(ckpt.extra.get("dataset"), (dict, type(None))):
        return "its dataset fingerprint is not an object"
    if ckpt.rng_state is not None and not isinstance(ckpt.rng_state, dict):
        return "its generator state is not an object"
    return None


def _check_fit(path, what, owner, wanted, saved):
    """Every name in `wanted` is in `saved` with the same shape, and `saved` has nothing more."""
    other = "it was saved from another architecture" if owner == "model" else "it was saved with another optimizer"
    for name, array in wanted.items():
        if name not in saved:
            raise CheckpointError(f"{path}: this {owner} has {what} {name!r} {tuple(array.shape)} but the checkpoint "
                                  f"does not; {other}")
        if tuple(saved[name].shape) != tuple(array.shape):
            raise CheckpointError(f"{path}: {what} {name!r} has shape {tuple(saved[name].shape)} in the checkpoint "
                                  f"but {tuple(array.shape)} in this {owner}; {other}")
    for name in saved:
        if name not in wanted:
            raise CheckpointError(f"{path}: the checkpoint has {what} {name!r} that this {owner} lacks; {other}")


def restore(model, optimizer, ckpt):
    """Copy a Checkpoint's values into model (and optimizer, unless None), after checking that they fit.

    Values are written in place (`param[...] = value`): the layers and model.params share their arrays, so
    replacing a dict entry would leave the layers computing with the old weights.
    """
    _check_fit(ckpt.path, "parameter", "model", model.params, ckpt.params)
    if optimizer is not None:
        saved = optimizer.from_older(ckpt.optimizer_state)  # an older minivae's names, translated
        state = optimizer.state_dict()
        _check_fit(ckpt.path, "entry", "optimizer", {k: np.asarray(backend.to_numpy(v)) for k, v in state.items()},
                   saved)
    for name, param in model.params.items():
        param[...] = backend.to_device(ckpt.params[name], dtype=param.dtype)
    if optimizer is not None:
        optimizer.load_state_dict(saved)
