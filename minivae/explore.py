"""`python -m minivae.explore RUN_OR_CHECKPOINT`: write the explorer page of a trained model, one HTML file.

    python -m minivae.explore runs/<run>                          # writes runs/<run>/explorer.html
    python -m minivae.explore runs/<run>/checkpoint.npz --out ~/fashion-2d.html

The page (figures/explorer.py builds it; docs/explorer.md says what it shows) holds the decoder's weights and the
encoder means of test images, so it opens from disk in any browser, offline, with no server. It needs the
dataset's two test files, found where the run found its data (recorded in the checkpoint) unless --data-dir says
otherwise. The training command writes the same page at the end of a run (not with --no-plots).
"""

# ruff: noqa: E402 (the stop handling comes first: run/stops.py)
from minivae.run import stops

if __name__ == "__main__":
    stops.early()  # a stop while the rest loads: one line, exit 130

import sys
from pathlib import Path

import numpy as np

from minivae import cli
from minivae.core import backend
from minivae.figures import explorer
from minivae.run import checkpoint, presets, start


def load_model(path):
    """(checkpoint, config, model) of a checkpoint file or run folder, its weights checked to be finite. Errors are
    one-line CheckpointErrors."""
    ckpt = checkpoint.load(path, presets.config_problem)
    broken = [name for name, value in ckpt.params.items() if not np.isfinite(value).all()]
    if broken:
        raise checkpoint.CheckpointError(f"{ckpt.path}: the model's weights hold NaN or infinity ({broken[0]}), so "
                                         f"there is nothing to draw; use an earlier checkpoint, or train again with a "
                                         f"lower --lr")
    config = presets.complete(ckpt.config)  # a checkpoint from before a config key existed: its default
    model, _ = start.restored(ckpt, config)
    return ckpt, config, model


def explore_checkpoint(path, out=None, data_dir=None, points=explorer.POINTS):
    """Load a checkpoint and its test set, write its explorer page to `out` (default: explorer.html beside the
    checkpoint) and return the page's Path. Errors are one-line exceptions (CheckpointError, DataError,
    FolderError)."""
    ckpt, config, model = load_model(path)
    out = Path(out) if out is not None else ckpt.path.parent / explorer.FILENAME
    explorer.check_target(out)  # before the data is read: a wrong --out costs nothing
    dataset = start.test_set(ckpt, config, data_dir)
    return explorer.write_page(out, model, config, dataset.x_test, dataset.y_test, ckpt.history, ckpt.epoch,
                               ckpt.step, points)


def build_parser():
    parser = cli.Parser(prog="python -m minivae.explore",
                        description="Write a trained model's explorer page: one HTML file that moves through its "
                                    "latent space in the browser.")
    cli.add_checkpoint_arguments(parser)
    parser.add_argument("--out", type=cli.path, metavar="FILE.html",
                        help=f"where to write the page (default: {explorer.FILENAME} beside the checkpoint)")
    parser.add_argument("--points", type=cli.positive_int, default=explorer.POINTS, metavar="N",
                        help=f"test images shown as dots on the latent plane (default {explorer.POINTS}: each adds "
                             "a little to the page's size)")
    cli.add_device_option(parser)
    cli.add_threads_option(parser)
    return parser


def explore(args):
    backend.use_device(args.device)
    cli.limit_threads(args.threads)
    page = explore_checkpoint(args.checkpoint, args.out, args.data_dir, args.points)
    print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB): open it in a browser")
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.explore` and `minivae-explore`. Returns the exit code (cli.run says what
    argv None changes)."""
    return cli.run(explore, build_parser().parse_args(argv), keep_handlers=argv is None)


if __name__ == "__main__":
    sys.exit(main())
