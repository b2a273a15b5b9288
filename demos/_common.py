"""What every demo shares: its options, its dataset, and training through minivae.train's own loop.

Kept small on purpose, so that each demo still reads top to bottom on its own. The options:

    --dataset {mnist,fashion-mnist}   default mnist, like the tutorials
    --data-dir DIR                    where the IDX files are (else the usual places, then a download: run/download.py)
    --out DIR                         default runs/demo-<name>
    --full                            the tutorial's full length
    --quick                           seconds, on data.tiny_dataset (synthetic strokes and blobs): no files needed
    --seed N                          default 0
    --threads N                       CPU threads for the matrix products (default 1; see README.md)

A mistake (a bad value, missing data, MINIVAE_BACKEND=cupy without a GPU, sizes that do not fit in memory, an
output folder another program uses) ends a demo with one line `error: ...` and exit 2, and a stop (Ctrl-C,
SIGTERM, SIGHUP) with one line and exit 130, as they end the commands (cli.report_errors_in_one_line; a stop
while training saves the current step: minivae/faults.py).
"""

# ruff: noqa: E402 (the stop handling comes first: minivae/run/stops.py)
import sys

from minivae.run import stops

if "ipykernel" not in sys.modules:  # (a notebook kernel handles Ctrl-C itself)
    stops.early()  # a stop while the rest loads: one line, exit 130

import argparse
import atexit
from pathlib import Path

from minivae import cli, faults
from minivae.core import backend
from minivae.figures import run_figures
from minivae.models.vae import count_params
from minivae.run import data, metrics, presets, start, training
from minivae.run.kinds import kind_of

QUICK_TRAIN, QUICK_TEST = 256, 128  # --quick: the size of the synthetic dataset


def parser(name, doc):
    """The options every demo takes; a demo adds its own before calling parse()."""
    doc = doc or name  # (no docstring under python -OO)
    p = cli.Parser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog="\n".join(doc.splitlines()[1:]))
    p.add_argument("--dataset", choices=data.DATASETS, default="mnist", help="default mnist")
    p.add_argument("--data-dir", type=cli.path, help="folder with the four IDX files (minivae/run/download.py says "
                                                      "where else it looks)")
    p.add_argument("--out", type=cli.path, default=f"runs/demo-{name}",
                   help=f"output folder (default runs/demo-{name})")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--full", action="store_true", help="train as long as the tutorial did")
    length.add_argument("--quick", action="store_true", help="a few seconds on a tiny synthetic dataset (for CI)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="default 0")
    cli.add_threads_option(p)
    return p


def parse(p):
    """Parse the command line, make a user's mistake one line from now on, and check the backend
    (MINIVAE_BACKEND) and set the threads before any work. Ctrl-C, SIGTERM and SIGHUP stop a demo as they stop
    the commands (minivae/run/stops.py): while it trains, at the next step, saved (`fit`); else at once, in one
    line. A mistyped option is an error, except inside a notebook kernel, which passes arguments of its own
    (-f kernel.json): those are ignored there, and the kernel shows its exceptions as it likes."""
    if "ipykernel" in sys.modules:
        args = p.parse_known_args()[0]
    else:
        cli.report_errors_in_one_line(said_at_a_stop)
        args = p.parse_args()
    backend.use_device()
    cli.limit_threads(args.threads)
    args.out = Path(args.out)
    return args


_trained = []  # (folder, evaluable): where `fit` trains each model, in order, and whether it is on real data
_claims = {}  # folder -> start.Claim: the folders this demo writes into, held until it exits


def said_at_a_stop():
    """What a stop outside training (fit says its own) leaves on disk, in words: read from the disk."""
    saved = [(folder, real) for folder, real in _trained if training.on_disk(folder / "checkpoint.npz")]
    return faults.model_is_saved(*saved[-1]) if saved else "nothing was written"


def claim(folder):
    """Claim a folder for this demo until it exits (start.claim_folder: made if needed, locked against a second
    program, checked writable); a folder in use by another program is one line, exit 2."""
    folder = Path(folder)
    if folder not in _claims:
        _claims[folder] = start.claim_folder(folder)
        if len(_claims) == 1:
            atexit.register(_release)


def _release():
    stops.ignore_from_now()  # the demo is ending: nothing is left to stop
    for held in reversed(list(_claims.values())):  # inner folders first, so that an empty outer one can go too
        held.release()
    _claims.clear()


def load(args, binarize="none"):
    """The dataset the options ask for: the tiny synthetic one with --quick, else MNIST or Fashion-MNIST."""
    if args.quick:
        return data.tiny_dataset(QUICK_TRAIN, QUICK_TEST, seed=args.seed, binarize=binarize)
    return data.load(args.dataset, args.data_dir, binarize=binarize, seed=args.seed)


def class_names(dataset):
    """Names for the labels in plot legends: Fashion-MNIST's garments; digits (and tiny's classes) as they are."""
    return run_figures.class_names(dataset.name)


def fit(preset, dataset, args, epochs, out=None, **overrides):
    """Train the preset's model on `dataset` with minivae's training loop (run/training.py), `epochs` epochs.

    Prints one line per epoch; metrics.json and checkpoint.npz go to `out` (default args.out), so the run can
    be evaluated (python -m minivae.evaluate OUT) or continued (python -m minivae.train --resume OUT). Returns
    (model, config, state): state.history holds the per-epoch losses, state.frames the decoded fixed z
    ("samples") and the first 16 test images reconstructed ("reconstructions") after every epoch.
    """
    config = presets.config_for(preset, dataset=dataset.name, seed=args.seed, epochs=epochs, **overrides)
    config, model, optimizer, state = start.begin(config, dataset, threads=args.threads)
    print(f"preset {preset}: {presets.SOURCES[preset]}")
    if kind_of(config).mlp:  # (the convnet's description is a paragraph: see models/convnet.py)
        print(f"  {model}")
    print(f"  {count_params(model):,} parameters; {config['optimizer']} lr {config['lr']}, batch "
          f"{config['batch_size']}, {epochs} epoch{'s' * (epochs != 1)} of {len(dataset.x_train):,} {dataset.name} "
          f"images", flush=True)
    out = Path(out or args.out)
    claim(args.out)
    claim(out)
    # A real dataset as data.load gives it can be resumed by the training command; --quick's synthetic one, or
    # a dataset a demo changed (anomaly_detection's, without a class), cannot.
    go_on = f"resume with: {faults.resume_command(out / 'checkpoint.npz', config, args)}" if dataset.folder else None
    _trained.append((out, dataset.name in data.DATASETS))
    code = faults.train(model, optimizer, dataset, config, state, out, go_on)
    if code is not None:
        raise SystemExit(code)  # its line is said
    seconds = sum(h["seconds"] for h in state.history)
    print(f"trained in {seconds:.0f} s ({seconds / epochs:.1f} s per epoch, test loss included)")
    return model, config, state


def final(model, dataset, config, k):
    """Print and return metrics.final_results: the test ELBO (at beta = 1), its terms, and the
    importance-weighted log-likelihood with k samples (0 skips it)."""
    results = metrics.final_results(model, kind_of(config), dataset.x_test, dataset.y_test, config["seed"], k)
    print(metrics.summary(results, len(dataset.x_test), config))
    return results


def wrote(*paths):
    """Say which figures were written."""
    for path in paths:
        print(f"wrote {path}")
