"""A battery of bad inputs and faults: each ends the command with one line that says what was wrong and what
to do, an exit code that says how it ended, no traceback, no temporary file left and no empty run folder.

The table CASES is the battery: a command line of `python -m minivae.train` or `python -m minivae.evaluate`
(run in process), a fault injected before it (a full disk, a signal, no memory, a damaged checkpoint), the
exit code it must end with and a phrase of its message. DEMO_CASES runs the demos in subprocesses (they read
MINIVAE_BACKEND when they start). The tests after the tables follow a fault through to the end: the saved
checkpoint resumes to the numbers of a run that never stopped, the leftovers of a SIGKILL are cleared.

Exit codes: 2 for anything the user must fix (or a disk that must be freed), 1 for a run that diverged or a
checkpoint with NaN weights, 130 for a stop (Ctrl-C, SIGTERM, SIGHUP) that saved what there was.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, forge_shape, write_dataset

from minivae import cli, evaluate, explore, gradcheck, train
from minivae.bench import __main__ as bench
from minivae.bench import timing
from minivae.figures import run_figures
from minivae.models import vae
from minivae.run import checkpoint, data, download, files, memory, start, stops, training

N_TRAIN, N_TEST, BATCH = 64, 16, 16  # 4 steps per epoch
COMMANDS = {"train": train.main, "evaluate": evaluate.main, "bench": bench.main, "gradcheck": gradcheck.main,
            "explore": explore.main}
SMALL = ["--hidden", "16", "--latent", "2", "--batch-size", str(BATCH), "--eval-samples", "2", "--no-plots"]
LABELLED = {"cvae": ["--preset", "cvae"], "m2": ["--preset", "m2", "--labels", "20"]}  # 20 labels: 44 unlabelled


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder, cache or network (conftest.isolated_data)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=N_TRAIN, n_test=N_TEST)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A run of one epoch that ended well: cases that damage its checkpoint work on a copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "1", *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def labelled_runs(tiny, tmp_path_factory):
    """A finished epoch of the conditional VAE and of M2, whose data fingerprints cover labels."""
    runs = {}
    for name, preset in LABELLED.items():
        runs[name] = tmp_path_factory.mktemp(name) / "run"
        assert train.main(["--data-dir", str(tiny), "--out", str(runs[name]), "--epochs", "1", *preset, *SMALL]) == 0
    return runs


@pytest.fixture(scope="module")
def stopped(tiny, tmp_path_factory):
    """A run stopped by SIGTERM at epoch 2, step 2: a checkpoint saved mid-epoch (with its noise generator)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        fail_at_step(6, signal_self(signal.SIGTERM))(World(out.parent, tiny, out, monkeypatch))
        assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL]) == 130
    assert checkpoint.load(out).step == 2
    return out


@dataclass
class World:
    """What a case's setup and command line may use: its own folder, the data, copies of finished runs (an MLP
    VAE's, a conditional VAE's, an M2's) and of a run stopped mid-epoch."""

    tmp: Path
    data: Path
    run: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def out(self):
        return self.tmp / "out"

    def __getattr__(self, name):  # cvae, m2, mid: the copies beside run
        if name in ("cvae", "m2", "mid"):
            return self.tmp / name
        raise AttributeError(name)


# ---------------------------------------------------------------- faults to inject


def fail_at_step(k, error):
    """Make the k-th VAE.step call (1-based) raise `error` (or call it, if it is a function: send a signal)."""
    def setup(world):
        original, calls = vae.VAE.step, []

        def step(self, x, eps=None, rng=None):
            calls.append(1)
            if len(calls) == k:
                if isinstance(error, BaseException):
                    raise error
                error()
            return original(self, x, eps=eps, rng=rng)

        world.monkeypatch.setattr(vae.VAE, "step", step)
    return setup


def disk_full(module, at_call=1):
    """From the at_call-th write of `module`'s atomic_file on, write a few bytes and then run out of space."""
    def setup(world):
        calls = []

        @contextmanager
        def atomic_file(path):
            calls.append(path)
            with files.atomic_file(path) as f:
                if len(calls) >= at_call:
                    f.write(b"half a file")
                    raise OSError(28, "No space left on device")
                yield f

        world.monkeypatch.setattr(module, "atomic_file", atomic_file)
    return setup


def raise_in(module, name, error):
    """Make module.name raise `error` when called."""
    def setup(world):
        def fail(*args, **kwargs):
            raise error

        world.monkeypatch.setattr(module, name, fail)
    return setup


def unwritable_out(world):
    """The output folder refuses files (chmod does not stop root, so the refusal is simulated)."""
    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    world.monkeypatch.setattr(files, "atomic_file", refuse)


def signal_self(signum):
    return lambda: os.kill(os.getpid(), signum)


def twice(signum, step):
    """Two signals: the first during the step-th step, the second while that stop's checkpoint is being saved."""
    def setup(world):
        stopped = []

        def first():
            stopped.append(signum)
            os.kill(os.getpid(), signum)

        fail_at_step(step, first)(world)
        original = training.save_checkpoint

        def save_checkpoint(*args, **kwargs):
            if stopped:  # (the end of an earlier epoch saves undisturbed)
                os.kill(os.getpid(), signum)
            return original(*args, **kwargs)

        world.monkeypatch.setattr(training, "save_checkpoint", save_checkpoint)
    return setup


def edit_config(**changes):
    """Rewrite the copied run's checkpoint with its config changed (a value None removes the key)."""
    def setup(world):
        path = world.run / checkpoint.FILENAME
        with np.load(path) as npz:
            entries = {name: npz[name] for name in npz.files}
        meta = json.loads(str(entries["meta"]))
        for key, value in changes.items():
            meta["config"].pop(key) if value is None else meta["config"].__setitem__(key, value)
        entries["meta"] = np.array(json.dumps(meta))
        np.savez(path, **entries)
    return setup


def poison_weights(world):
    """NaN in the copied run's weights."""
    path = world.run / checkpoint.FILENAME
    with np.load(path) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries["param/decoder.0.W"] = np.full_like(entries["param/decoder.0.W"], np.nan)
    np.savez(path, **entries)


def damage(how):
    def setup(world):
        path = world.run / checkpoint.FILENAME
        path.write_bytes(path.read_bytes()[:1000] if how == "truncate" else os.urandom(1000))
    return setup


def other_data(world):
    write_dataset(world.tmp / "other", n_train=N_TRAIN, n_test=N_TEST, seed=1)


def data_lacking_a_file(world):
    shutil.copytree(world.data, world.tmp / "partial")
    (world.tmp / "partial" / data.FILES[2]).unlink()


def out_holds(*names):
    def setup(world):
        world.out.mkdir()
        for name in names:
            (world.out / name).write_text("{}")
    return setup


def out_is_a_file(world):
    world.out.write_text("not a folder")


def stop_loading(signum):
    """A stop while the data is read."""
    def setup(world):
        def load(*args, **kwargs):
            os.kill(os.getpid(), signum)

        world.monkeypatch.setattr(data, "load", load)
    return setup


def signal_while_drawing(world):
    def write_figures(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    world.monkeypatch.setattr(run_figures, "write_figures", write_figures)


def data_dir_variable_missing(world):
    world.monkeypatch.setenv("MINIVAE_DATA_DIR", str(world.tmp / "nowhere"))


def no_gpu(world):
    """MINIVAE_BACKEND=cupy, as the backend reads it (the demos' cases set the real variable)."""
    world.monkeypatch.setattr(train.backend, "requested", "cupy")


def edit_checkpoint(which, change):
    """Rewrite the checkpoint of the copied run `which` (run, cvae, m2, mid): change(entries, meta) edits its
    arrays (name -> array) and its metadata (a dict) in place."""
    def setup(world):
        path = getattr(world, which) / checkpoint.FILENAME
        with np.load(path) as npz:
            entries = {name: npz[name] for name in npz.files}
        before = entries["meta"]
        meta = json.loads(str(before))
        change(entries, meta)
        if entries["meta"] is before:  # (unless the change replaced the entry itself)
            entries["meta"] = np.array(json.dumps(meta))
        np.savez(path, **entries)
    return setup


def set_entry(name, value, which="run"):
    return edit_checkpoint(which, lambda entries, meta: entries.__setitem__(name, np.asarray(value)))


def set_meta(key, value, which="run"):
    return edit_checkpoint(which, lambda entries, meta: meta.__setitem__(key, value))


def set_extra(key, value, which="run"):
    return edit_checkpoint(which, lambda entries, meta: meta["extra"].__setitem__(key, value))


def add_member(name, content, which="run"):
    """Add a member that is not an array to the checkpoint's zip."""
    def setup(world):
        with zipfile.ZipFile(getattr(world, which) / checkpoint.FILENAME, "a") as archive:
            archive.writestr(name, content)
    return setup


def mt19937_state():
    """A generator state of another kind than the PCG64 a run keeps, as JSON holds it."""
    state = np.random.MT19937(0).state
    state["state"]["key"] = state["state"]["key"].tolist()
    return state


def declare_size(entry, shape, which="run"):
    """Forge the .npy header of one entry of the checkpoint to declare `shape` (its bytes stay as they are)."""
    def setup(world):
        forge_shape(getattr(world, which) / checkpoint.FILENAME, entry, shape)
    return setup


def relabelled(world):
    """The same images as the run's data, the training labels shifted by one image (the same count per class)."""
    shutil.copytree(world.data, world.tmp / "relabelled")
    labels = data.read_idx(world.data / data.FILES[1])
    data.write_idx(world.tmp / "relabelled" / data.FILES[1], np.roll(labels, 1))


_held = []  # claims a case holds on a folder, as another run would (released after each test)


def in_use(which):
    """Another run holds the folder `which` (out or a copied run): its lock, as start.claim_folder takes it."""
    def setup(world):
        _held.append(start.claim_folder(world.out if which == "out" else getattr(world, which)))
    return setup


@pytest.fixture(autouse=True)
def release_held():
    yield
    while _held:
        _held.pop().release()


def signal_in(module, name, signum):
    """A stop while module.name runs (evaluating, timing, checking gradients)."""
    def setup(world):
        original = getattr(module, name)

        def stopped(*args, **kwargs):
            os.kill(os.getpid(), signum)
            return original(*args, **kwargs)

        world.monkeypatch.setattr(module, name, stopped)
    return setup


def refused_mirrors(world):
    """No folder named, no cache, no Debian copy: a download, from mirrors that refuse (conftest.isolated_data)."""
    world.monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])


def out_holds_a_figure(world):
    world.out.mkdir()
    (world.out / "samples.png").write_bytes(b"the user's own picture")


def in_folder(which, name, make):
    """Put something of the user's at `name` in the output folder (which="out") or the copied run ("run"):
    make(path, world) makes it."""
    def setup(world):
        folder = getattr(world, which)
        folder.mkdir(exist_ok=True)
        make(folder / name, world)
    return setup


def users_file(path, world):
    path.write_bytes(b"the user's own")


def broken_link(path, world):
    path.symlink_to(world.tmp / "nowhere")


def link_to_users_file(path, world):
    (world.tmp / "precious.txt").write_bytes(b"the user's own")
    path.symlink_to(world.tmp / "precious.txt")


def a_folder(path, world):
    path.unlink(missing_ok=True)
    path.mkdir()
    (path / "notes.txt").write_bytes(b"the user's own")  # (the battery asserts no empty folder is left)


def machine_of(kilobytes):
    """A machine with that much memory (the training step's check reads it; nothing else does)."""
    def setup(world):
        world.monkeypatch.setattr(memory, "total_memory", lambda: kilobytes * 2**10)
    return setup


def hard_link_to_users_file(path, world):
    (world.tmp / "precious.txt").write_bytes(b"")
    os.link(world.tmp / "precious.txt", path)


def users_lines(path, world):
    path.write_bytes(b"process 1 (my notes\nline two\nkept)\n")  # starts and ends like minivae's line


def a_pipe(path, world):
    os.mkfifo(path)


def checkpoint_by_link(world):
    kept = world.tmp / "kept.npz"
    (world.run / checkpoint.FILENAME).rename(kept)
    (world.run / checkpoint.FILENAME).symlink_to(kept)


def encrypted_member(world):
    """Mark the checkpoint's first member encrypted (bit 0 of its flags, in its local and central headers)."""
    path = world.run / checkpoint.FILENAME
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 6] |= 1
    raw[central + 8] |= 1
    path.write_bytes(bytes(raw))


def lone_npy(world):
    path = world.run / checkpoint.FILENAME
    with path.open("wb") as f:
        np.save(f, np.zeros(3))


# ---------------------------------------------------------------- the battery

TRAIN = ["train", "--data-dir", "{data}", "--out", "{out}", *SMALL]
RESUME = ["train", "--resume", "{run}", "--epochs", "2", "--no-plots", "--eval-samples", "2"]
EVALUATE = ["evaluate", "{run}", "--eval-samples", "2"]
TOO_BIG = "does not fit in memory"
FULL = OSError(28, "No space left on device")


def case(name, argv, code, phrase, setup=None):
    return pytest.param(argv, code, phrase, setup, id=name)


CASES = [
    # options argparse refuses
    case("negative-lr", [*TRAIN, "--lr", "-1"], 2, "must be more than 0"),
    case("nan-lr", [*TRAIN, "--lr", "nan"], 2, "finite"),
    case("zero-batch", [*TRAIN, "--batch-size", "0"], 2, "--batch-size: must be more than 0"),
    case("epochs-not-a-number", [*TRAIN, "--epochs", "x"], 2, "is not a whole number"),
    case("unknown-dataset", [*TRAIN, "--dataset", "cifar"], 2, "invalid choice"),
    case("unknown-preset", [*TRAIN, "--preset", "nope"], 2, "invalid choice"),
    case("validation-of-1", [*TRAIN, "--validation", "1"], 2, "fraction below 1"),
    case("negative-beta", [*TRAIN, "--beta", "-0.5"], 2, "at least 0"),
    case("zero-threads", [*TRAIN, "--threads", "0"], 2, "--threads: must be more than 0"),
    case("evaluate-negative-samples", [*EVALUATE, "--eval-samples", "-1"], 2, "at least 0"),
    # options that are valid one by one but not usable
    case("hidden-past-numpy", [*TRAIN, "--hidden", str(10**20)], 2, TOO_BIG),
    case("hidden-past-memory", [*TRAIN, "--hidden", str(10**11)], 2, TOO_BIG),
    case("latent-past-numpy", [*TRAIN, "--latent", str(10**19)], 2, TOO_BIG),
    case("eval-samples-past-numpy", [*TRAIN, "--epochs", "1", "--eval-samples", str(10**20)], 2,
         "the trained model is saved in"),
    case("evaluate-samples-past-numpy", [*EVALUATE, "--eval-samples", str(10**20)], 2, "smaller --eval-samples"),
    case("validation-leaves-nothing", [*TRAIN, "--validation", "0.999"], 2, "no training images are left"),
    case("hidden-with-conv", [*TRAIN, "--preset", "keras-conv-2d"], 2, "--hidden is for MLP models"),
    case("eval-only-without-resume", [*TRAIN, "--eval-only"], 2, "--eval-only needs --resume"),
    # data
    case("data-dir-missing", [*TRAIN, "--data-dir", "{tmp}/nowhere"], 2, "no such folder"),
    case("data-dir-lacks-a-file", [*TRAIN, "--data-dir", "{tmp}/partial"], 2, f"missing: {data.FILES[2]}",
         data_lacking_a_file),
    case("data-dir-variable-missing", [w for w in TRAIN if w not in ("--data-dir", "{data}")], 2,
         "MINIVAE_DATA_DIR", data_dir_variable_missing),
    case("resume-on-other-data", [*RESUME, "--data-dir", "{tmp}/other"], 2, "was trained on other data", other_data),
    # checkpoints
    case("resume-missing", [*RESUME[:2], "{tmp}/none.npz"], 2, "no such checkpoint file"),
    case("resume-truncated", RESUME, 2, "truncated or damaged", damage("truncate")),
    case("resume-random-bytes", RESUME, 2, "not a readable minivae checkpoint", damage("random")),
    case("resume-other-architecture", [*RESUME, "--hidden", "32"], 2, "--hidden [32] conflicts"),
    case("config-lacks-latent", RESUME, 2, "its config lacks 'latent'", edit_config(latent=None)),
    case("config-unknown-recon", RESUME, 2, "recon 'laplace'", edit_config(recon="laplace")),
    case("config-unknown-preset", RESUME, 2, "the preset 'vq'", edit_config(preset="vq")),
    case("config-unknown-arch", RESUME, 2, "arch 'resnet'", edit_config(arch="resnet")),
    case("config-unknown-optimizer", RESUME, 2, "optimizer 'lamb'", edit_config(optimizer="lamb")),
    case("config-zero-hidden", RESUME, 2, "unusable hidden", edit_config(hidden=[0])),
    case("evaluate-config-lacks-lr", EVALUATE, 2, "its config lacks 'lr'", edit_config(lr=None)),
    case("evaluate-missing", ["evaluate", "{tmp}/none"], 2, "no such checkpoint file"),
    case("evaluate-nan-weights", EVALUATE, 1, "not usable", poison_weights),
    # the output folder
    case("out-holds-a-run", TRAIN, 2, "continue it with --resume", out_holds("metrics.json", "checkpoint.npz")),
    case("out-holds-metrics-only", TRAIN, 2, "cannot be resumed (no checkpoint)", out_holds("metrics.json")),
    case("out-is-a-file", TRAIN, 2, "cannot write to the output folder", out_is_a_file),
    case("out-unwritable", TRAIN, 2, "cannot write to the output folder", unwritable_out),
    case("out-name-too-long", [*TRAIN[:4], "{tmp}/new/sub/" + "a" * 300, *TRAIN[5:]], 2,
         "cannot write to the output folder"),
    # the device
    case("device-gpu-without-cupy", [*TRAIN, "--device", "gpu"], 2, "CuPy"),
    case("backend-variable-without-cupy", TRAIN, 2, "MINIVAE_BACKEND=cupy", no_gpu),
    # faults during training
    case("diverges-in-epoch-1", [*TRAIN, "--lr", "1e30", "--optimizer", "sgd"], 1, "no checkpoint was saved"),
    case("diverges-under-an-absurd-kl-weight", [*TRAIN, "--beta", "1e308"], 1,
         "try a lower --lr than 0.001, or a smaller --beta than 1e+308"),
    case("last-update-breaks-weights", [*TRAIN, "--lr", "1e308", "--batch-size", str(N_TRAIN)], 1,
         "the test loss became"),
    case("disk-full-first-save", TRAIN, 2, "No space left on device); free some space; nothing was saved",
         disk_full(checkpoint)),
    case("disk-full-second-save", [*TRAIN, "--epochs", "2"], 2, "holds the end of epoch 1; resume with:",
         disk_full(checkpoint, at_call=2)),
    case("disk-full-metrics", [*TRAIN, "--epochs", "2"], 2, "holds the end of epoch 2; resume with:",
         disk_full(training, at_call=2)),
    case("disk-full-figures", [*TRAIN[:-1], "--epochs", "1"], 2, "the trained model is saved in",
         raise_in(run_figures, "write_figures", FULL)),
    case("no-memory-mid-run", [*TRAIN, "--epochs", "2"], 2, "out of memory while training",
         fail_at_step(6, MemoryError())),
    case("array-too-big-mid-run", [*TRAIN, "--epochs", "2"], 2, "resume with:",
         fail_at_step(6, ValueError("array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum"))),
    case("sigterm-mid-epoch", [*TRAIN, "--epochs", "2"], 130, "holds epoch 2, step 3; resume with:",
         fail_at_step(7, signal_self(signal.SIGTERM))),
    case("sighup-mid-epoch", [*TRAIN, "--epochs", "2"], 130, "resume with:",
         fail_at_step(7, signal_self(signal.SIGHUP))),
    case("sigterm-in-epoch-1-then-again-in-save", TRAIN, 130, "interrupted again); nothing was saved",
         twice(signal.SIGTERM, step=3)),
    case("sigterm-in-epoch-2-then-again-in-save", [*TRAIN, "--epochs", "2"], 130,
         "interrupted again); " + "{out}/checkpoint.npz holds the end of epoch 1; resume with:",
         twice(signal.SIGTERM, step=7)),
    case("sigterm-while-drawing", [*TRAIN[:-1], "--epochs", "1"], 130, "interrupted after training",
         signal_while_drawing),
    case("ctrl-c-while-loading", TRAIN, 130, "nothing was written", stop_loading(signal.SIGINT)),
    case("sigterm-while-loading", TRAIN, 130, "nothing was written", stop_loading(signal.SIGTERM)),
    # what a run owns (issue 21: 1, 2): files it did not write, a folder another run holds
    case("out-holds-a-figure", TRAIN[:-1], 2, "samples.png, which this run would overwrite", out_holds_a_figure),
    case("out-in-use", TRAIN, 2, f"the output folder {{out}} is in use by process {os.getpid()}", in_use("out")),
    case("resume-in-use", RESUME, 2, "is in use by process", in_use("run")),
    case("resume-mid-epoch-in-use", [*RESUME[:2], "{mid}", *RESUME[3:]], 2, "is in use by process", in_use("mid")),
    # a lock file, a figure or metrics.json of that name that minivae did not write: left alone, the run refused
    case("out-holds-the-users-lock-file", TRAIN, 2, "{out}/.minivae-lock is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", users_file)),
    case("out-holds-a-link-named-like-the-lock", TRAIN, 2, "is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", link_to_users_file)),
    case("out-holds-a-broken-link-named-like-the-lock", TRAIN, 2, "is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", broken_link)),
    case("out-holds-a-folder-named-like-the-lock", TRAIN, 2, "is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", a_folder)),
    case("resume-beside-the-users-lock-file", RESUME, 2, "{run}/.minivae-lock is not a lock file minivae wrote",
         in_folder("run", ".minivae-lock", users_file)),
    case("out-holds-a-broken-link-named-like-a-figure", TRAIN[:-1], 2, "samples.png, which this run would overwrite",
         in_folder("out", "samples.png", broken_link)),
    case("out-holds-a-broken-link-named-like-the-page", TRAIN[:-1], 2, "explorer.html, which this run would overwrite",
         in_folder("out", "explorer.html", broken_link)),
    case("out-holds-a-broken-link-named-like-the-metrics", TRAIN, 2, "already holds a run (metrics.json)",
         in_folder("out", "metrics.json", broken_link)),
    case("resume-here-over-the-users-figure", [w for w in RESUME if w != "--no-plots"], 2,
         "samples.png, which this run would overwrite", in_folder("run", "samples.png", users_file)),
    case("resume-here-over-a-link-named-like-the-page", [w for w in RESUME if w != "--no-plots"], 2,
         "explorer.html, which this run would overwrite", in_folder("run", "explorer.html", link_to_users_file)),
    case("resume-here-with-a-folder-for-metrics", RESUME, 2, "{run}/metrics.json is not a file minivae wrote",
         in_folder("run", "metrics.json", a_folder)),
    case("resume-here-from-a-link-to-a-checkpoint", RESUME, 2, "{run}/checkpoint.npz is not a file minivae wrote",
         checkpoint_by_link),
    case("resume-here-over-a-pipe-named-like-the-page", [w for w in RESUME if w != "--no-plots"], 2,
         "explorer.html, which this run would overwrite", in_folder("run", "explorer.html", a_pipe)),
    case("explore-into-a-pipe", ["explore", "{run}", "--out", "{out}/page.html"], 2,
         "page.html exists and is not a page minivae wrote", in_folder("out", "page.html", a_pipe)),
    case("out-holds-a-hard-link-named-like-the-lock", TRAIN, 2, "is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", hard_link_to_users_file)),
    case("out-holds-the-users-lines-in-a-lock-file", TRAIN, 2, "is not a lock file minivae wrote",
         in_folder("out", ".minivae-lock", users_lines)),
    case("empty-out", [*TRAIN[:4], "", *TRAIN[5:]], 2, "argument --out: an empty path names nothing"),
    case("empty-resume", [*RESUME[:2], "", *RESUME[3:]], 2, "argument --resume: an empty path names nothing"),
    case("evaluate-an-empty-path", ["evaluate", ""], 2, "an empty path names nothing"),
    # the data a run trains on (3): labels and the labelled subset are part of it
    case("resume-cvae-on-relabelled-data", [*RESUME[:2], "{cvae}", *RESUME[3:], "--data-dir", "{tmp}/relabelled"], 2,
         "was trained on other data (its training labels differ)", relabelled),
    case("resume-m2-on-relabelled-data", [*RESUME[:2], "{m2}", *RESUME[3:], "--data-dir", "{tmp}/relabelled"], 2,
         "was trained on other data (its training labels differ)", relabelled),
    # everything a checkpoint holds is checked when it is loaded, and the refusal names the file (4)
    case("optimizer-step-count-nan", RESUME, 2, "{run}/checkpoint.npz: its optimizer's step count t is",
         set_entry("optim/t", np.nan)),
    case("optimizer-step-count-fraction", RESUME, 2, "step count t is", set_entry("optim/t", 2.5)),
    case("optimizer-step-count-negative", RESUME, 2, "step count t is", set_entry("optim/t", -3)),
    case("optimizer-moment-nan", RESUME, 2, "holds NaN or infinity",
         edit_checkpoint("run", lambda e, m: e.__setitem__("optim/V.mu.b", np.full_like(e["optim/V.mu.b"], np.nan)))),
    case("parameter-of-text", EVALUATE, 2, "is an array of <U",
         edit_checkpoint("run", lambda e, m: e.__setitem__("param/mu.b", e["param/mu.b"].astype(str)))),
    case("generator-of-another-kind", [*RESUME[:2], "{mid}", *RESUME[3:]], 2,
         "{mid}/checkpoint.npz: its noise generator state cannot be restored", set_meta("rng_state", mt19937_state(),
                                                                                         "mid")),
    case("generator-state-missing-mid-epoch", [*RESUME[:2], "{mid}", *RESUME[3:]], 2,
         "noise generator state cannot be restored", set_meta("rng_state", None, "mid")),
    case("generator-state-not-an-object", RESUME, 2, "generator state is not an object", set_meta("rng_state", [1])),
    case("step-count-fraction", RESUME, 2, "its step is 1.5, not a whole number", set_meta("step", 1.5)),
    case("epoch-count-negative", EVALUATE, 2, "its epoch is -1, not a whole number", set_meta("epoch", -1)),
    case("history-shorter-than-epochs", RESUME, 2, "its history holds 0 epochs, but it finished 1",
         set_meta("history", [])),
    case("running-sums-edited", [*RESUME[:2], "{mid}", *RESUME[3:]], 2, "running sums",
         set_extra("totals", {"sums": {"loss": "x"}, "examples": 3}, "mid")),
    case("progress-frames-damaged", RESUME, 2, "progress frames of samples", set_entry("array/frames_samples", [1.5])),
    case("data-folder-not-a-path", RESUME, 2, "data folder is not a path", set_extra("data_folder", 7)),
    case("evaluate-data-folder-not-a-path", EVALUATE, 2, "data folder is not a path", set_extra("data_folder", 7)),
    case("dataset-fingerprint-not-an-object", RESUME, 2, "{run}/checkpoint.npz: its dataset fingerprint is not an "
         "object", set_extra("dataset", "x")),
    case("explore-of-an-edited-history", ["explore", "{run}", "--out", "{tmp}/page.html"], 2,
         "{run}/checkpoint.npz: its history entry {{}} is not an epoch's losses", set_meta("history", [{}])),
    case("evaluate-of-a-history-of-text", EVALUATE, 2, "its history entry", set_meta("history", ["x"])),
    case("resume-of-a-history-without-losses", RESUME, 2, "lacks some of the losses kl, loss, recon",
         set_meta("history", [{"epoch": 1, "train": {}, "test": {}}])),
    case("a-lone-array-named-checkpoint-npz", EVALUATE, 2, "{run}/checkpoint.npz: not a readable minivae checkpoint "
         "(not the zip archive", lone_npy),
    case("resume-of-a-lone-array", RESUME, 2, "not the zip archive", lone_npy),
    case("evaluate-an-encrypted-checkpoint", EVALUATE, 2, "is encrypted", encrypted_member),
    case("explore-an-encrypted-checkpoint", ["explore", "{run}", "--out", "{tmp}/page.html"], 2, "is encrypted",
         encrypted_member),
    case("history-loss-past-a-float", EVALUATE, 2, "its history entry",
         edit_checkpoint("run", lambda e, m: m["history"][0]["test"].update(recon=10**400))),
    case("history-of-another-epoch", RESUME, 2, "its history entry", edit_checkpoint(
        "run", lambda e, m: m["history"][0].update(epoch=7))),
    case("seconds-past-a-float", RESUME, 2, "its seconds are not a number", set_extra("seconds", 10**400)),
    case("lr-past-a-float", EVALUATE, 2, "lr", edit_config(lr=10**400)),
    case("beta-past-a-float", ["explore", "{run}", "--out", "{tmp}/page.html"], 2, "beta", edit_config(beta=10**400)),
    case("iwae-with-a-kl-weight", RESUME, 2, "the IWAE bound has no KL weight",
         edit_config(objective="iwae", beta=0.5)),
    case("cvae-with-k-samples", [*RESUME[:2], "{cvae}", *RESUME[3:]], 2, "trains on the ELBO with one sample",
         edit_checkpoint("cvae", lambda e, m: m["config"].update(objective="iwae", k=5))),
    case("m2-labelled-weight-null-at-evaluate", ["evaluate", "{m2}", "--eval-samples", "2"], 2,
         "{m2}/checkpoint.npz: its config has an unusable labelled_weight (None)",
         edit_checkpoint("m2", lambda e, m: m["config"].update(labelled_weight=None))),
    case("config-sizes-not-the-weights", EVALUATE, 2, "its config has hidden 100000000, but none of its parameters",
         edit_config(hidden=[10**8])),
    case("entry-declares-an-absurd-size", RESUME, 2, "{run}/checkpoint.npz: the entry 'param/encoder.0.W' declares",
         declare_size("param/encoder.0.W", (10**15,))),
    case("evaluate-entry-declares-an-absurd-size", EVALUATE, 2, "the entry 'optim/t' declares",
         declare_size("optim/t", (10**8, 10**8))),
    case("an-entry-that-is-not-an-array", EVALUATE, 2, "{run}/checkpoint.npz: its entry 'notes' is not an array",
         add_member("notes", b"hello")),
    case("meta-nested-past-the-stack", EVALUATE, 2, "not a readable minivae checkpoint",
         set_entry("meta", "[" * 100_000 + "]" * 100_000)),
    case("preset-of-the-wrong-type", EVALUATE, 2, "the preset ['default']", edit_config(preset=["default"])),
    case("step-past-the-epoch", [*RESUME[:2], "{mid}", *RESUME[3:]], 2, "it stopped at step 99 of an epoch of 4",
         set_meta("step", 99, "mid")),
    case("labels-that-cannot-train-on-this-data", [*RESUME[:2], "{m2}", *RESUME[3:]], 2,
         "{m2}/checkpoint.npz: its config's labels 70 cannot train on this data",
         edit_checkpoint("m2", lambda e, m: m["config"].update(labels=70))),
    case("meta-declares-an-absurd-size", EVALUATE, 2, "the entry 'meta' declares", declare_size("meta", (10**6,))),
    # the bench checks its options first, and stops like the other commands (5)
    case("bench-data-dir-missing", ["bench", "--data-dir", "{tmp}/nowhere"], 2, "no such folder"),
    case("bench-data-dir-too-small", ["bench", "--data-dir", "{data}"], 2, "fewer than the 60,000 of the epochs"),
    case("bench-hidden-past-memory", ["bench", "--hidden", str(10**11)], 2, "choose a smaller --hidden or --latent"),
    case("bench-latent-past-numpy", ["bench", "--latent", str(10**19)], 2, TOO_BIG),
    case("bench-batch-past-memory", ["bench", "--batch-size", str(10**12)], 2, "smaller --batch-size"),
    case("bench-ctrl-c", ["bench", "--repeats", "1", "--epoch-repeats", "1", "--epoch-steps", "2"], 130,
         "interrupted; nothing was written", signal_in(timing, "alternate", signal.SIGINT)),
    case("bench-sigterm", ["bench", "--repeats", "1"], 130, "nothing was written",
         signal_in(timing, "alternate", signal.SIGTERM)),
    case("bench-sighup", ["bench", "--repeats", "1"], 130, "nothing was written",
         signal_in(timing, "alternate", signal.SIGHUP)),
    # every command stops on SIGTERM and SIGHUP as on Ctrl-C (7)
    case("evaluate-sigterm", EVALUATE, 130, "interrupted; nothing was written",
         signal_in(evaluate.metrics, "final_results", signal.SIGTERM)),
    case("evaluate-sighup", EVALUATE, 130, "nothing was written", signal_in(data, "load", signal.SIGHUP)),
    case("explore-sigterm", ["explore", "{run}", "--out", "{tmp}/page.html"], 130,
         "interrupted; nothing was written", signal_in(explore.explorer, "write_page", signal.SIGTERM)),
    case("explore-sighup", ["explore", "{run}"], 130, "nothing was written",
         signal_in(data, "load", signal.SIGHUP)),
    case("explore-of-an-edited-config", ["explore", "{run}", "--out", "{tmp}/page.html"], 2,
         "use beta 1, not 0.5; it was written by another version of minivae, or edited",
         edit_config(beta=0.5, objective="iwae")),
    case("gradcheck-sigterm", ["gradcheck"], 130, "interrupted; nothing was written",
         signal_in(gradcheck, "run_check", signal.SIGTERM)),
    case("gradcheck-ctrl-c", ["gradcheck"], 130, "nothing was written",
         signal_in(gradcheck, "run_check", signal.SIGINT)),
    case("sighup-in-epoch-2-then-again-in-save", [*TRAIN, "--epochs", "2"], 130,
         "interrupted again); {out}/checkpoint.npz holds the end of epoch 1; resume with:",
         twice(signal.SIGHUP, step=7)),
    case("resumed-into-a-new-folder-sigterm-in-its-first-step", [*RESUME, "--out", "{out}"], 130,
         "{out}/checkpoint.npz holds epoch 2, step 1; resume with:",
         fail_at_step(1, signal_self(signal.SIGTERM))),
    # sizes that cannot fit are refused before training, naming the option (9)
    case("iwae-k-past-memory", [*TRAIN, "--objective", "iwae", "--k", str(10**12)], 2,
         "decode at once) do not fit in memory"),
    case("k-past-memory-names-k", [*TRAIN, "--k", str(10**12)], 2, "; choose a smaller --k or --batch-size"),
    case("resume-k-past-memory", RESUME, 2, "{run}/checkpoint.npz: ", edit_config(k=10**12)),
    case("step-past-the-machines-memory", TRAIN, 2, "of memory and this machine has 9.5e-07 GiB; choose a "
         "smaller --batch-size", machine_of(1)),
    case("k-samples-past-the-machines-memory", [*TRAIN, "--k", "5000"], 2, "choose a smaller --k or --batch-size",
         machine_of(64 * 1024)),
    case("resume-on-a-machine-too-small", RESUME, 2, "it cannot be resumed on this machine", machine_of(1)),
    # a download that fails leaves no folder behind (10)
    case("offline-without-data", [w for w in TRAIN if w not in ("--data-dir", "{data}")], 2, "could not download",
         refused_mirrors),
    case("offline-without-mirrors", [w for w in TRAIN if w not in ("--data-dir", "{data}")], 2, "no mirrors"),
]


def run_case(argv, world, capsys):
    """Run the case's command in process; returns (exit code, stderr)."""
    words = [w.format(data=world.data, out=world.out, run=world.run, tmp=world.tmp, cvae=world.cvae, m2=world.m2,
                      mid=world.mid) for w in argv]
    capsys.readouterr()
    try:
        code = COMMANDS[words[0]](words[1:])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def assert_ends_cleanly(code, err, expected_code, phrase, folder):
    """The exit code, the phrase in one line, no traceback, no temporary file, no empty folder."""
    assert code == expected_code, err
    assert "Traceback" not in err and "Warning" not in err and "usage:" not in err, err
    said = [line for line in err.splitlines() if "error:" in line or line.startswith("interrupted")]
    assert len(said) == 1 and phrase in said[0], err
    if code == 130:
        assert "error:" not in err
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name], "a temporary file was left"
    assert not [p for p in folder.rglob("*") if p.is_dir() and not any(p.iterdir())], "an empty folder was left"


@pytest.mark.parametrize("argv, code, phrase, setup", CASES)
def test_fault(argv, code, phrase, setup, tiny, finished, labelled_runs, stopped, tmp_path, monkeypatch, capsys):
    if (setup is no_gpu or "gpu" in argv) and has_cupy():
        pytest.skip("CuPy is installed here")
    world = World(tmp_path, tiny, tmp_path / "run", monkeypatch)
    shutil.copytree(finished, world.run)
    for name, run in labelled_runs.items():
        shutil.copytree(run, tmp_path / name)
    shutil.copytree(stopped, world.mid)
    if setup is not None:
        setup(world)
    result, err = run_case(argv, world, capsys)
    assert_ends_cleanly(result, err, code, phrase.format(out=world.out, run=world.run, mid=world.mid, m2=world.m2),
                        tmp_path)


# ---------------------------------------------------------------- the demos, as students start them

DEMOS = REPO / "demos"
SCRIPTS = sorted(p.name for p in DEMOS.glob("*.py") if not p.name.startswith("_"))
BAD_VALUE = {"003_conv_vae.py": ["--train-size", "0"], "anomaly_detection.py": ["--holdout", "12"],
             "step_through.py": ["--batch", "0"], "vae_vs_autoencoder.py": ["--threads", "0"]}  # others: --seed -1
DEMO_CASES = [(s, "bad-value", BAD_VALUE.get(s, ["--seed", "-1"]), "argument") for s in SCRIPTS]
DEMO_CASES += [(s, "no-gpu", [], "MINIVAE_BACKEND=cupy") for s in SCRIPTS]
DEMO_CASES += [("000_binarized_mlp.py", "missing-data", ["--data-dir", "{tmp}/nowhere"], "no such folder")]
DEMO_CASES += [("002_latent_2d.py", "out-is-a-file", ["--quick", "--out", "{tmp}/a-file"], "choose another --out")]
DEMO_CASES += [("step_through.py", "too-big", ["--hidden", str(10**20)], "out of memory")]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Every demo case started at once (each is mostly Python starting up), and waited for when asked."""
    tmp = tmp_path_factory.mktemp("demos")
    (tmp / "a-file").write_text("not a folder")
    started = {}
    for script, what, extra, _ in DEMO_CASES:
        out = tmp / f"{script}-{what}"
        env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "MINIVAE_BACKEND": "cupy" if what == "no-gpu" else "numpy"}
        args = [w.format(tmp=tmp) for w in extra]
        args += ["--out", str(out)] if script != "step_through.py" and "--out" not in extra else []
        if what == "no-gpu" and script != "step_through.py":
            args.append("--quick")
        started[script, what] = subprocess.Popen([sys.executable, str(DEMOS / script), *args], cwd=REPO, env=env,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield tmp, {key: process for key, process in started.items()}
    for process in started.values():
        process.kill()


@pytest.mark.parametrize("script, what, extra, phrase", DEMO_CASES, ids=[f"{c[0][:-3]}-{c[1]}" for c in DEMO_CASES])
def test_demo_fault(script, what, extra, phrase, demo_runs):
    if what == "no-gpu" and has_cupy():
        pytest.skip("CuPy is installed here")
    tmp, started = demo_runs
    _, err = started[script, what].communicate(timeout=120)
    assert_ends_cleanly(started[script, what].returncode, err, 2, phrase, tmp)


def has_cupy():
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- faults followed through


def numbers(out):
    """What a run computed, less the timings: the per-epoch losses and the final parameters."""
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads((out / "metrics.json").read_text())[
        "history"]]
    return history, checkpoint.load(out).params


def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_numbers(tiny, tmp_path, monkeypatch, capsys):
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert train.main(["--data-dir", str(tiny), "--out", str(reference), "--epochs", "2", *SMALL]) == 0
    fail_at_step(6, signal_self(signal.SIGTERM))(World(tmp_path, tiny, out, monkeypatch))
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL]) == 130
    monkeypatch.undo()
    command = capsys.readouterr().err.split("resume with: ")[1].split()
    assert "--data-dir" not in command  # the checkpoint knows where the data is
    assert train.main(command[3:]) == 0
    (history, params), (expected_history, expected_params) = numbers(out), numbers(reference)
    assert history == expected_history and all(np.array_equal(params[k], expected_params[k]) for k in params)


def test_disk_full_keeps_a_checkpoint_that_the_printed_command_resumes(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    disk_full(checkpoint, at_call=2)(World(tmp_path, tiny, out, monkeypatch))
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL]) == 2
    monkeypatch.undo()
    command = capsys.readouterr().err.split("resume with: ")[1].split()
    assert checkpoint.load(out).epoch == 1
    assert train.main(command[3:]) == 0 and checkpoint.load(out).epoch == 2


def test_temporary_files_left_by_a_sigkill_are_removed_at_the_next_start(tiny, finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    orphans = [run / ".minivae-tmp.checkpoint.npz.k3j9x2.tmp.npz", run / ".minivae-tmp.metrics.json.a8b7c6.tmp.json",
               run / ".minivae-tmp.loss_curves.png.x1y2z3.tmp.png"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    assert train.main(["--resume", str(run), "--epochs", "2", "--no-plots", "--eval-samples", "0"]) == 0
    assert not any(orphan.exists() for orphan in orphans)


def test_evaluate_and_resume_find_the_data_the_run_used_without_data_dir(finished, tmp_path, capsys):
    run = shutil.copytree(finished, tmp_path / "run")  # and no MINIVAE_DATA_DIR, cache or download (offline)
    assert evaluate.main([str(run), "--eval-samples", "0"]) == 0
    assert train.main(["--resume", str(run), "--epochs", "2", "--no-plots", "--eval-samples", "0"]) == 0


def test_evaluate_needs_only_the_two_test_files(tiny, finished, tmp_path):
    test_files = tmp_path / "test-only"
    test_files.mkdir()
    for name in data.FILES[2:]:
        shutil.copy(tiny / name, test_files / name)
    assert evaluate.main([str(finished), "--data-dir", str(test_files), "--eval-samples", "0"]) == 0


def test_resuming_rewrites_metrics_json_from_the_checkpoint(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / "metrics.json").write_text("{}")  # as if killed between the checkpoint and metrics.json
    assert train.main(["--resume", str(run), "--epochs", "1", "--no-plots", "--eval-samples", "0"]) == 0
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())["history"]] == [1]


def test_divergence_right_after_resuming_blames_the_checkpoint_not_the_learning_rate(finished, tmp_path, monkeypatch,
                                                                                     capsys):
    run = shutil.copytree(finished, tmp_path / "run")
    fail_at_step(1, lambda: None)(World(tmp_path, None, run, monkeypatch))
    poison_weights(World(tmp_path, None, run, monkeypatch))
    assert train.main(["--resume", str(run), "--epochs", "2", "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "may hold damaged weights" in err and "--lr" not in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_fails_before_training(tiny, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    assert train.main(["--data-dir", str(tiny), "--out", str(folder / "run"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "epoch" not in err


def test_the_thread_count_is_recorded_and_may_change_on_resume(tiny, tmp_path):
    out = tmp_path / "run"
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "1", "--threads", "2", *SMALL]) == 0
    assert checkpoint.load(out).extra["threads"] == 2
    assert train.main(["--resume", str(out), "--epochs", "2", "--threads", "1", "--no-plots"]) == 0
    assert checkpoint.load(out).extra["threads"] == 1


def test_every_user_error_has_a_one_line_explanation():
    for error in (cli.UsageError("a\nb"), OSError(28, "No space left on device"), MemoryError(),
                  ValueError("Maximum allowed dimension exceeded")):
        assert "\n" not in cli.explain(error)
    assert cli.explain(ValueError("a bug")) is None  # which keeps its traceback


# ---------------------------------------------------------------- a second signal at every point of the stop's save


class SignalsAt:
    """files.py's `os`, with a signal sent to this process as call number `at` (of those made once `armed`) begins,
    or as it returns: every point of a save's rename, chmod, file and folder syncs. `more`: further calls that send
    one too (a third signal, a fourth)."""

    def __init__(self, at, after, signum=signal.SIGTERM, more=0):
        self.at, self.after, self.signum, self.more = at, after, signum, more
        self.armed, self.calls = False, 0

    def __getattr__(self, name):
        real = getattr(os, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            if not self.armed:
                return real(*args, **kwargs)
            self.calls += 1
            hit = self.at <= self.calls <= self.at + self.more
            if hit and not self.after:
                os.kill(os.getpid(), self.signum)
            result = real(*args, **kwargs)
            if hit and self.after:
                os.kill(os.getpid(), self.signum)
            return result

        return call


SAVE_CALLS = 7  # files.os calls in one atomic save: close, fsync, chmod, replace, open, fsync, close (the folder's)
POINTS = [pytest.param(at, after, 0, id=f"call-{at}-{'after' if after else 'before'}")
          for at in range(1, SAVE_CALLS + 1) for after in (False, True)]
POINTS += [pytest.param(at, True, 2, id=f"call-{at}-after-and-two-more") for at in (1, 4, 6)]


@pytest.mark.parametrize("at, after, more", POINTS)
def test_a_second_signal_anywhere_in_the_stops_save_is_said_as_the_file_holds_it(at, after, more, tiny, tmp_path,
                                                                                  monkeypatch, capsys):
    out = tmp_path / "run"
    signals = SignalsAt(at, after, more=more)
    monkeypatch.setattr(files, "os", signals)

    def first():  # a stop during step 7 (epoch 2, step 3): from then on, count the save's calls
        signals.armed = True
        os.kill(os.getpid(), signal.SIGTERM)

    fail_at_step(7, first)(World(tmp_path, tiny, out, monkeypatch))
    code = train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL])
    err = capsys.readouterr().err
    assert_ends_cleanly(code, err, 130, "resume with:", tmp_path)
    assert signals.calls >= at  # the second signal was sent
    holds = training.on_disk(out / checkpoint.FILENAME)
    assert f"{out / checkpoint.FILENAME} holds {holds};" in err  # what the line says is what the file holds
    cut = "saving the current step failed (interrupted again)" in err
    assert holds == ("the end of epoch 1" if cut else "epoch 2, step 3")
    assert cut == (at <= 2)  # only the temporary file's making, writing and fsync can be cut short
    monkeypatch.undo()
    command = err.split("resume with: ")[1].split()
    assert train.main(command[3:]) == 0 and checkpoint.load(out).epoch == 2


@pytest.mark.parametrize("where", ["writing", "after"])
def test_a_second_signal_while_the_stop_writes_or_right_after_it_saved(where, tiny, tmp_path, monkeypatch, capsys):
    out, armed = tmp_path / "run", []
    original_savez, original_save = np.savez, training.save_checkpoint

    def savez(*args, **kwargs):
        if armed and where == "writing":
            os.kill(os.getpid(), signal.SIGTERM)
        return original_savez(*args, **kwargs)

    def save_checkpoint(*args, **kwargs):
        result = original_save(*args, **kwargs)
        if armed and where == "after":
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(np, "savez", savez)
    monkeypatch.setattr(training, "save_checkpoint", save_checkpoint)
    fail_at_step(7, lambda: (armed.append(1), os.kill(os.getpid(), signal.SIGTERM)))(World(tmp_path, tiny, out,
                                                                                             monkeypatch))
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL]) == 130
    err = capsys.readouterr().err
    holds = "the end of epoch 1" if where == "writing" else "epoch 2, step 3"
    assert_ends_cleanly(130, err, 130, f"{out / checkpoint.FILENAME} holds {holds}; resume with:", tmp_path)
    assert training.on_disk(out / checkpoint.FILENAME) == holds
    assert ("interrupted again" in err) == (where == "writing")


# ---------------------------------------------------------------- programs, as users start them


ENV = os.environ | {"OPENBLAS_NUM_THREADS": "1", "MINIVAE_BACKEND": "numpy", "PYTHONPATH": str(REPO),
                    "PYTHONIOENCODING": "utf-8"}  # strict UTF-8 out: a path that is not UTF-8 must still print
NOT_UTF8 = "\udcff"  # the byte 0xff in a file name, as Python decodes it (os.fsdecode(b"\xff"))
TRAIN_PROGRAM = ["-m", "minivae.train", *SMALL]
PROGRAM_CASES = [  # (name, arguments of python, exit code, phrase of the one line; None for a run that ends well)
    ("train-out-not-utf8", [*TRAIN_PROGRAM, "--data-dir", "{data}", "--out", f"{{tmp}}/run-{NOT_UTF8}", "--epochs",
                            "1"], 0, None),
    ("train-data-dir-not-utf8", [*TRAIN_PROGRAM, "--data-dir", f"{{tmp}}/nowhere-{NOT_UTF8}", "--out", "{tmp}/x"], 2,
     "no such folder"),
    ("evaluate-checkpoint-not-utf8", ["-m", "minivae.evaluate", f"{{tmp}}/none-{NOT_UTF8}"], 2,
     "no such checkpoint file"),
    ("bench-data-dir-not-utf8", ["-m", "minivae.bench", "--data-dir", f"{{tmp}}/nowhere-{NOT_UTF8}"], 2,
     "no such folder"),
    ("demo-out-not-utf8", [str(DEMOS / "002_latent_2d.py"), "--quick", "--out", f"{{tmp}}/demo-{NOT_UTF8}"], 0, None),
    ("demo-data-dir-not-utf8", [str(DEMOS / "000_binarized_mlp.py"), "--data-dir", f"{{tmp}}/nowhere-{NOT_UTF8}",
                                "--out", "{tmp}/y"], 2, "no such folder"),
]


def start_program(args, cwd=REPO):
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def program_runs(tiny, tmp_path_factory):
    """Every program case started at once, and waited for when asked."""
    tmp = tmp_path_factory.mktemp("programs")
    started = {name: start_program([w.format(tmp=tmp, data=tiny) for w in args]) for name, args, _, _ in PROGRAM_CASES}
    yield tmp, started
    for process in started.values():
        process.kill()


@pytest.mark.parametrize("name, args, code, phrase", PROGRAM_CASES, ids=[c[0] for c in PROGRAM_CASES])
def test_program(name, args, code, phrase, program_runs):
    tmp, started = program_runs
    printed, err = started[name].communicate(timeout=120)
    if phrase is None:
        assert started[name].returncode == 0 and "Traceback" not in err, err
        assert NOT_UTF8 not in printed and "\\udcff" in printed  # the path, escaped where it is not text
    else:
        assert_ends_cleanly(started[name].returncode, err, code, phrase, tmp)


@pytest.fixture(scope="module")
def bigger(tmp_path_factory):
    """Data for runs long enough to be stopped from outside while they train (an epoch of SMALL: ~375 steps)."""
    return write_dataset(tmp_path_factory.mktemp("bigger"), n_train=6000, n_test=500)


@pytest.mark.parametrize("program", [TRAIN_PROGRAM, [str(DEMOS / "000_binarized_mlp.py")]], ids=["train", "demo"])
def test_a_stop_while_a_program_loads_is_one_line(program, bigger, tmp_path):
    process = start_program([*program, "--data-dir", str(bigger), "--out", str(tmp_path / "out")])
    time.sleep(0.3)  # Python has started (run/stops.early), and loads NumPy, Matplotlib, the data
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert_ends_cleanly(process.returncode, err, 130, "interrupted", tmp_path)


def read_until(process, start):
    """Read the program's stdout until a line starts with `start`; returns that line."""
    for line in process.stdout:
        if line.startswith(start):
            return line
    raise AssertionError(f"the program ended before printing {start!r}: {process.communicate()[1][-2000:]}")


def said_holds(err, out):
    """What the stop's line says checkpoint.npz in `out` holds."""
    return re.search(rf"{re.escape(str(out / checkpoint.FILENAME))} holds (.+?)(?:;| \(|$)", err).group(1)


@pytest.mark.parametrize("delays_ms", [[0], [0, 0], [0, 1], [0, 5], [0, 30], [0, 60], [0, 30, 60]],
                         ids=lambda d: "+".join(map(str, d)))
def test_signals_from_outside_at_any_moment_say_what_the_checkpoint_holds(delays_ms, bigger, tmp_path):
    out = tmp_path / "run"
    process = start_program([*TRAIN_PROGRAM, "--data-dir", str(bigger), "--out", str(out), "--epochs", "30"])
    read_until(process, "epoch   1/")
    for delay in delays_ms:
        time.sleep(delay / 1000)
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert_ends_cleanly(process.returncode, err, 130, "resume with: python -m minivae.train --resume", tmp_path)
    assert said_holds(err, out) == training.on_disk(out / checkpoint.FILENAME)


@pytest.mark.parametrize("script, signum", [("000_binarized_mlp.py", signal.SIGTERM),
                                            ("conditional.py", signal.SIGHUP)])
def test_a_demo_stopped_while_it_trains_saves_the_step_and_says_how_to_resume(script, signum, bigger, tmp_path):
    out = tmp_path / "demo"
    process = start_program([str(DEMOS / script), "--data-dir", str(bigger), "--out", str(out), "--full"])
    read_until(process, "epoch   1/")
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert_ends_cleanly(process.returncode, err, 130, f"resume with: python -m minivae.train --resume {out}", tmp_path)
    holds = said_holds(err, out)
    assert holds == training.on_disk(out / checkpoint.FILENAME) and holds != "the end of epoch 0"
    ckpt = checkpoint.load(out)
    command = err.split("resume with: ")[1].split()
    command[command.index("--epochs") + 1] = str(ckpt.epoch + 1)  # one epoch more is enough to show it goes on
    assert train.main(command[3:]) == 0 and checkpoint.load(out).epoch == ckpt.epoch + 1


def test_evaluate_stopped_from_outside_is_one_line(bigger, tmp_path):
    run = tmp_path / "run"
    assert train.main(["--data-dir", str(bigger), "--out", str(run), "--epochs", "1", *SMALL]) == 0
    process = start_program(["-m", "minivae.evaluate", str(run), "--eval-samples", "5000"])
    read_until(process, str(run))  # the checkpoint's line: loaded, now evaluating
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert_ends_cleanly(process.returncode, err, 130, "interrupted; nothing was written", tmp_path)


# ---------------------------------------------------------------- what a run owns


USERS_FILES = {".config.json.tmp": b"the user's config", ".checkpoint.npz.x.tmp.npz": b"minivae 0.1's naming, not ours",
               ".metrics.json.tmp": b"{}", "notes.txt": b"notes", ".minivae-tmp-notes": b"not ours either",
               "checkpoint.npz.bak": b"a backup"}
OURS = ".minivae-tmp.checkpoint.npz.ab12cd.tmp.npz"  # what a SIGKILL left of a save: ours, cleared at the next start


def holding_users_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in USERS_FILES.items():
        (folder / name).write_bytes(content)
    (folder / OURS).write_bytes(b"half a checkpoint")
    return folder


def users_files_intact(folder):
    return all((folder / name).read_bytes() == content for name, content in USERS_FILES.items())


def test_files_minivae_did_not_write_survive_a_run_a_stop_a_resume_and_a_demo(tiny, tmp_path, monkeypatch):
    out = holding_users_files(tmp_path / "shared")
    fail_at_step(3, signal_self(signal.SIGTERM))(World(tmp_path, tiny, out, monkeypatch))
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "2", *SMALL]) == 130
    assert users_files_intact(out) and not (out / OURS).exists()
    monkeypatch.undo()
    (out / OURS).write_bytes(b"half a checkpoint")
    assert train.main(["--resume", str(out), "--epochs", "2", "--no-plots", "--eval-samples", "0"]) == 0
    assert users_files_intact(out) and not (out / OURS).exists()
    demo = holding_users_files(tmp_path / "demo")
    process = start_program([str(DEMOS / "002_latent_2d.py"), "--quick", "--out", str(demo)])
    assert process.wait(timeout=120) == 0, process.communicate()[1]
    assert users_files_intact(demo) and not (demo / OURS).exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(files.TEMP_PREFIX) or p.name == start.LOCK]


def test_a_lock_file_of_the_users_and_the_file_a_link_of_that_name_points_to_are_left_as_they_are(tiny, tmp_path,
                                                                                                     capsys):
    (tmp_path / "precious.txt").write_bytes(b"the user's own")
    for name, make in (("plain", lambda lock: lock.write_bytes(b"the user's own")),
                       ("link", lambda lock: lock.symlink_to(tmp_path / "precious.txt")),
                       ("broken-link", lambda lock: lock.symlink_to(tmp_path / "not-yet"))):
        out = tmp_path / name
        out.mkdir()
        lock = out / start.LOCK
        make(lock)
        assert train.main(["--data-dir", str(tiny), "--out", str(out), *SMALL]) == 2
        assert lock.is_symlink() if name != "plain" else lock.read_bytes() == b"the user's own"  # still there
    assert (tmp_path / "precious.txt").read_bytes() == b"the user's own" and not (tmp_path / "not-yet").exists()


def test_a_run_resumed_in_its_own_folder_draws_its_own_figures_again(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    with_figures = [w for w in SMALL if w != "--no-plots"]
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "1", *with_figures]) == 0
    drawn = {name: (out / name).stat().st_mtime_ns for name in (*run_figures.FIGURES, "explorer.html")
             if (out / name).exists()}
    assert "samples.png" in drawn and "explorer.html" in drawn
    assert train.main(["--resume", str(out), "--epochs", "2", "--eval-samples", "2"]) == 0
    assert all((out / name).stat().st_mtime_ns > when for name, when in drawn.items())


def test_a_run_that_fails_in_a_folder_it_did_not_make_leaves_the_folder_and_its_files(tiny, tmp_path, capsys):
    out = holding_users_files(tmp_path / "shared")
    assert train.main(["--data-dir", str(tiny), "--out", str(out), *SMALL, "--lr", "1e30", "--optimizer", "sgd"]) == 1
    assert users_files_intact(out) and sorted(p.name for p in out.iterdir()) == sorted(USERS_FILES)


def test_a_second_run_is_refused_while_the_first_trains_and_a_killed_run_leaves_no_lock(bigger, tmp_path, capsys):
    out = tmp_path / "run"
    first = start_program([*TRAIN_PROGRAM, "--data-dir", str(bigger), "--out", str(out), "--epochs", "30"])
    read_until(first, "epoch   1/")  # it has saved an epoch, and trains on
    try:
        for argv in (["--data-dir", str(bigger), "--out", str(out), *SMALL], ["--resume", str(out), "--epochs", "2"]):
            assert train.main(argv) == 2
            err = capsys.readouterr().err
            assert f"error: the output folder {out} is in use by process {first.pid} (python" in err
            assert "minivae.train" in err and err.count("\n") == 1
        demo = start_program([str(DEMOS / "002_latent_2d.py"), "--quick", "--out", str(out)])
        _, err = demo.communicate(timeout=120)
        # (the folder is not checked for temporary files here: the first run may be in the middle of a save)
        assert_ends_cleanly(demo.returncode, err, 2, f"is in use by process {first.pid}", tmp_path / "nothing")
    finally:
        first.kill()  # SIGKILL: no clean-up at all
        first.wait()
    assert (out / start.LOCK).exists()  # the killed run's lock file is left, and locks nothing
    assert train.main(["--resume", str(out), "--epochs", str(checkpoint.load(out).epoch + 1), "--no-plots"]) == 0
    assert not (out / start.LOCK).exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # what the kill left of a save, cleared by the resume


@pytest.mark.parametrize("round_", range(3))
def test_two_runs_started_at_once_in_one_folder_one_trains_and_the_other_is_refused(round_, bigger, tmp_path):
    out = tmp_path / "new" / "run"  # made by whichever claims it first
    runs = [start_program([*TRAIN_PROGRAM, "--data-dir", str(bigger), "--out", str(out), "--epochs", "1"])
            for _ in range(2)]
    ended = [(run.wait(timeout=120), run.communicate()[1]) for run in runs]
    assert sorted(code for code, _ in ended) == [0, 2], ended
    refused = next(err for code, err in ended if code == 2)
    assert "is in use by process" in refused or "already holds a run" in refused
    assert_ends_cleanly(2, refused, 2, "error: ", tmp_path)
    assert checkpoint.load(out).epoch == 1 and json.loads((out / "metrics.json").read_text())["final"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.json"]


@pytest.mark.parametrize("fault, says, code", [(training.Diverged("the test loss became nan after epoch 2"),
                                                "the test loss became nan", 1),
                                               (training.SaveFailed("could not save the run"), "free some space", 2)])
def test_a_stop_while_a_fault_is_handled_leaves_the_fault_its_line_and_the_good_checkpoint(fault, says, code, tiny,
                                                                                          tmp_path, monkeypatch,
                                                                                          capsys):
    out = tmp_path / "run"
    original = training.train

    def train_then_fail(model, optimizer, dataset, config, state, out):
        original(model, optimizer, dataset, config, state, out)  # epoch 1, saved
        config["epochs"] = 2
        model.params["mu.b"][...] = np.nan  # what a broken last update leaves
        raise fault

    settle, calls = stops.settle, []

    def stop_then_settle():  # a SIGTERM just as the fault is being handled, before the stop handling settles
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        settle()

    monkeypatch.setattr(training, "train", train_then_fail)
    monkeypatch.setattr(stops, "settle", stop_then_settle)
    assert train.main(["--data-dir", str(tiny), "--out", str(out), "--epochs", "1", *SMALL]) == code
    assert_ends_cleanly(code, capsys.readouterr().err, code, says, tmp_path)
    assert training.on_disk(out / checkpoint.FILENAME) == "the end of epoch 1"
    assert np.isfinite(checkpoint.load(out).params["mu.b"]).all()  # not the broken weights
