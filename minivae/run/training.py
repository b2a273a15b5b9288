"""The training loop: epochs of optimizer steps, each closed by a test loss, a printed line and a checkpoint.

One epoch, as the loop below runs it:

    order, noise = the epoch's own generators (seeds.py)
    for rows in the training set cut into shuffled batches:
        x = x_train[rows]                     (a fresh binary draw of each image with dynamic binarization)
        eps = noise.standard_normal(...)      (drawn on the host, so CPU and GPU runs see the same numbers)
        loss = model.step(x, eps=eps)         forward and backward: fills model.grads (iwae.step for the
                                              K-sample objectives; with the labels, or a few labelled images,
                                              for the conditional VAE and M2: feeds.py)
        optimizer.step(model.grads)           updates model.params in place
    test loss, one printed line, checkpoint.npz, then metrics.json

`RunState` is where a run stands, and all of it goes into the checkpoint: epochs finished, steps done in the
next one, the running totals of the unfinished epoch and its noise generator's state. So a run resumed from a
checkpoint -- even one saved mid-epoch -- gives bit for bit the numbers of a run that was never stopped.

Stopping. While a run trains, a first Ctrl-C, SIGTERM or SIGHUP only sets `state.stop_requested` (stops.py);
the loop looks at it between two steps and raises KeyboardInterrupt there, so that the command (faults.py) saves
a step that is whole. A second signal may cut a step short, never an optimizer update and its record, nor the
close of an epoch (stops.whole): the state saved is always one the run was really in. A loss that turns NaN or
infinite raises Diverged before the optimizer can spread it into the weights, and so does a test loss that does
(an epoch's last update broke the weights) before they are saved. The checkpoint is written before
metrics.json, so metrics.json never describes an epoch the checkpoint does not hold.
"""

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from minivae.core import backend
from minivae.run import checkpoint, data, feeds, metrics, progress, seeds, stops
from minivae.run.files import atomic_file, one_line
from minivae.run.kinds import kind_of

METRICS = "metrics.json"
BAR_EVERY = 20  # steps between progress-bar updates: the steps in between pay nothing for the bar


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class SaveFailed(Exception):
    """The checkpoint or metrics.json of an epoch could not be written (a full disk, say); the one before is kept."""


@dataclass
class Totals:
    """Running sums over the examples seen so far in an epoch: its mean training loss is sum / examples.

    One sum per part of the model's loss, by name: loss, recon and kl for a VAE (vae.Loss); loss, labelled,
    classification and unlabelled for M2 (m2.M2Loss).
    """

    sums: dict = field(default_factory=dict)
    examples: int = 0

    def add(self, loss, n):
        """Add a batch of n examples whose mean losses are `loss` (a vae.Loss or m2.M2Loss)."""
        for name, value in loss._asdict().items():
            self.sums[name] = self.sums.get(name, 0.0) + value * n
        self.examples += n

    def means(self):
        n = max(self.examples, 1)
        return {name: total / n for name, total in self.sums.items()}


@dataclass
class RunState:
    """Where a run stands. All of it is saved in the checkpoint, so that a resumed run continues exactly."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps done in epoch `epoch + 1`
    totals: Totals = field(default_factory=Totals)  # of epoch `epoch + 1` so far
    noise_state: dict | None = None  # that epoch's noise generator after those steps
    seconds: float = 0.0  # time spent on that epoch before an interruption
    history: list = field(default_factory=list)  # one dict per finished epoch, as in metrics.json
    frames: dict = field(default_factory=lambda: {"samples": [], "reconstructions": []})  # for the progress GIFs
    data_folder: str | None = None  # where the data was read from, so that resuming and evaluating find it
    dataset_fingerprint: dict | None = None  # what the data was, so that a resume on other data is refused
    threads: int | None = None  # BLAS threads (--threads): they may change the last bits of the sums, not the config
    updating: bool = False  # True while the optimizer writes the parameters: no checkpoint can be taken then
    stop_requested: bool = False  # set by a signal; the loop stops before the next step
    saved: str | None = None  # what checkpoint.npz on disk holds, e.g. "the end of epoch 3"

    @classmethod
    def from_checkpoint(cls, ckpt):
        """Where the run that saved `ckpt` stood. Everything read is checked first: CheckpointError naming the
        file for an entry a run could not have written (see `_state_problem`)."""
        problem = _state_problem(ckpt)
        if problem:
            raise checkpoint.CheckpointError(f"{ckpt.path}: {problem}; it was written by another version of minivae, "
                                             f"or edited")
        extra = ckpt.extra
        frames = {name: list(ckpt.arrays.get(f"frames_{name}", [])) for name in ("samples", "reconstructions")}
        return cls(epoch=ckpt.epoch, step=ckpt.step, totals=Totals(**_totals(extra)),
                   noise_state=ckpt.rng_state, seconds=extra.get("seconds", 0.0), history=ckpt.history,
                   frames=frames, data_folder=extra.get("data_folder"),
                   dataset_fingerprint=extra.get("dataset"), saved=describe(ckpt.epoch, ckpt.step))


def _totals(extra):
    """The running sums of the unfinished epoch, as Totals takes them. The first checkpoints kept them as a list
    [loss, recon, kl, examples] under "sums"."""
    if "totals" in extra or "sums" not in extra:
        return extra.get("totals") or {}
    sums = extra["sums"]
    if not isinstance(sums, list) or len(sums) != 4:
        return sums
    return {"sums": dict(zip(("loss", "recon", "kl"), sums[:3])), "examples": sums[3]}


HISTORY_LOSSES = {False: {"loss", "recon", "kl"}, True: {"loss", "labelled", "unlabelled", "classification"}}  # M2's


def _state_problem(ckpt):
    """What in a checkpoint a RunState cannot continue from, in words, or None: one history entry per finished
    epoch, running sums of numbers, a noise generator state of the kind seeds.py makes (needed mid-epoch), the
    progress frames as progress.py makes them. (What every command reads, the history's entries, the data's folder
    and fingerprint among them, checkpoint.load has checked.)"""
    if len(ckpt.history) != ckpt.epoch:
        return f"its history holds {len(ckpt.history)} epochs, but it finished {ckpt.epoch}"
    losses = HISTORY_LOSSES[kind_of(ckpt.config).semi_supervised]  # what finish_epoch records, and the figures read
    for record in ckpt.history:
        if not all(losses <= set(record[part]) for part in ("train", "test")):
            return f"its history entry {record!r:.60} lacks some of the losses {', '.join(sorted(losses))}"
    totals = _totals(ckpt.extra)
    sums = totals.get("sums", {}) if isinstance(totals, dict) else None
    if not (isinstance(totals, dict) and set(totals) <= {"sums", "examples"} and isinstance(sums, dict)
            and all(checkpoint.is_number(v) for v in sums.values())
            and isinstance(totals.get("examples", 0), int) and totals.get("examples", 0) >= 0):
        return f"its running sums {totals!r:.60} are not what a run keeps"
    if not checkpoint.is_number(ckpt.extra.get("seconds", 0.0)):
        return "its seconds are not a number"
    if ckpt.rng_state is not None or ckpt.step:  # mid-epoch the loop goes on from it; at an epoch's end it is None
        try:
            seeds.generator(0, seeds.NOISE).bit_generator.state = ckpt.rng_state
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            return f"its noise generator state cannot be restored ({one_line(err)})"
    # (at most `count` images a frame: a test set smaller than PROGRESS_IMAGES gives fewer reconstructions)
    for name, count in (("samples", progress.PROGRESS_SAMPLES), ("reconstructions", progress.PROGRESS_IMAGES)):
        frames = ckpt.arrays.get(f"frames_{name}")
        if frames is not None and (frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[2] != 784
                                   or not 1 <= frames.shape[1] <= count or len(frames) > ckpt.epoch):
            return f"its progress frames of {name} ({frames.dtype} of shape {frames.shape}) are not what a run keeps"
    return None


def describe(epoch, step):
    """Where a run stands, in words: 'the end of epoch 3' or 'epoch 4, step 120'."""
    return f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"


def on_disk(path):
    """What the checkpoint at `path` holds, in words (`describe`), or None when there is none that can be read:
    what a message about a stop says, from the file itself rather than from what the run meant to write."""
    try:
        return describe(*checkpoint.position(path))
    except checkpoint.CheckpointError:
        return None


def fingerprint(dataset, config):
    """What a run trains on, so that a resume on other data is refused: the dataset's name and sizes, a hash of
    every training image and, for a model that reads labels (kinds.py), of the training labels and (M2) of which
    images keep theirs; with a validation split, a hash of its images (and labels). Hashing the 188 MB of a full
    training set takes a fraction of a second, once per start."""
    now = {"name": dataset.name, "train": len(dataset.x_train), "test": len(dataset.x_test),
           "images_sha256": _digest(dataset.x_train)}
    kind = kind_of(config)
    if kind.conditioned:
        now["labels_sha256"] = _digest(dataset.y_train)
    if kind.semi_supervised:
        now["labelled_sha256"] = _digest(feeds.choose_labelled(dataset.y_train, config["labels"], config["classes"],
                                                               config["seed"]))
    if dataset.x_val is not None:  # every epoch's validation loss is measured on them
        now["validation_sha256"] = _digest(dataset.x_val)
        if kind.conditioned:
            now["validation_labels_sha256"] = _digest(dataset.y_val)
    return now


def fingerprint_0_1(dataset):
    """The fingerprint minivae 0.1 saved: name, sizes and a hash of every 97th training image (no labels). A
    checkpoint that holds one is compared with this, so that it still resumes on the same data."""
    return {"name": dataset.name, "train": len(dataset.x_train), "test": len(dataset.x_test),
            "sample_sha256": _digest(dataset.x_train[::97])}


FINGERPRINT_PARTS = {"images_sha256": "training images", "labels_sha256": "training labels",
                     "labelled_sha256": "labelled images", "sample_sha256": "training images",
                     "validation_sha256": "validation images", "validation_labels_sha256": "validation labels"}


def _digest(array):
    """The first 16 hex digits of the SHA-256 of an array's bytes (host NumPy)."""
    array = np.ascontiguousarray(array)
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()[:16]


def steps_per_epoch(config, dataset):
    """The optimizer steps of one epoch: batches of the images the loop runs over (for M2, the unlabelled ones)."""
    rows = len(dataset.x_train) - (config["labels"] if kind_of(config).semi_supervised else 0)
    return -(-rows // config["batch_size"])


def save_checkpoint(path, model, optimizer, config, state):
    """checkpoint.npz with everything `RunState.from_checkpoint` needs. Atomic (see checkpoint.py)."""
    arrays = {f"frames_{name}": np.stack(f) for name, f in state.frames.items() if f}
    extra = {"totals": vars(state.totals), "seconds": state.seconds, "data_folder": state.data_folder,
             "dataset": state.dataset_fingerprint, "threads": state.threads}
    checkpoint.save(path, model, optimizer, config, state.epoch, state.step, state.history,
                    rng_state=state.noise_state, extra=extra, arrays=arrays)
    state.saved = describe(state.epoch, state.step)


def write_metrics(out, config, history, final=None):
    """metrics.json: the config, one entry per epoch, and the final results once there are some. Atomic."""
    record = {"config": config, "history": history} | ({"final": final} if final else {})
    with atomic_file(out / METRICS) as f:
        f.write((json.dumps(record, indent=1) + "\n").encode())


def train(model, optimizer, dataset, config, state, out):
    """Train from `state` up to config['epochs'] epochs; after each, write checkpoint.npz and metrics.json
    into the folder `out`. Raises KeyboardInterrupt (a stop was asked for), Diverged or SaveFailed."""
    seed, batch_size = config["seed"], config["batch_size"]
    dynamic = config["binarize"] == "dynamic"
    # On the device once; dynamic binarization draws on the host, so then the grayscale images stay there.
    x_train = dataset.x_train if dynamic else backend.to_device(dataset.x_train)
    feed = feeds.feed_for(config, dataset)  # the images an epoch runs over, and what a step takes
    while state.epoch < config["epochs"]:
        epoch = state.epoch + 1
        started = time.perf_counter() - state.seconds
        order = seeds.generator(seed, seeds.ORDER, epoch)
        noise = seeds.generator(seed, seeds.NOISE, epoch)
        if state.step:  # resuming mid-epoch: the same order (redrawn), the noise where it stopped
            noise.bit_generator.state = state.noise_state
        index_batches = [feed.rows[idx] for idx in data.batches(len(feed.rows), batch_size, order)]
        # The bar shows on a terminal only (disable=None), refreshed every BAR_EVERY steps.
        bar = tqdm(total=len(index_batches), initial=state.step, desc=f"epoch {epoch}/{config['epochs']}",
                   unit="step", leave=False, file=sys.stderr, mininterval=0.5, disable=None)
        # A diverging run would print NumPy's overflow warnings before our one-line message; the loss checks
        # are the guard, so those warnings are off here (and for the test loss in finish_epoch).
        try:
            with bar, np.errstate(over="ignore", invalid="ignore"):
                for rows in index_batches[state.step:]:
                    if state.stop_requested:
                        stops.disarm()  # a further signal waits for the save that this stop leads to
                        raise KeyboardInterrupt
                    if dynamic:  # a fresh Bernoulli draw of each image, on the host, then to the device
                        x = backend.to_device(data.binarize_batch(x_train[rows], noise))
                    else:
                        x = x_train[backend.to_device(rows)]
                    loss = feed.step(model, x, rows, noise)  # draws eps from noise; forward and backward
                    if not math.isfinite(loss.loss):
                        raise Diverged(f"the training loss became {loss.loss} at epoch {epoch}, "
                                       f"step {state.step + 1}")
                    with stops.whole():  # the update and its record, never one without the other
                        state.updating = True
                        optimizer.step(model.grads)
                        state.updating = False
                        state.step += 1
                        state.totals.add(loss, len(rows))
                        state.noise_state = noise.bit_generator.state
                    if state.step % BAR_EVERY == 0:
                        bar.set_postfix_str(f"loss {state.totals.means()['loss']:.2f}", refresh=False)
                        bar.update(state.step - bar.n)
        except KeyboardInterrupt:
            state.seconds = time.perf_counter() - started  # so that the resumed epoch's time adds up
            raise
        with np.errstate(over="ignore", invalid="ignore"):
            finish_epoch(model, optimizer, dataset, config, state, epoch, started, out)
        if state.stop_requested:  # asked during the evaluation or the save: the epoch is saved, stop here
            stops.disarm()
            raise KeyboardInterrupt


def finish_epoch(model, optimizer, dataset, config, state, epoch, started, out):
    """Close an epoch: its test (and validation) loss, the progress-GIF frames, a printed line, then
    checkpoint.npz and metrics.json, in that order."""
    seed, kind = config["seed"], kind_of(config)
    record = {"epoch": epoch, "train": state.totals.means(),
              "test": metrics.test_losses(model, kind, dataset.x_test, dataset.y_test, seed)}
    if not math.isfinite(record["test"]["loss"]):  # the epoch's last update broke the weights: do not save them
        raise Diverged(f"the test loss became {record['test']['loss']} after epoch {epoch}")
    if dataset.x_val is not None:
        record["val"] = metrics.test_losses(model, kind, dataset.x_val, dataset.y_val, seed)
    frames = progress.progress_frames(model, kind, dataset.x_test, dataset.y_test, seed)
    record["seconds"] = round(time.perf_counter() - started, 2)
    with stops.whole():  # the epoch in the history and the state at its end, never one without the other
        state.history.append(record)
        for name, frame in frames.items():
            state.frames[name].append(frame)
        state.epoch, state.step, state.totals, state.noise_state, state.seconds = epoch, 0, Totals(), None, 0.0
    print(epoch_line(record, config), flush=True)
    try:
        save_checkpoint(out / checkpoint.FILENAME, model, optimizer, config, state)
        write_metrics(out, config, state.history)
    except OSError as err:  # apart from other OSErrors (a closed stdout, say), which are not about the disk
        raise SaveFailed(f"could not save the run into {out} ({one_line(err)})") from err


def epoch_line(record, config):
    """One epoch in one line: the losses as the sums they are (beta shown when it is not 1). The test loss is
    always the single-sample -ELBO; a K-sample objective's training loss says which objective it is. For M2: the
    test accuracy of its classifier q(y|x) and the parts of its loss."""
    test, beta = record["test"], config["beta"]
    if kind_of(config).semi_supervised:
        line = (f"epoch {record['epoch']:>3}/{config['epochs']}  train {record['train']['loss']:.2f}  test "
                f"{test['loss']:.2f} ({config.get('labelled_weight', 1.0):.3g} x labelled {test['labelled']:.2f} + "
                f"{config['alpha']:g} x cross-entropy "
                f"{test['classification']:.3f} + unlabelled {test['unlabelled']:.2f})  test accuracy "
                f"{test['accuracy']:.2%}")
        if "val" in record:
            line += f"  val accuracy {record['val']['accuracy']:.2%}"
        return line + f"  {record['seconds']:.1f} s"
    kl = f"KL {test['kl']:.2f}" if beta == 1 else f"{beta:g} x KL {test['kl']:.2f}"
    objective, k = config.get("objective", "vae"), config.get("k", 1)
    trained = "" if objective == "vae" and k == 1 else f" (-{objective.upper()}, K={k})"  # not the test's ELBO
    line = (f"epoch {record['epoch']:>3}/{config['epochs']}  train {record['train']['loss']:.2f}{trained}  "
            f"test {test['loss']:.2f} (recon {test['recon']:.2f} + {kl})")
    if "val" in record:
        line += f"  val {record['val']['loss']:.2f}"
    return line + f"  {record['seconds']:.1f} s"
