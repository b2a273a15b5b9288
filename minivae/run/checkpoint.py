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
import zipfile
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

    Raises CheckpointError (one line naming the file) if it is missing, unreadable, or lacks an entry, or if
    `config_problem(config)` (e.g. presets.config_problem) says what is wrong with the config it holds.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (a run folder holds {FILENAME})")
    damaged = f"{path}: not a readable minivae checkpoint"
    try:
        with np.load(path, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}  # read everything now: damage shows up here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # np.load's ways of saying "not this"
        raise CheckpointError(f"{damaged} ({one_line(err)}); it is truncated or damaged") from None
    try:
        version = int(entries["format"])
        if version != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {version}, this minivae reads format {FORMAT}")
        meta = json.loads(str(entries["meta"]))
        ckpt = Checkpoint(
            path=path, config=meta["config"], epoch=int(meta["epoch"]), step=int(meta["step"]),
            history=meta["history"], rng_state=meta["rng_state"], extra=meta["extra"],
            params={k.removeprefix("param/"): v for k, v in entries.items() if k.startswith("param/")},
            optimizer_state={k.removeprefix("optim/"): v for k, v in entries.items() if k.startswith("optim/")},
            arrays={k.removeprefix("array/"): v for k, v in entries.items() if k.startswith("array/")})
    except KeyError as err:
        raise CheckpointError(f"{damaged}: the entry {one_line(err)} is missing") from None
    except (ValueError, TypeError) as err:  # bad JSON, or a value of the wrong kind
        raise CheckpointError(f"{damaged} ({one_line(err)})") from None
    if not ckpt.params or not isinstance(ckpt.config, dict):
        raise CheckpointError(f"{damaged}: it holds no parameters or no config")
    problem = config_problem(ckpt.config) if config_problem else None
    if problem:
        raise CheckpointError(f"{path}: {problem}; it was written by another version of minivae, or edited")
    return ckpt


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
