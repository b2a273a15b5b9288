"""The start of a run, the same for the training command and the demos: the config completed from the data, the
model and its optimizer built (or restored from a checkpoint), the run's state, and its output folder claimed.

    config, model, optimizer, state = start.begin(config, dataset, ckpt)     # ckpt None for a new run
    with start.claim_folder(out):                                            # made if needed, and locked
        training.train(model, optimizer, dataset, config, state, out)

Everything that can be checked is checked here, before the first step: a config that cannot train on this data
(ConfigError), sizes that cannot fit (DoesNotFit), a resume on other data than the checkpoint's, or from a
checkpoint that cannot build its model (CheckpointError), a folder that cannot be written or that another
program holds (FolderError, FolderInUse).

What a run owns. Its folder is locked for as long as it runs (a Claim: fcntl.flock on .minivae-lock, which the
operating system drops when the process ends, however it ends), so a second run, resume or demo in it is refused
naming the first. A claim removes the folders it made itself, and only while they are empty; in any folder it
clears only minivae's own temporary files (files.remove_stale) and never touches another file.
"""

import errno
import os
import re
import shlex
import stat
import sys
import time
from pathlib import Path

import numpy as np

from minivae.core import backend
from minivae.run import checkpoint, data, download, files, presets, stops, training
from minivae.run.feeds import choose_labelled
from minivae.run.kinds import IMAGE_SIZE, kind_of
from minivae.run.memory import DoesNotFit, check_step, is_allocation_failure

try:
    import fcntl
except ImportError:  # Windows: no flock; a folder is then not locked (docs/faults.md says so)
    fcntl = None


class ConfigError(ValueError):
    """A config that cannot train on this data. key and value: the config entry at fault; reason: why."""

    def __init__(self, key, value, reason):
        super().__init__(f"{key} {value}: {reason}")
        self.key, self.value, self.reason = key, value, reason


class FolderError(OSError):
    """The output folder cannot be created or written (the message names it and why)."""


def fill_labelled_weight(config, dataset):
    """The config with M2's labelled_weight filled in where it is None: the paper's N_l / N_u, the labelled
    images' share of the training set against the unlabelled ones' (models/m2.py explains). Other configs, and a
    labelled_weight already set (a number in the config, or a checkpoint's), come back as they are."""
    if not kind_of(config).semi_supervised or config.get("labelled_weight", 1.0) is not None:
        return config
    labelled = config["labels"]
    return config | {"labelled_weight": labelled / (len(dataset.x_train) - labelled)}


def check_labels(config, dataset):
    """A model that reads labels needs one class for each of them; M2's labels must be shared equally among the
    classes and leave images unlabelled (feeds.choose_labelled says why not, in a ConfigError)."""
    kind = kind_of(config)
    if kind.conditioned and len(dataset.y_train) and int(dataset.y_train.max()) >= config["classes"]:
        raise ConfigError("classes", config["classes"], f"the training labels go up to {int(dataset.y_train.max())}")
    if kind.semi_supervised:
        try:
            choose_labelled(dataset.y_train, config["labels"], config["classes"], config["seed"])
        except ValueError as err:
            raise ConfigError("labels", config["labels"], files.one_line(err)) from None


def check_fits(config):
    """The largest array a training step makes beyond the model's weights must fit in memory: a K-sample objective
    decodes K * batch rows of z at once (models/iwae.py), so an absurd --k is refused before training, not at
    the first step. Raises DoesNotFit naming the keys to make smaller."""
    k, batch = config.get("k", 1), config["batch_size"]
    if k == 1:
        return
    rows = k * batch
    try:  # reserved, never touched: an allocation the system cannot grant fails here, at once
        backend.xp.empty((rows, IMAGE_SIZE), dtype=np.float32)
    except (MemoryError, ValueError) as err:
        if not is_allocation_failure(err):
            raise
        raise DoesNotFit(f"{k} samples of z for each of {batch} images ({rows:,} rows of {IMAGE_SIZE} pixels to "
                         f"decode at once) do not fit in memory ({files.one_line(err)})", ("k", "batch_size")) from None


def check_step_fits(config, model):
    """A training step of `model` must fit in this machine's memory at all (memory.check_step): its rows are the
    batch, K times for K samples of z, once per class for M2's unlabelled images. Raises DoesNotFit naming the
    keys to make smaller."""
    kind = kind_of(config)
    vae = kind.vae_of(model)
    k, batch = config.get("k", 1), config["batch_size"]
    rows = batch * (config["classes"] + 1) if kind.semi_supervised else k * batch
    keys = ("k", "batch_size") if k > 1 else ("batch_size",)
    check_step(vae, rows, vae.classes if kind.conditioned else 0, IMAGE_SIZE, keys)


def check_same_data(ckpt, now, dataset):
    """A checkpoint resumes only on the data it was trained on: CheckpointError (one line) otherwise. now: the
    dataset's fingerprint (training.fingerprint); a checkpoint of minivae 0.1 holds the older one, which is
    compared with training.fingerprint_0_1 of the same data, and one written before 0.2.1 no hash of the
    validation images."""
    saved = ckpt.extra.get("dataset")
    if saved is None:
        return
    if "sample_sha256" in saved:
        now = training.fingerprint_0_1(dataset)
    if "validation_sha256" not in saved:  # written before 0.2.1, which did not hash them
        now = {key: value for key, value in now.items() if not key.startswith("validation")}
    differs = [key for key in [*now, *(k for k in saved if k not in now)] if saved.get(key) != now.get(key)]
    if not differs:
        return
    key = differs[0]
    if key in training.FINGERPRINT_PARTS:
        what = f"its {training.FINGERPRINT_PARTS[key]} differ"
    else:
        what = f"{key}: {saved.get(key)} then, {now.get(key)} now"
    raise checkpoint.CheckpointError(f"{ckpt.path} was trained on other data ({what}); resume it on the same files, "
                                     f"or start a new run")


def recorded_data_folder(ckpt, names=download.TEST_FILES):
    """The folder a checkpoint's run read its data from, if the checkpoint says and it still holds the files
    `names`; else None (then the usual places are searched: download.py)."""
    folder = ckpt.extra.get("data_folder")  # (a str or None: checkpoint.load checked)
    try:
        return folder if folder and all((Path(folder) / name).is_file() for name in names) else None
    except (OSError, ValueError):  # a path the system cannot even look at (a NUL in it)
        return None


def test_set(ckpt, config, data_dir=None):
    """The test images and labels that evaluate a checkpoint's model (a data.Dataset without training images), read
    from data_dir, else the folder its run read them from, else the usual places; binarized as its run had them."""
    return data.load(config["dataset"], data_dir or recorded_data_folder(ckpt), binarize=config["binarize"],
                     seed=config["seed"], test_only=True)


def begin(config, dataset, ckpt=None, threads=None):
    """(config, model, optimizer, state) for a run of `config` on `dataset`: the config with what the data decides
    filled in, the model and optimizer fresh (or as the checkpoint ckpt left them: then `state` continues its
    run), and the RunState that records where the data came from. threads: the --threads count, kept in the
    checkpoint."""
    try:
        if len(dataset.x_train) == 0:
            raise ConfigError("validation", config["validation"], "no training images are left; hold out less")
        check_labels(config, dataset)
    except ConfigError as err:
        if ckpt is None:
            raise
        raise checkpoint.CheckpointError(f"{ckpt.path}: its config's {err.key} {err.value} cannot train on this data "
                                         f"({err.reason}); resume it on the data it was trained on") from None
    config = fill_labelled_weight(config, dataset)
    now = training.fingerprint(dataset, config)
    if ckpt is not None:
        check_same_data(ckpt, now, dataset)
        state = training.RunState.from_checkpoint(ckpt)
        steps = training.steps_per_epoch(config, dataset)
        if state.step > steps:
            raise checkpoint.CheckpointError(f"{ckpt.path}: it stopped at step {state.step} of an epoch of {steps} "
                                             f"steps; it was written by another version of minivae, or edited")
        try:
            check_fits(config)
            model, optimizer = restored(ckpt, config, with_optimizer=True)
            check_step_fits(config, model)
        except DoesNotFit as err:  # its k and batch size are the run's: they cannot change on a resume
            raise checkpoint.CheckpointError(f"{ckpt.path}: {files.one_line(err)}; it cannot be resumed on this "
                                             f"machine") from None
    else:
        check_fits(config)
        model = presets.build_model(config)
        check_step_fits(config, model)
        optimizer = presets.build_optimizer(config, model)
        state = training.RunState()
    state.data_folder, state.dataset_fingerprint = dataset.folder, now
    state.threads = threads
    return config, model, optimizer, state


def restored(ckpt, config=None, with_optimizer=False):
    """The model (and with_optimizer, its optimizer) of a checkpoint, its values restored. config: the checkpoint's
    completed (default presets.complete(ckpt.config)). A config the model cannot be built from, or sizes that do
    not fit here, are refused as the checkpoint's (CheckpointError naming the file): its config was checked
    (presets.config_problem), so that is damage or a machine too small for it."""
    config = config or presets.complete(ckpt.config)
    try:
        model = presets.build_model(config)
        optimizer = presets.build_optimizer(config, model) if with_optimizer else None
    except DoesNotFit as err:
        raise checkpoint.CheckpointError(f"{ckpt.path}: {files.one_line(err)}; it cannot be resumed or evaluated on "
                                         f"this machine") from None
    except (ValueError, TypeError) as err:
        raise checkpoint.CheckpointError(f"{ckpt.path}: its config cannot build a model ({files.one_line(err)}); it "
                                         f"was written by another version of minivae, or edited") from None
    checkpoint.restore(model, optimizer, ckpt)
    return model, optimizer


class FolderInUse(FolderError):
    """Another program holds the output folder (its lock): `holder` says which process, as it wrote itself."""

    def __init__(self, folder, holder):
        super().__init__(f"the output folder {folder} is in use by {holder}; wait for it to end")
        self.folder, self.holder = folder, holder


LOCK = ".minivae-lock"  # the file a run locks its folder with, a name of minivae's own


class Claim:
    """A run's hold on its output folder: an exclusive lock (fcntl.flock on LOCK inside it) that the operating
    system drops when the process ends, however it ends, so a killed run leaves no stale lock. `made`: the
    folders the claim made (files.make_folders), the only ones `release` may remove, and only when empty.

    Used as a context manager (the training command), or held to the end of the process (the demos)."""

    def __init__(self, folder, made, fd):
        self.folder, self.made, self.fd = folder, made, fd

    @property
    def created(self):
        """Whether this claim made the folder itself."""
        return bool(self.made) and self.made[-1] == self.folder

    def release(self):
        """Clear any temporary file of minivae's the folder still holds (a stop can land just before a clean-up
        begins; under the lock, every one is this run's), unlock and remove the lock file; then remove the
        folders the claim made if they hold nothing."""
        if self.fd is None:
            return
        with stops.whole():
            try:
                files.remove_stale(self.folder)
                (self.folder / LOCK).unlink(missing_ok=True)  # before unlocking: see _lock for the reopen
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
            files.remove_made(self.made)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim_folder(out, new=False):
    """Make the output folder `out` (and its parents) if needed, lock it for this process (a second program
    claiming it gets FolderInUse, naming this one), check that files can be written there, then clear what a save
    killed mid-way (SIGKILL) left of minivae's own temporary files. new: `out` must not exist yet (then
    FileExistsError, so the caller can pick another name). Returns the Claim; raises FolderError naming the
    folder."""
    out = Path(out)
    if new and out.exists():
        raise FileExistsError(17, "File exists", str(out))
    for _ in range(100):  # a holder that removed the folder or its lock file meanwhile: look again
        try:
            made = files.make_folders(out)
        except OSError as err:
            raise FolderError(f"cannot write to the output folder {out} ({files.one_line(err)})") from None
        if new and (not made or made[-1] != out):
            files.remove_made(made)
            raise FileExistsError(17, "File exists", str(out))
        try:
            fd = _lock(out)
        except FolderInUse:
            raise  # (a folder someone else uses is never removed, even when this claim made it)
        except FolderError:
            files.remove_made(made)
            raise
        except OSError as err:
            files.remove_made(made)
            raise FolderError(f"cannot write to the output folder {out} ({files.one_line(err)})") from None
        if fd is None:
            continue
        claim = Claim(out, made, fd)
        try:
            probe = out / f"{files.TEMP_PREFIX}write-test.probe{files.TEMP_SUFFIX}"  # ours, removed at once
            try:
                with files.atomic_file(probe):
                    pass
            finally:
                with stops.whole():
                    probe.unlink(missing_ok=True)
            files.remove_stale(out)
        except OSError as err:
            claim.release()
            raise FolderError(f"cannot write to the output folder {out} ({files.one_line(err)})") from None
        except BaseException:
            claim.release()
            raise
        return claim
    raise FolderError(f"cannot lock the output folder {out}: its lock file keeps changing")


def _lock(folder):
    """Open and lock folder/LOCK; write this process into it. Returns the file descriptor, or None when the
    file that was locked is no longer the one of that name (a holder removed it as it ended: look again)."""
    path = folder / LOCK
    not_ours = FolderError(f"{path} is not a lock file minivae wrote (a link, a folder, or someone else's file): "
                           f"move it away")
    with stops.whole():  # opened and locked at once, or neither
        try:  # never through a link: its target is not ours to write or to remove
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EISDIR):
                raise not_ours from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link: the other name is someone's file
            os.close(fd)
            raise not_ours
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd) if err.errno in LOCKED else ""
            os.close(fd)
            if err.errno in LOCKED:
                raise FolderInUse(folder, holder or "another process") from None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder unlinked it between our open and our lock
            os.close(fd)
            return None
        if not OUR_LOCK.fullmatch(os.pread(fd, 4096, 0)):  # a user's file of that name: left as it is
            os.close(fd)
            raise not_ours
        os.ftruncate(fd, 0)
        line = f"process {os.getpid()} ({this_program()})".replace("\n", "\\n")  # one line, always
        os.write(fd, f"{line}\n".encode("utf-8", "backslashreplace"))
    return fd


LOCKED = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)  # flock's ways of saying "held by another"
# What a lock file of minivae's holds: nothing (just made, or its run killed before it wrote), or the line it writes
OUR_LOCK = re.compile(rb"(process [0-9]+ \([^\n]*\)\n)?")


def _holder(fd):
    """What the process holding the lock file `fd` wrote into it ('process 123 (python -m minivae.train ...)'). It
    writes that just after it locks, so a claim that lost a race by a moment waits a little for it."""
    for _ in range(50):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        if text.endswith("\n"):  # the whole line is there
            break
        time.sleep(0.01)
    return text.strip()


def this_program():
    """The command line of this process, short enough for a message: 'python -m minivae.train --out runs/a'."""
    words = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    words[0] = Path(words[0]).name
    text = shlex.join(words)
    return text if len(text) <= 200 else text[:197] + "..."
