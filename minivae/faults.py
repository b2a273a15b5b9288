"""How training ends when it does not end well, the same for the training command and the demos: the save at a
stop, and one line that says what happened, what is on disk and how to go on.

`train(...)` runs training.train and turns every way it can end early into that line on stderr and an exit code:

  * a stop (Ctrl-C, SIGTERM, SIGHUP; run/stops.py): the first signal only asks the loop to stop between two steps,
    so that no update is half applied; `interrupted` then saves a checkpoint at that step and says which
    checkpoint is on disk -- read back from the file itself, so that the line is true however the signals fell --
    and the command that resumes it (exit 130). A second signal cuts that save short; the line still says what the
    file holds;
  * a loss that turns NaN or infinite (`diverged`, exit 1): the last good checkpoint is kept as it was;
  * a full disk, sizes that do not fit in memory (`fault`, exit 2): what is kept, and how to go on.

Every message function settles the stop handling first (stops.settle): once a line is being said, no signal can
cut it or add another.
"""

import shlex
import sys

from minivae import cli
from minivae.run import checkpoint, files, stops, training
from minivae.run.memory import is_allocation_failure


def resume_command(path, config, args):
    """The training command that resumes the checkpoint at `path` with the options that matter (args: the
    training command's)."""
    words = ["python", "-m", "minivae.train", "--resume", str(path), "--epochs", str(config["epochs"])]
    words += ["--device", "gpu"] if getattr(args, "device", None) == "gpu" else []
    threads = getattr(args, "threads", cli.DEFAULT_THREADS)
    words += ["--threads", str(threads)] if threads != cli.DEFAULT_THREADS else []  # the same sums
    eval_samples = getattr(args, "eval_samples", None)
    words += ["--eval-samples", str(eval_samples)] if eval_samples is not None else []
    words += ["--no-plots"] if getattr(args, "no_plots", False) else []
    return shlex.join(words)  # no --data-dir: the checkpoint records where the data was


def train(model, optimizer, dataset, config, state, out, go_on, ckpt=None, first=None):
    """training.train into the folder `out`, watched for stops (run/stops.py). Returns None when it trained to the
    end; else the exit code, its one line said. go_on: how to go on from the checkpoint (`resume with: ...`), or
    None when it cannot be resumed; ckpt: the checkpoint the run resumed, if any (a divergence right after it
    blames it); first(): writes to make before training, under the same watch (a resumed run's first save)."""
    failure = None  # the fault that ends the run, if one does
    with stops.watching(state):
        try:  # the one KeyboardInterrupt a stop raises may land anywhere in here, and nowhere after settle()
            try:
                if first is not None:
                    first()
                training.train(model, optimizer, dataset, config, state, out)
            except (training.Diverged, training.SaveFailed, MemoryError, ValueError) as err:
                failure = err  # first: a stop from now on must not save (the weights may be broken)
                if isinstance(err, (MemoryError, ValueError)) and not is_allocation_failure(err):
                    raise  # (a bug in minivae)
                stops.settle()
        except KeyboardInterrupt:  # a stop (every KeyboardInterrupt leaves the stop handling disarmed: stops.py)
            if failure is None:
                return interrupted(model, optimizer, config, state, out, go_on)
            stops.settle()  # it came as the fault was being handled: the fault's line stands
    if failure is None:
        return None
    if isinstance(failure, training.Diverged):
        return diverged(failure, out, state, config, ckpt)
    if isinstance(failure, training.SaveFailed):  # a full disk, say
        return fault(f"{failure}; free some space; {kept(out, state, go_on)}")
    return fault(f"out of memory while training ({files.one_line(failure)}); {kept(out, state, go_on)}, or start "
                 f"again with a smaller --batch-size than {config['batch_size']}")  # a batch too big for the memory


def interrupted(model, optimizer, config, state, out, go_on):
    """A stop during training: save where we are (unless an update was cut in half), and say in one line what
    the file on disk holds. Returns 130."""
    path = out / checkpoint.FILENAME
    meant, failure = None, None
    try:  # the one KeyboardInterrupt a further signal may raise lands in here, and none after settle()
        stops.arm()  # one more signal may cut the save short (or has: it came while the loop was stopping)
        if not state.updating:
            meant = training.describe(state.epoch, state.step)
            try:
                training.save_checkpoint(path, model, optimizer, config, state)
            except OSError as err:
                failure = files.one_line(err)
        stops.settle()
    except KeyboardInterrupt:
        stops.settle()
        failure = "interrupted again"
    holds = training.on_disk(path)
    if failure is not None and holds is not None and holds == meant:  # cut after the file was in place
        failure = None
    failed = f"saving the current step failed ({failure}); " if failure else ""
    if holds is None:
        print(f"interrupted; {failed}nothing was saved (the stop came during the first epoch)", file=sys.stderr)
        return 130
    lost = " (the steps after it are lost: the stop came during an update)" if state.updating else ""
    how = f"; {go_on}" if go_on else ""
    print(f"interrupted; {failed}{path} holds {holds}{lost}{how}", file=sys.stderr)
    return 130


def kept(out, state, go_on):
    """After a fault in training, what is on disk: the checkpoint and how to go on from it."""
    if state.saved is None:
        return "nothing was saved"
    return f"{out / checkpoint.FILENAME} holds {state.saved}" + (f"; {go_on}" if go_on else "")


def fault(message, code=2):
    """Say what went wrong in one line on stderr; return the exit code (cli.fail)."""
    return cli.fail(message, code)


def diverged(err, out, state, config, ckpt):
    """A NaN or infinite loss: nothing to resume (it would diverge again); say what is kept and the likely cause."""
    path = out / checkpoint.FILENAME
    good = f"the last good checkpoint {path} ({state.saved}) is kept as it was" if state.saved else \
        "no checkpoint was saved"
    if ckpt is None or state.epoch > ckpt.epoch:
        cause = f"try a lower --lr than {config['lr']}"
        if config.get("beta", 1.0) > 1.0:  # the KL's weight scales its gradient, and may overflow the loss itself
            cause += f", or a smaller --beta than {config['beta']:g}"
    else:  # it diverged before finishing an epoch of its own: the weights it started from are suspect
        cause = f"the checkpoint {ckpt.path} may hold damaged weights (check it with python -m minivae.evaluate)"
    return fault(f"{err}; training stopped and {good}; {cause}", code=1)


def model_is_saved(out, evaluable=True):
    """After training, a fault leaves the trained model on disk: say where, and how to evaluate it (evaluable:
    whether the evaluate command can, i.e. it was trained on a dataset the commands load)."""
    where = f"the trained model is saved in {out / checkpoint.FILENAME}"
    return f"{where}; evaluate it with: python -m minivae.evaluate {shlex.quote(str(out))}" if evaluable else where
