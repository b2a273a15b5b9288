"""What the training command does when a run stops or fails: signals, the save at a stop, one-line messages.

Ctrl-C, SIGTERM and SIGHUP are all treated the same way. The first one only asks the training loop to stop
between two steps (training.py), so that no update is half applied; the command then saves a checkpoint at
that step (`interrupted`) and prints one line: which checkpoint is on disk and the command that resumes it. A
second signal stops at once, and the line still says which checkpoint is on disk. Every other fault in
training (divergence, a full disk, memory) ends with `fault`: one line on stderr saying what went wrong, what
is `kept` and how to go on.
"""

import shlex
import signal
import sys

from minivae import cli
from minivae.run import checkpoint, files, training

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def stop_on_signals(state):
    """Make Ctrl-C, SIGTERM and SIGHUP ask the loop to stop between two steps (training.py), so that no
    update is ever half applied. A second signal stops at once (KeyboardInterrupt). With state None (after
    training: nothing is left to save) the first signal stops at once, so that the figure being written is
    cleaned up (files.py) and the command says what is saved.

    Returns a function that puts the old handlers back. Outside the main thread signals cannot be caught:
    a signal then has its default effect.
    """
    def handler(signum, frame):
        if state is None or state.stop_requested:
            raise KeyboardInterrupt
        state.stop_requested = True

    try:
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread
        return lambda: None

    def put_back():
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
    return put_back


def resume_command(path, config, args):
    words = ["python", "-m", "minivae.train", "--resume", str(path), "--epochs", str(config["epochs"])]
    words += ["--device", "gpu"] if args.device == "gpu" else []
    words += ["--threads", str(args.threads)] if args.threads != cli.DEFAULT_THREADS else []  # the same sums
    words += ["--eval-samples", str(args.eval_samples)] if args.eval_samples is not None else []
    words += ["--no-plots"] if args.no_plots else []
    return shlex.join(words)  # no --data-dir: the checkpoint records where the data was


def kept(out, state, config, args):
    """After a fault in training, what is on disk: the checkpoint and the command that resumes it."""
    path = out / checkpoint.FILENAME
    if state.saved is None:
        return "nothing was saved"
    return f"{path} holds {state.saved}; resume with: {resume_command(path, config, args)}"


def fault(message, code=2):
    """Say what went wrong in one line on stderr; return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def diverged(err, out, state, config, ckpt):
    """A NaN or infinite loss: nothing to resume (it would diverge again); say what is kept and the likely cause."""
    path = out / checkpoint.FILENAME
    good = f"the last good checkpoint {path} ({state.saved}) is kept as it was" if state.saved else \
        "no checkpoint was saved"
    if ckpt is None or state.epoch > ckpt.epoch:
        cause = f"try a lower --lr than {config['lr']}"
    else:  # it diverged before finishing an epoch of its own: the weights it started from are suspect
        cause = f"the checkpoint {ckpt.path} may hold damaged weights (check it with python -m minivae.evaluate)"
    return fault(f"{err}; training stopped and {good}; {cause}", code=1)


def out_of_memory(err, out, state, config, args):
    """A batch too big for the memory left, found during training."""
    return fault(f"out of memory while training ({files.one_line(err)}); {kept(out, state, config, args)}, "
                 f"or start again with a smaller --batch-size than {config['batch_size']}")


def model_is_saved(out):
    """After training, a fault leaves the trained model on disk: say where, and how to evaluate it."""
    return (f"the trained model is saved in {out / checkpoint.FILENAME}; evaluate it with: "
            f"python -m minivae.evaluate {shlex.quote(str(out))}")


def interrupted(model, optimizer, config, state, out, args):
    """A stop during training: save where we are (unless an update was cut in half), and say in one line what
    is on disk."""
    path = out / checkpoint.FILENAME
    failed = ""
    if not state.updating:
        try:
            training.save_checkpoint(path, model, optimizer, config, state)
        except (OSError, KeyboardInterrupt) as err:
            reason = "interrupted again" if isinstance(err, KeyboardInterrupt) else files.one_line(err)
            failed = f"saving the current step failed ({reason}); "
    if state.saved is None:
        print(f"interrupted; {failed}nothing was saved (the stop came during the first epoch)", file=sys.stderr)
        return 130
    lost = "" if not state.updating else " (the steps after it are lost: the stop came during an update)"
    print(f"interrupted; {failed}{path} holds {state.saved}{lost}; resume with: {resume_command(path, config, args)}",
          file=sys.stderr)
    return 130
