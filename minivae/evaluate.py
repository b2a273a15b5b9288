"""`python -m minivae.evaluate CKPT`: the test ELBO and the importance-weighted log-likelihood of a checkpoint.

    python -m minivae.evaluate runs/<run>/checkpoint.npz            # or just the run folder
    python -m minivae.evaluate runs/<run> --eval-samples 1000       # a tighter log-likelihood bound

It needs only the dataset's two test files, found where the run found its data (recorded in the checkpoint)
unless --data-dir says otherwise. run/metrics.py says what the two numbers mean.
"""

# ruff: noqa: E402 (the stop handling comes first: run/stops.py)
from minivae.run import stops

if __name__ == "__main__":
    stops.early()  # a stop while the rest loads: one line, exit 130

import sys

from minivae import cli
from minivae.core import backend
from minivae.run import checkpoint, metrics, presets, start
from minivae.run.kinds import kind_of


def evaluate_checkpoint(path, data_dir=None, eval_samples=None):
    """Load a checkpoint and its test set, print and return metrics.final_results. Errors are one-line
    exceptions (CheckpointError, DataError)."""
    ckpt = checkpoint.load(path, presets.config_problem)
    config = presets.complete(ckpt.config)  # a checkpoint from before a config key existed: its default
    model, _ = start.restored(ckpt, config)
    dataset = start.test_set(ckpt, config, data_dir)
    where = f"epoch {ckpt.epoch}" + (f", step {ckpt.step} of epoch {ckpt.epoch + 1}" if ckpt.step else "")
    print(f"{ckpt.path}: {config['preset']} preset, latent {config['latent']}, trained on {config['dataset']} "
          f"to the end of {where}")
    final = metrics.final_results(model, kind_of(config), dataset.x_test, dataset.y_test, config["seed"],
                                  metrics.eval_samples_for(config, eval_samples))
    print(metrics.summary(final, len(dataset.x_test), config))
    return final


def build_parser():
    parser = cli.Parser(prog="python -m minivae.evaluate",
                        description="Test ELBO and importance-weighted log-likelihood of a checkpoint.")
    cli.add_checkpoint_arguments(parser)
    parser.add_argument("--eval-samples", type=cli.non_negative_int, metavar="K",
                        help="importance samples per image for the log-likelihood; 0 skips it "
                             "(default 100, 10 for the convnet)")
    cli.add_device_option(parser)
    cli.add_threads_option(parser)
    return parser


def evaluate(args):
    backend.use_device(args.device)
    cli.limit_threads(args.threads)
    final = evaluate_checkpoint(args.checkpoint, args.data_dir, args.eval_samples)
    if not metrics.all_finite(final):
        return cli.fail(f"{args.checkpoint}: the model's weights hold NaN or infinity, so this checkpoint is not "
                        f"usable; resume from an earlier one, or train again with a lower --lr", code=1)
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.evaluate` and `minivae-evaluate`. Returns the exit code (cli.run says
    what argv None changes)."""
    return cli.run(evaluate, build_parser().parse_args(argv), keep_handlers=argv is None)


if __name__ == "__main__":
    sys.exit(main())
