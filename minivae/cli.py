"""What every command shares: option types that refuse bad values, the --device and --threads options, and
one-line errors.

A user's mistake (a bad option, missing data, a damaged checkpoint, no GPU, sizes that do not fit in memory, a
folder that cannot be written) must end a command with one line `error: ...` on stderr and exit code 2, never
a traceback. The library raises plain errors that say what is wrong in its own terms (a config key, a folder);
`explain(err)` turns those into the command's terms (the option to change); `run(command, args)` applies it to a
command's main(), and `report_errors_in_one_line()` to a script's uncaught exceptions (the demos). Any other
exception is a bug in minivae and keeps its traceback. Both also handle Ctrl-C, SIGTERM and SIGHUP as one stop
(run/stops.py: exit 130, one line) and make any text printable, a path that is not UTF-8 included.
"""

import argparse
import math
import sys

from minivae.core import backend
from minivae.run import checkpoint, data, stops
from minivae.run.files import one_line
from minivae.run.memory import DoesNotFit, is_allocation_failure
from minivae.run.start import ConfigError, FolderError


class UsageError(Exception):
    """A mistake in how a command was called (the message is one line saying what to do)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are one line like every other mistake, exit 2: 'error: argument --lr:
    must be more than 0, got -1 (python -m minivae.train --help lists the options)', not its usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


def path(text):
    """An argparse type: a path, which an empty word is not (it would name the current folder without saying so)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names nothing; give a file or folder")
    return text


def _number(kind, low, low_ok, what):
    """An argparse type: `kind(text)`, checked to be > low (or >= low when low_ok), and finite."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not (value >= low if low_ok else value > low):
            raise argparse.ArgumentTypeError(f"must be {'at least' if low_ok else 'more than'} {low}, got {text}")
        return value
    return parse


positive_int = _number(int, 0, False, "a whole number")
non_negative_int = _number(int, 0, True, "a whole number")
positive_float = _number(float, 0.0, False, "a number")
non_negative_float = _number(float, 0.0, True, "a number")


def fraction(text):
    """An argparse type: a number in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction below 1, got {text}")
    return value


def add_checkpoint_arguments(parser):
    """The checkpoint a command reads (a file, or the run folder holding it) and --data-dir for its test images."""
    parser.add_argument("checkpoint", type=path, help="a checkpoint.npz, or the run folder that holds one")
    parser.add_argument("--data-dir", type=path, help="folder with the dataset's test files (default: where the run "
                                                      "found its data, else the usual places; see run/download.py)")


def add_device_option(parser):
    parser.add_argument("--device", choices=("cpu", "gpu"),
                        help="gpu runs on CuPy (default: as MINIVAE_BACKEND says, else cpu)")


# One BLAS thread by default. These matrix products are small (a batch of 128 times 784 x 400), and on a busy
# machine the threads of a multi-threaded BLAS mostly wait for each other; on an idle one, more threads pay
# (docs/speed.md has both, measured). 1 is the default that is safe anywhere.
DEFAULT_THREADS = 1


def add_threads_option(parser):
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                        help=f"CPU threads for the matrix products and the big elementwise passes (default "
                             f"{DEFAULT_THREADS}: more hurt on a busy machine, and help on an idle one)")


def limit_threads(n):
    """Use at most n threads from now on, for BLAS (NumPy's matrix products) and for the optimizer's
    elementwise passes (core/threads.py)."""
    from minivae.core import threads

    threads.limit_threads(n)


def option(key):
    """The command-line option that sets a config key: 'batch_size' -> '--batch-size'."""
    return "--" + key.replace("_", "-")


def user_errors():
    """The exceptions that mean 'the user must fix something', each with a one-line message."""
    return (UsageError, data.DataError, checkpoint.CheckpointError, backend.BackendError, DoesNotFit, ConfigError)


def explain(err):
    """The one-line message for an exception the user can act on, or None for any other (a bug in minivae).

    The library's errors say what is wrong; here they also say which option to change: sizes that do not fit
    (DoesNotFit), a config that cannot train on the data (ConfigError), an output folder that cannot be written
    (FolderError). A user error and an OSError (a full disk) carry their own message; an allocation failure
    gets a generic one (the commands catch it earlier where they can say which option to change)."""
    if isinstance(err, DoesNotFit):
        return f"{one_line(err)}; choose a smaller {' or '.join(map(option, err.keys))}"
    if isinstance(err, ConfigError):
        return f"{option(err.key)} {err.value}: {err.reason}"
    if isinstance(err, FolderError):
        return f"{one_line(err)}; choose another --out"
    if isinstance(err, user_errors() + (OSError,)):
        return one_line(err)
    if is_allocation_failure(err):
        return "out of memory; try a smaller --batch-size or model"
    return None


def run(command, args, keep_handlers=False):
    """Call command(args) and return its exit code, with Ctrl-C, SIGTERM and SIGHUP handled as one (run/stops.py)
    and any text printable (`printable_output`). An exception that `explain` knows becomes one line
    `error: ...` and exit 2, and a stop before any work worth saving (loading data, evaluating) exit 130.
    keep_handlers: a program that exits right after (its main() called with no arguments) keeps the handlers,
    so that a signal while Python shuts down is ignored rather than a death by signal."""
    put_back = printable_output()
    try:
        with stops.handled(keep=keep_handlers):
            code = line = None
            try:  # the one KeyboardInterrupt a stop raises may land anywhere in here, and nowhere after settle()
                try:
                    code = command(args)
                except Exception as err:
                    message = explain(err)
                    if message is None:
                        raise
                    code, line = 2, f"error: {message}"
                stops.settle()
            except KeyboardInterrupt:
                stops.settle()
                if code is None:
                    code, line = 130, "interrupted; nothing was written"
            if line:
                print(line, file=sys.stderr)
        return code
    finally:
        if not keep_handlers:
            put_back()


def fail(message, code=2):
    """Say in one line on stderr what went wrong (`error: ...`) and return the exit code, for a command that ends
    that way itself. The stop handling is settled first: no signal can add a line to this one."""
    stops.settle()
    print(f"error: {message}", file=sys.stderr)
    return code


def printable_output():
    """Make stdout and stderr print any text: a path that is not valid UTF-8 (its bytes decoded by Python as
    lone surrogates) prints with backslash escapes instead of raising UnicodeEncodeError in the middle of a
    message. Returns a function that puts the previous error handlers back."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change now: leave it
                continue
            changed.append((stream, errors))

    def put_back():
        for stream, errors in changed:
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError):
                pass
    return put_back


def report_errors_in_one_line(said_at_a_stop=None):
    """For scripts that do not go through `run` (the demos): from now on an uncaught exception that `explain`
    knows ends the program with `error: ...` and exit 2, and a stop (Ctrl-C, SIGTERM, SIGHUP: run/stops.py, from
    now until the program exits) with one line and exit 130: `said_at_a_stop()`, if given, says what is on disk.
    Others keep their traceback. Any text prints (`printable_output`)."""
    stops.install_for_good()
    printable_output()  # for good, too

    def hook(kind, err, traceback):
        stops.settle()
        if isinstance(err, KeyboardInterrupt):
            print(f"interrupted; {said_at_a_stop() if said_at_a_stop else 'nothing was written'}", file=sys.stderr)
            raise SystemExit(130)  # an exit raised in the hook is the program's exit code (CPython honours it)
        message = explain(err) if isinstance(err, Exception) else None
        if message is None:
            return sys.__excepthook__(kind, err, traceback)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)

    sys.excepthook = hook
