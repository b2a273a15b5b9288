"""`python -m minivae.train`: train a VAE on MNIST or Fashion-MNIST, and never lose the work.

    python -m minivae.train                                   # the default: 784-400-20 MLP, 10 epochs of MNIST
    python -m minivae.train --dataset fashion-mnist --latent 2 --epochs 20
    python -m minivae.train --preset keras-2d-rmsprop         # one of the tutorials' setups (run/presets.py)
    python -m minivae.train --resume runs/<run>/checkpoint.npz --epochs 30    # go on with a run

What a run does:
  1. config = the preset, then the options given (run/presets.py); run/data.py finds (or downloads) the data;
     run/start.py builds the model (or restores it from --resume) and claims the output folder.
  2. run/training.py runs the epochs; after each, checkpoint.npz and metrics.json in the output folder.
  3. At the end: the test ELBO, the importance-weighted log-likelihood (run/metrics.py), the figures
     (figures/run_figures.py) and explorer.html, a page to move through the latent space (figures/explorer.py).

Faults (faults.py; docs/faults.md has them all). Ctrl-C, SIGTERM and SIGHUP (a scheduler's stop, a closed
terminal) all save a checkpoint at the current step and print what the file holds and the command that resumes
it (exit 130). A loss that turns NaN or infinite stops the run (exit 1) and leaves the last good checkpoint alone.
A problem with the data, a checkpoint, the device, the output folder (another run holds it, it holds a file the
run would overwrite), the memory, the disk or the options is one line `error: ...` on stderr (exit 2), found
before training starts wherever it can be; one found later says which checkpoint is kept and how to go on.
"""

# ruff: noqa: E402 (the stop handling comes first: run/stops.py)
from minivae.run import stops

if __name__ == "__main__":
    stops.early()  # a stop while the rest loads: one line, exit 130

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from minivae import cli, faults
from minivae.cli import UsageError
from minivae.core import backend
from minivae.core.gaussian import POSTERIORS
from minivae.core.layers import ACTIVATIONS
from minivae.core.losses import RECONSTRUCTIONS
from minivae.core.optim import OPTIMIZERS
from minivae.figures import explorer, run_figures
from minivae.models.iwae import OBJECTIVES
from minivae.models.vae import count_params
from minivae.run import checkpoint, data, metrics, presets, start, stops, training
from minivae.run.kinds import kind_of

# Options that are part of the config (None when not given, so that the preset's value wins).
CONFIG_OPTIONS = ("dataset", "hidden", "latent", "activation", "optimizer", "lr", "batch_size", "beta",
                  "binarize", "recon", "posterior", "seed", "validation", "epochs", "objective", "k",
                  "labels")
MLP_ONLY = ("hidden", "activation")  # options the convnet has no use for


# ---------------------------------------------------------------- the command line


def build_parser():
    default = presets.DEFAULT
    p = cli.Parser(prog="python -m minivae.train", description=__doc__.split("\n\n")[0],
                   epilog="Options not given take the preset's value (presets.py); the defaults shown are the "
                          "default preset's.")
    p.add_argument("--dataset", choices=data.DATASETS, help=f"default {default['dataset']}")
    p.add_argument("--data-dir", type=cli.path,
                   help="folder with the four IDX files (else MINIVAE_DATA_DIR, the cache, download)")
    p.add_argument("--preset", choices=tuple(presets.PRESETS), help="default 'default' (784-400-20, Adam 1e-3)")
    p.add_argument("--hidden", type=cli.positive_int, nargs="+", metavar="N",
                   help=f"encoder hidden sizes, e.g. 512 256 (default {' '.join(map(str, default['hidden']))})")
    p.add_argument("--latent", type=cli.positive_int, metavar="L", help=f"size of z (default {default['latent']})")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), help=f"default {default['activation']}")
    p.add_argument("--epochs", type=cli.positive_int,
                   help=f"train up to this epoch (with --resume: in total; default {default['epochs']})")
    p.add_argument("--batch-size", type=cli.positive_int, help=f"default {default['batch_size']}")
    p.add_argument("--lr", type=cli.positive_float, help=f"learning rate (default {default['lr']:g})")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), help=f"default {default['optimizer']}")
    p.add_argument("--beta", type=cli.non_negative_float, help="weight of the KL term (default 1: the ELBO)")
    p.add_argument("--binarize", choices=data.BINARIZE, help=f"default {default['binarize']}")
    p.add_argument("--recon", choices=tuple(RECONSTRUCTIONS), help=f"reconstruction loss (default {default['recon']})")
    p.add_argument("--posterior", choices=tuple(POSTERIORS),
                   help=f"what the encoder's second head outputs (default {default['posterior']})")
    p.add_argument("--objective", choices=OBJECTIVES,
                   help="vae: the ELBO (averaged over --k samples of z); iwae: the importance-weighted bound with "
                        f"--k samples (models/iwae.py; default {default['objective']})")
    p.add_argument("--k", type=cli.positive_int, metavar="K",
                   help=f"samples of z per image in each training step (default {default['k']})")
    p.add_argument("--seed", type=cli.non_negative_int, help=f"default {default['seed']}")
    p.add_argument("--validation", type=cli.fraction, metavar="FRACTION",
                   help="hold out this part of the training set (default 0)")
    p.add_argument("--labels", type=cli.positive_int, metavar="N",
                   help="m2 preset: how many training images keep their label, N / 10 of each class (default 100)")
    cli.add_device_option(p)
    cli.add_threads_option(p)
    p.add_argument("--out", type=cli.path, help="output folder (default: a new runs/<time>-<preset>-<dataset>)")
    p.add_argument("--resume", type=cli.path, metavar="CKPT",
                   help="continue from a checkpoint (or the run folder holding it)")
    p.add_argument("--eval-samples", type=cli.non_negative_int, metavar="K",
                   help="importance samples for the final log-likelihood; 0 skips it (default 100; 10 for conv)")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--eval-only", action="store_true", help="with --resume: only evaluate the checkpoint")
    return p


def run_config(args, ckpt):
    """The run's config: the checkpoint's when resuming (only --epochs may change it), else preset + options."""
    given = {name: getattr(args, name) for name in CONFIG_OPTIONS if getattr(args, name) is not None}
    if ckpt is None:
        config = presets.config_for(args.preset or "default", **given)
        kind = kind_of(config)
        unused = [name for name in MLP_ONLY if name in given and not kind.mlp]
        if unused:
            raise UsageError(f"--{unused[0]} is for MLP models; the {config['preset']} preset builds "
                             f"{kind.description} (its layers are fixed: see minivae/models/convnet.py)")
        if kind.conditioned and (config["objective"], config["k"]) != ("vae", 1):
            raise UsageError(f"--objective and --k are for the VAE; the {config['preset']} preset trains on the ELBO "
                             f"with one sample of z")
        if "labels" in given and not kind.semi_supervised:
            raise UsageError(f"--labels is for the semi-supervised m2 preset; the {config['preset']} preset takes "
                             f"{'every label' if kind.conditioned else 'no labels'}")
        try:
            presets.check_objective(config)
        except ValueError as err:
            raise UsageError(f"--objective {config['objective']}: {err}") from None
        return config
    config = presets.complete(ckpt.config)  # a checkpoint from before a config key existed: its default
    asked = {"preset": args.preset} if args.preset is not None else {}
    for name, value in (asked | given).items():
        if name != "epochs" and config.get(name) != value:
            raise UsageError(f"--{name.replace('_', '-')} {value} conflicts with the checkpoint's {config.get(name)}; "
                             f"a resumed run keeps its config (only --epochs, --out, --device, --threads, "
                             f"--data-dir, --eval-samples, --no-plots may change)")
    config["epochs"] = given.get("epochs", config["epochs"])
    return config


def claim_output(args, config, ckpt):
    """The folder the run writes into, claimed for this process (start.claim_folder: made if needed, locked, checked
    writable): --out; else the checkpoint's folder when resuming; else a new runs/<time>-<preset>-<dataset>. A
    folder that holds another run, or files this run would write, is refused (unless resuming there)."""
    if args.out is None and ckpt is None:
        return new_run_folder(config)
    out = Path(args.out) if args.out is not None else ckpt.path.parent
    claim = start.claim_folder(out)
    try:
        check_free(out, ckpt, args)
    except BaseException:
        claim.release()
        raise
    return claim


def check_free(out, ckpt, args):
    """A run writes checkpoint.npz, metrics.json and its figures, and never over a file it did not write: a folder
    holding any of them (or a link of that name, even a broken one) is refused. A run resumed in its own folder
    writes over its own: its checkpoint and metrics.json (files, not folders or links) and the figures it
    drew (run_figures.drawn_by_minivae, explorer.written_by_minivae); anything else of those names is refused."""
    here = ckpt is not None and out.resolve() == ckpt.path.parent.resolve()
    if here:
        for name in (checkpoint.FILENAME, training.METRICS):
            held = out / name
            if held.is_symlink() or (held.exists() and not held.is_file()):
                raise UsageError(f"{held} is not a file minivae wrote (a folder or a link), and this run would "
                                 f"replace it; move it away, or resume into another folder with --out")
    else:
        taken = [name for name in (checkpoint.FILENAME, training.METRICS) if os.path.lexists(out / name)]
        if taken:
            held = out / checkpoint.FILENAME
            hint = f"continue it with --resume {held}" if held.is_file() else "it cannot be resumed (no checkpoint)"
            raise UsageError(f"{out} already holds a run ({', '.join(taken)}); {hint}, or choose another --out")
    if args.no_plots:
        return
    figures = [name for name in (*run_figures.FIGURES, explorer.FILENAME) if os.path.lexists(out / name)
               and not (here and drawn_by_a_run(out / name))]
    if figures:
        raise UsageError(f"{out} holds {', '.join(figures)}, which this run would overwrite; move "
                         f"{'them' if len(figures) > 1 else 'it'} away, pass --no-plots, or choose another --out")


def drawn_by_a_run(path):
    """Whether `path` holds a figure or an explorer page that a run drew, which a run resumed there may draw again."""
    if path.name == explorer.FILENAME:
        return explorer.written_by_minivae(path)
    return run_figures.drawn_by_minivae(path)


def new_run_folder(config):
    """runs/<time>-<preset>-<dataset>, claimed, never one that exists: a second run in the same second gets -2, -3,
    ..."""
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{config['preset']}-{config['dataset']}"
    for n in range(1, 1000):
        try:
            return start.claim_folder(base if n == 1 else base.with_name(f"{base.name}-{n}"), new=True)
        except FileExistsError:
            continue
    raise UsageError(f"{base}: too many runs started in the same second; pass --out")


# ---------------------------------------------------------------- the command


def train_command(args):
    """The whole command once the options are parsed. Returns the exit code; one-line errors are raised."""
    if args.eval_only and not args.resume:
        raise UsageError("--eval-only needs --resume CKPT (or use python -m minivae.evaluate CKPT)")
    backend.use_device(args.device)
    cli.limit_threads(args.threads)
    if args.eval_only:
        from minivae import evaluate

        return evaluate.evaluate(argparse.Namespace(checkpoint=args.resume, data_dir=args.data_dir,
                                                    eval_samples=args.eval_samples, device=args.device,
                                                    threads=args.threads))
    ckpt = checkpoint.load(args.resume, presets.config_problem) if args.resume else None
    config = run_config(args, ckpt)
    data_dir = args.data_dir or (start.recorded_data_folder(ckpt, data.FILES) if ckpt else None)
    dataset = data.load(config["dataset"], data_dir, binarize=config["binarize"], seed=config["seed"],
                        validation=config["validation"])
    config, model, optimizer, state = start.begin(config, dataset, ckpt, threads=args.threads)
    with claim_output(args, config, ckpt) as claim:  # released (and a folder it made removed if empty) at the end
        return train_in(claim.folder, model, optimizer, dataset, config, state, ckpt, args)


def train_in(out, model, optimizer, dataset, config, state, ckpt, args):
    """Train, evaluate and draw, writing into the folder `out`. Returns the exit code."""
    epochs, kind = config["epochs"], kind_of(config)
    begun = f"resuming {ckpt.path} at {state.saved}" if ckpt else "training"
    hidden = config["hidden"] if kind.mlp else config["arch"]
    labels = f", {config['labels']} labelled" if kind.semi_supervised else ""
    print(f"{begun}: {config['preset']} preset, hidden {hidden}, latent {config['latent']}, "
          f"{count_params(model):,} parameters, {config['optimizer']} lr {config['lr']}, batch {config['batch_size']},"
          f" {epochs} epoch{'s' * (epochs != 1)}, {config['dataset']} ({len(dataset.x_train):,} train{labels} / "
          f"{len(dataset.x_test):,} test), {backend.name} ({args.threads} thread{'s' * (args.threads != 1)}); "
          f"writing to {out}", flush=True)

    def first():
        if ckpt is not None:
            if out.resolve() != ckpt.path.parent.resolve():  # a new folder starts with the checkpoint it continues,
                training.save_checkpoint(out / checkpoint.FILENAME, model, optimizer, config, state)  # so it resumes
            training.write_metrics(out, config, state.history)  # metrics.json as the checkpoint has it
        if state.epoch >= epochs:
            print(f"nothing to train: the checkpoint has {state.epoch} epochs (ask for more with --epochs)")

    go_on = f"resume with: {faults.resume_command(out / checkpoint.FILENAME, config, args)}"
    try:
        code = faults.train(model, optimizer, dataset, config, state, out, go_on, ckpt, first)
        return code if code is not None else evaluate_and_draw(out, model, dataset, config, state, args)
    except KeyboardInterrupt:  # a stop between the two (in them, each says its own)
        stops.settle()
        print(f"interrupted after training; {faults.model_is_saved(out)}", file=sys.stderr)
        return 130


def evaluate_and_draw(out, model, dataset, config, state, args):
    """After training: the final results into metrics.json, and the figures. A stop now ends at once (the model is
    saved); so does a fault, saying so. Returns the exit code."""
    message = None
    try:  # the one KeyboardInterrupt a stop raises lands in here, and none after settle()
        try:
            if state.stop_requested:  # asked for when there was nothing left to train
                raise KeyboardInterrupt
            kind = kind_of(config)
            final = metrics.final_results(model, kind, dataset.x_test, dataset.y_test, config["seed"],
                                          metrics.eval_samples_for(config, args.eval_samples))
            training.write_metrics(out, config, state.history, final)
            print(metrics.summary(final, len(dataset.x_test), config))
            if not args.no_plots:
                figures = run_figures.write_figures(model, kind, dataset, state.history, state.frames, out,
                                                    config["seed"])
                page = explorer.write_page(out / explorer.FILENAME, model, config, dataset.x_test,
                                           dataset.y_test, state.history, state.epoch)
                print(f"wrote {len(figures)} figures, {page.name}, {training.METRICS} and {checkpoint.FILENAME} to "
                      f"{out}")
        except Exception as err:  # noqa: BLE001 (a fault after training must still say that the model is saved)
            message = cli.explain(err)
            if message is None:
                raise
        stops.settle()
    except KeyboardInterrupt:
        stops.settle()
        print(f"interrupted after training; {faults.model_is_saved(out)}", file=sys.stderr)
        return 130
    if message is not None:
        return faults.fault(f"{message}; {faults.model_is_saved(out)}")
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.train` and `minivae-train`. Returns the exit code. Called with no
    arguments (the command line of this process), it keeps the stop handling until the process exits."""
    return cli.run(train_command, build_parser().parse_args(argv), keep_handlers=argv is None)


if __name__ == "__main__":
    sys.exit(main())
