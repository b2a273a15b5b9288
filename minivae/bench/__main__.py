"""`python -m minivae.bench`: how fast is a training step, how close to its floor, and how fast against PyTorch?

    python -m minivae.bench                          # the default setup: 784-400-20 MLP VAE, batch 128, Adam
    python -m minivae.bench --model conv             # tutorial 003's convnet VAE (preset keras-conv-2d), batch 16
    python -m minivae.bench --against torch --threads 1    # and the same model in PyTorch, side by side

timing.py says what is timed and how; torch_twin.py is the same model in PyTorch.
"""

# ruff: noqa: E402 (the stop handling comes first: run/stops.py)
from minivae.run import stops

if __name__ == "__main__":
    stops.early()  # a stop while the rest loads: one line, exit 130

import sys

from minivae import cli
from minivae.bench import timing
from minivae.core import backend, threads


def build_parser():
    parser = cli.Parser(prog="python -m minivae.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(timing.SETUPS), default="mlp",
                        help="mlp: the default 784-400-20 VAE; conv: tutorial 003's convnet VAE (keras-conv-2d)")
    parser.add_argument("--against", choices=("torch",), help="also time the same model in PyTorch, alternating")
    parser.add_argument("--threads", type=cli.positive_int, help="threads for BLAS, elementwise passes and torch")
    parser.add_argument("--batch-size", type=cli.positive_int, help="default: the preset's (128 mlp, 16 conv)")
    parser.add_argument("--hidden", type=cli.positive_int, help="mlp: hidden units (default 400)")
    parser.add_argument("--latent", type=cli.positive_int, help="default: the preset's (20 mlp, 2 conv)")
    parser.add_argument("--repeats", type=cli.positive_int, help="timing rounds (default 15 mlp, 5 conv)")
    parser.add_argument("--inner", type=cli.positive_int, help="calls per timing (default: ~0.1 s worth)")
    parser.add_argument("--epoch-steps", type=cli.positive_int, help="steps of the epoch timed (default all for mlp, "
                        "400 for conv; the epoch's time is projected from them)")
    parser.add_argument("--epoch-repeats", type=cli.positive_int, help="epoch timing rounds (default 3 mlp, 5 conv)")
    parser.add_argument("--layers", action="store_true", help="also time each layer's forward and backward")
    parser.add_argument("--data-dir", type=cli.path,
                        help="time epochs on Fashion-MNIST's training images from this folder (default: random images "
                             "of the same size)")
    cli.add_device_option(parser)
    return parser


def bench_command(args):
    backend.use_device(args.device)
    if backend.is_gpu():
        timing.add_sync(backend.xp.cuda.Device().synchronize)
    with threads.limit_threads(args.threads):
        timing.bench(args)
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.bench`. Returns the exit code."""
    return cli.run(bench_command, build_parser().parse_args(argv), keep_handlers=argv is None)


if __name__ == "__main__":
    sys.exit(main())
