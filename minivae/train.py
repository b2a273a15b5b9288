"""`python -m minivae.train`: train a VAE on MNIST or Fashion-MNIST, and never lose the work.

    python -m minivae.train                                   # the default: 784-400-20 MLP, 10 epochs of MNIST
    python -m minivae.train --dataset fashion-mnist --latent 2 --epochs 20
    python -m minivae.train --preset keras-2d-rmsprop         # one of the tutorials' setups (see presets.py)
    python -m minivae.train --resume runs/<run>/checkpoint.npz --epochs 30    # go on with a run

What a run does:
  1. config = presets.config_for(--preset, the options given); data.load finds (or downloads) the dataset.
  2. Every epoch: shuffle, one optimizer step per batch (a progress bar on stderr), then the test loss; one
     printed line; metrics.json and checkpoint.npz rewritten atomically in the output folder.
  3. At the end: the test ELBO, the importance-weighted log-likelihood and the figures (see evaluate.py).

Randomness. Every random number comes from a generator seeded by (seed, epoch, purpose): the weights from the
seed alone, epoch e's data order from (seed, e, 0), its sampler noise and dynamic binarization from (seed, e, 1),
the test noise from (seed, 0, 2) at every evaluation. Nothing depends on what ran earlier in the process, so a
run resumed from a checkpoint -- even one saved mid-epoch, which also stores the step and the noise generator's
state -- gives bit for bit the numbers of a run that was never stopped. The noise is drawn on the host with
NumPy and copied to the device, so a GPU run sees the same draws as a CPU run.

Faults. Ctrl-C saves a checkpoint at the current step and prints the command that resumes it (exit 130). A
loss that turns NaN or infinite stops the run (exit 1) and leaves the last good checkpoint alone. A problem
with the data, a checkpoint, the device or the options is one line `error: ...` on stderr (exit 2).
"""

import argparse
import json
import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minivae import backend, checkpoint, data, evaluate, presets
from minivae.gaussian import POSTERIORS
from minivae.layers import ACTIVATIONS
from minivae.losses import RECONSTRUCTIONS
from minivae.optim import OPTIMIZERS
from minivae.vae import count_params

ORDER, NOISE = 0, 1  # purposes of epoch e's generators, seeded (seed, e, purpose); evaluate.py uses 2 and up
METRICS = "metrics.json"
BAR_EVERY = 20  # steps between progress-bar updates: the steps in between pay nothing for the bar
# Options that are part of the config (None when not given, so that the preset's value wins).
CONFIG_OPTIONS = ("dataset", "hidden", "latent", "activation", "optimizer", "lr", "batch_size", "beta",
                  "binarize", "recon", "posterior", "seed", "validation", "epochs")


class UsageError(Exception):
    """A mistake in how the command was called (the message is one line)."""


class Diverged(Exception):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------- the command line


def _number(kind, low, low_ok, what):
    """An argparse type: `kind(text)`, checked to be > low (or >= low when low_ok)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (value >= low if low_ok else value > low) or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {'at least' if low_ok else 'more than'} {low}, got {text}")
        return value
    return parse


positive_int = _number(int, 0, False, "a whole number")
non_negative_int = _number(int, 0, True, "a whole number")
positive_float = _number(float, 0.0, False, "a number")
non_negative_float = _number(float, 0.0, True, "a number")


def fraction(text):
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction below 1, got {text}")
    return value


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minivae.train", description=__doc__.split("\n\n")[0],
                                epilog="Options not given take the preset's value (presets.py).")
    p.add_argument("--dataset", choices=data.DATASETS, help="default mnist")
    p.add_argument("--data-dir", help="folder with the four IDX files (else MINIVAE_DATA_DIR, the cache, download)")
    p.add_argument("--preset", choices=tuple(presets.PRESETS), help="default 'default' (784-400-20, Adam 1e-3)")
    p.add_argument("--hidden", type=positive_int, nargs="+", metavar="N", help="encoder hidden sizes, e.g. 512 256")
    p.add_argument("--latent", type=positive_int, metavar="L", help="size of z")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS))
    p.add_argument("--epochs", type=positive_int, help="train up to this epoch (with --resume: in total)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS))
    p.add_argument("--beta", type=non_negative_float, help="weight of the KL term (1: the ELBO)")
    p.add_argument("--binarize", choices=data.BINARIZE)
    p.add_argument("--recon", choices=tuple(RECONSTRUCTIONS), help="reconstruction loss")
    p.add_argument("--posterior", choices=tuple(POSTERIORS), help="what the encoder's second head outputs")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--validation", type=fraction, metavar="FRACTION", help="hold out this part of the training set")
    p.add_argument("--device", choices=("cpu", "gpu"),
                   help="gpu runs on CuPy (default: as MINIVAE_BACKEND says, else cpu)")
    p.add_argument("--out", help="output folder (default: a new runs/<time>-<preset>-<dataset>)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (or the run folder holding it)")
    p.add_argument("--eval-samples", type=non_negative_int, metavar="K",
                   help="importance samples for the final log-likelihood; 0 skips it (default 100; 10 for conv)")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--eval-only", action="store_true", help="with --resume: only evaluate the checkpoint")
    return p


def config_from(args, ckpt):
    """The run's config: the checkpoint's when resuming (only --epochs may change it), else preset + options."""
    given = {name: getattr(args, name) for name in CONFIG_OPTIONS if getattr(args, name) is not None}
    if ckpt is None:
        return presets.config_for(args.preset or "default", **given)
    config = dict(ckpt.config)
    asked = {"preset": args.preset} if args.preset is not None else {}
    for name, value in (asked | given).items():
        if name != "epochs" and config.get(name) != value:
            raise UsageError(f"--{name.replace('_', '-')} {value} conflicts with the checkpoint's {config.get(name)}; "
                             f"a resumed run keeps its config (only --epochs, --out, --device, --data-dir, "
                             f"--eval-samples, --no-plots may change)")
    config["epochs"] = given.get("epochs", config["epochs"])
    return config


def output_folder(args, config, ckpt):
    """--out; else the checkpoint's folder when resuming; else a new runs/<time>-<preset>-<dataset>."""
    if args.out is not None:
        out = Path(args.out)
        taken = [name for name in (checkpoint.FILENAME, METRICS) if (out / name).exists()]
        resuming_here = ckpt is not None and out.resolve() == ckpt.path.parent.resolve()
        if taken and not resuming_here:
            raise UsageError(f"{out} already holds a run ({', '.join(taken)}); continue it with --resume "
                             f"{out / checkpoint.FILENAME} or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        return out
    if ckpt is not None:
        return ckpt.path.parent
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{config['preset']}-{config['dataset']}"
    for n in range(1, 1000):  # never reuse a folder: a second run in the same second gets -2, -3, ...
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            continue
    raise UsageError(f"{base}: too many runs started in the same second; pass --out")


# ---------------------------------------------------------------- the training loop


@dataclass
class Progress:
    """Where a run stands. All of it goes into the checkpoint, so a resumed run continues exactly."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps done in epoch `epoch + 1`
    sums: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0])  # loss, recon, kl summed over examples; examples
    noise_state: dict | None = None  # the epoch's noise generator after those steps
    seconds: float = 0.0  # time spent on the unfinished epoch before an interruption
    history: list = field(default_factory=list)  # one dict per finished epoch, as in metrics.json
    frames: dict = field(default_factory=lambda: {"samples": [], "reconstructions": []})  # for the progress GIFs
    updating: bool = False  # True while the optimizer writes the parameters: no checkpoint can be taken then
    stop_requested: bool = False  # set by Ctrl-C; the loop stops before the next step

    @classmethod
    def from_checkpoint(cls, ckpt):
        frames = {name: list(ckpt.arrays.get(f"frames_{name}", [])) for name in ("samples", "reconstructions")}
        return cls(epoch=ckpt.epoch, step=ckpt.step, sums=ckpt.extra.get("sums", [0.0, 0.0, 0.0, 0]),
                   noise_state=ckpt.rng_state, seconds=ckpt.extra.get("seconds", 0.0), history=ckpt.history,
                   frames=frames)


def save_checkpoint(path, model, optimizer, config, progress):
    arrays = {f"frames_{name}": np.stack(f) for name, f in progress.frames.items() if f}
    checkpoint.save(path, model, optimizer, config, progress.epoch, progress.step, progress.history,
                    rng_state=progress.noise_state, extra={"sums": progress.sums, "seconds": progress.seconds},
                    arrays=arrays)


def write_metrics(out, config, history, final=None):
    """metrics.json: the config, one entry per epoch, and the final results once there are some. Atomic."""
    metrics = {"config": config, "history": history} | ({"final": final} if final else {})
    with checkpoint.atomic_file(out / METRICS) as f:
        f.write((json.dumps(metrics, indent=1) + "\n").encode())


def run_epoch(model, optimizer, x_train, config, epoch, progress):
    """The optimizer steps of one epoch, from step `progress.step` on. Updates progress after every step."""
    seed, n = config["seed"], len(x_train)
    order = np.random.default_rng([seed, epoch, ORDER])
    noise = np.random.default_rng([seed, epoch, NOISE])
    if progress.step:  # resuming mid-epoch: the same order (redrawn), the noise where it stopped
        noise.bit_generator.state = progress.noise_state
    index_batches = list(data.batches(n, config["batch_size"], order))
    dynamic = config["binarize"] == "dynamic"
    # The bar is refreshed every BAR_EVERY steps, at most twice a second; disable=None hides it off a terminal.
    bar = tqdm(total=len(index_batches), initial=progress.step, desc=f"epoch {epoch}/{config['epochs']}",
               unit="step", leave=False, file=sys.stderr, mininterval=0.5, disable=None)
    # A diverging run would print NumPy's overflow warnings before our one-line message; the loss check below
    # is the guard, so those warnings are off here. Leaving the block closes the bar, whatever the way out.
    with bar, np.errstate(over="ignore", invalid="ignore"):
        for idx in index_batches[progress.step:]:
            if progress.stop_requested:
                raise KeyboardInterrupt
            if dynamic:  # x_train stays on the host: a fresh Bernoulli draw of each image, then to the device
                x = backend.to_device(data.binarize_batch(x_train[idx], noise))
            else:  # x_train is on the device already; so must the index be
                x = x_train[backend.to_device(idx) if backend.is_gpu() else idx]
            eps = backend.to_device(noise.standard_normal((len(idx), model.latent), dtype=np.float32))
            loss = model.step(x, eps=eps)
            if not math.isfinite(loss.loss):
                raise Diverged(f"the training loss became {loss.loss} at epoch {epoch}, step {progress.step + 1}")
            progress.updating = True
            optimizer.step(model.grads)
            progress.updating = False
            progress.step += 1
            sums = progress.sums
            progress.sums = [sums[0] + loss.loss * len(idx), sums[1] + loss.recon * len(idx),
                             sums[2] + loss.kl * len(idx), sums[3] + len(idx)]
            progress.noise_state = noise.bit_generator.state
            if progress.step % BAR_EVERY == 0:
                bar.set_postfix_str(f"loss {progress.sums[0] / progress.sums[3]:.2f}", refresh=False)
                bar.update(progress.step - bar.n)


def train(model, optimizer, dataset, config, progress, out):
    """Epochs up to config['epochs'], each closed by its test loss, a printed line, metrics and a checkpoint."""
    seed = config["seed"]
    # On the device once; dynamic binarization draws on the host, so then the grayscale images stay there.
    x_train = dataset.x_train if config["binarize"] == "dynamic" else backend.to_device(dataset.x_train)
    while progress.epoch < config["epochs"]:
        epoch = progress.epoch + 1
        started = time.perf_counter() - progress.seconds
        try:
            run_epoch(model, optimizer, x_train, config, epoch, progress)
        except KeyboardInterrupt:
            progress.seconds = time.perf_counter() - started  # so that the resumed epoch's time adds up
            raise
        loss, recon, kl, count = progress.sums
        record = {"epoch": epoch, "train": {"loss": loss / count, "recon": recon / count, "kl": kl / count},
                  "test": evaluate.test_losses(model, dataset.x_test, seed)}
        if dataset.x_val is not None:
            record["val"] = evaluate.test_losses(model, dataset.x_val, seed)
        for name, frame in evaluate.progress_frames(model, dataset.x_test, seed).items():
            progress.frames[name].append(frame)
        record["seconds"] = round(time.perf_counter() - started, 2)
        progress.history.append(record)
        progress.epoch, progress.step, progress.sums, progress.noise_state, progress.seconds = (
            epoch, 0, [0.0, 0.0, 0.0, 0], None, 0.0)
        print(epoch_line(record, config), flush=True)
        write_metrics(out, config, progress.history)
        save_checkpoint(out / checkpoint.FILENAME, model, optimizer, config, progress)
        if progress.stop_requested:  # Ctrl-C during the evaluation: the epoch's checkpoint is saved
            raise KeyboardInterrupt


def epoch_line(record, config):
    test = record["test"]
    line = (f"epoch {record['epoch']:>3}/{config['epochs']}  train {record['train']['loss']:.2f}  "
            f"test {test['loss']:.2f} (recon {test['recon']:.2f} + KL {test['kl']:.2f})")
    if "val" in record:
        line += f"  val {record['val']['loss']:.2f}"
    return line + f"  {record['seconds']:.1f} s"


# ---------------------------------------------------------------- faults


def ctrl_c_sets(progress):
    """Make Ctrl-C ask the loop to stop between two steps, so that no update is ever half applied.

    A second Ctrl-C stops at once (KeyboardInterrupt, as by default). Returns a function that puts the old
    handler back. Outside the main thread signals cannot be caught: Ctrl-C then interrupts wherever it lands.
    """
    def handler(signum, frame):
        if progress.stop_requested:
            raise KeyboardInterrupt
        progress.stop_requested = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def resume_command(path, config, args):
    words = ["python", "-m", "minivae.train", "--resume", str(path), "--epochs", str(config["epochs"])]
    words += ["--data-dir", args.data_dir] if args.data_dir else []
    words += ["--device", "gpu"] if args.device == "gpu" else []
    words += ["--eval-samples", str(args.eval_samples)] if args.eval_samples is not None else []
    words += ["--no-plots"] if args.no_plots else []
    return shlex.join(words)


def interrupted(model, optimizer, config, progress, out, args):
    """Ctrl-C during training: save where we are (unless an update was cut in half) and say how to go on."""
    path = out / checkpoint.FILENAME
    where = (f"epoch {progress.epoch + 1}, step {progress.step}" if progress.step
             else f"the end of epoch {progress.epoch}")
    if progress.updating:  # a second Ctrl-C inside optimizer.step: these weights are half updated
        if progress.epoch == 0:
            print("interrupted during the first epoch; nothing was saved", file=sys.stderr)
            return 130
        where = f"the end of epoch {progress.epoch} (the last checkpoint; the steps after it are lost)"
    else:
        save_checkpoint(path, model, optimizer, config, progress)
    print(f"interrupted: {path} holds {where}; resume with: {resume_command(path, config, args)}", file=sys.stderr)
    return 130


# ---------------------------------------------------------------- main


def run(args):
    """The whole command once the options are parsed. Returns the exit code; one-line errors are raised."""
    if args.eval_only and not args.resume:
        raise UsageError("--eval-only needs --resume CKPT (or use python -m minivae.evaluate CKPT)")
    backend.use_device(args.device)
    if args.eval_only:
        evaluate.evaluate_checkpoint(args.resume, args.data_dir, args.eval_samples)
        return 0
    ckpt = checkpoint.load(args.resume) if args.resume else None
    config = config_from(args, ckpt)
    dataset = data.load(config["dataset"], args.data_dir, binarize=config["binarize"], seed=config["seed"],
                        validation=config["validation"])
    model = presets.build_model(config)
    optimizer = presets.build_optimizer(config, model)
    progress = Progress()
    if ckpt is not None:
        checkpoint.restore(model, optimizer, ckpt)
        progress = Progress.from_checkpoint(ckpt)
    out = output_folder(args, config, ckpt)  # only now: a run that cannot start leaves no empty folder
    start = f"resuming {ckpt.path} at epoch {progress.epoch + 1}, step {progress.step}" if ckpt else "training"
    hidden = config["hidden"] if config["arch"] == "mlp" else "conv"
    print(f"{start}: {config['preset']} preset, hidden {hidden}, latent {config['latent']}, "
          f"{count_params(model):,} parameters, {config['optimizer']} lr {config['lr']}, batch {config['batch_size']},"
          f" {config['epochs']} epochs, {config['dataset']} ({len(dataset.x_train):,} train / "
          f"{len(dataset.x_test):,} test), {backend.name}; writing to {out}", flush=True)

    if progress.epoch >= config["epochs"]:
        print(f"nothing to train: the checkpoint has {progress.epoch} epochs (ask for more with --epochs)")
    put_back_ctrl_c = ctrl_c_sets(progress)
    try:
        train(model, optimizer, dataset, config, progress, out)
    except KeyboardInterrupt:
        return interrupted(model, optimizer, config, progress, out, args)
    except Diverged as err:
        path = out / checkpoint.FILENAME
        kept = f"the last good checkpoint {path} is kept as it was" if path.exists() else "no checkpoint was saved"
        print(f"error: {err}; training stopped and {kept}; try a lower --lr than {config['lr']}", file=sys.stderr)
        return 1
    finally:
        put_back_ctrl_c()

    try:
        final = evaluate.final_results(model, dataset.x_test, config["seed"],
                                       evaluate.eval_samples_for(config, args.eval_samples))
        write_metrics(out, config, progress.history, final)
        print(evaluate.summary(final, len(dataset.x_test)))
        if not args.no_plots:
            figures = evaluate.write_figures(model, dataset, progress.history, progress.frames, out, config["seed"])
            print(f"wrote {len(figures)} figures, {METRICS} and {checkpoint.FILENAME} to {out}")
    except KeyboardInterrupt:
        print(f"interrupted after training; the model is saved in {out / checkpoint.FILENAME}; evaluate it with: "
              f"python -m minivae.evaluate {shlex.quote(str(out))}", file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.train` and `minivae-train`. Returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, data.DataError, checkpoint.CheckpointError, backend.BackendError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started (loading data, say): nothing to save
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
