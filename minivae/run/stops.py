"""How a program of minivae stops: Ctrl-C, SIGTERM and SIGHUP handled as one, and blocks a stop must not cut.

The commands (cli.run) and the demos install one handler for the three signals, `handled()`, for as long as they
run. What a signal does depends on what the program is doing:

  * while a run trains (`watching(state)`), the first signal only sets state.stop_requested: the training loop
    (training.py) stops between two steps, and the command saves that step (faults.py);
  * otherwise (loading data, evaluating, drawing, a second signal during training) the handler raises
    KeyboardInterrupt, once: after it, further signals are ignored until `arm()` allows one more (the save at a
    stop does, so that a second signal can still cut a slow save short);
  * inside a block that must run whole (`with whole():` the rename that puts a file in place and what records
    it, an optimizer update and its bookkeeping, a temporary file's clean-up) the KeyboardInterrupt waits for
    the end of the block, so that no file, no update and no record of them is ever cut in two;
  * after `settle()` (the stop is being said) every signal is ignored, to the end of the process.

Only one KeyboardInterrupt is ever in flight, so the code that handles a stop is never cut by another one, and
what it says about the files on disk is what they hold. A program started from the command line keeps the
handler until it exits, and ignores signals once it is ending (a signal while Python shuts down is not a death by
signal); called from Python (the tests), `handled()` puts the previous handlers back.

Plain state at module level: a process has one set of signal handlers. Without `handled()` (a library user's
own program) nothing here changes what a signal does, and `whole()` blocks cost a counter.
"""

import atexit
import os
import signal
import sys
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_installed = False
_watched = None  # the RunState a first signal asks to stop (training.py), or None
_armed = True  # a signal may raise KeyboardInterrupt now
_missed = False  # a signal came while it could not raise: the next arm() or the end of a whole block raises
_whole = 0  # depth of the blocks that must run whole
_settled = False  # the stop is being said: ignore everything


def _handler(signum, frame):
    global _armed, _missed
    if _settled or sys.is_finalizing():
        return
    if _watched is not None and not _watched.stop_requested:
        _watched.stop_requested = True  # the loop stops between two steps
        return
    if not _armed or _whole:
        _missed = True
        return
    _armed, _missed = False, False
    raise KeyboardInterrupt


def early():
    """A program's first line, before it loads the rest of minivae (NumPy and Matplotlib take a good part of a
    second): until its own handling begins (`handled`, `install_for_good`), a stop ends it at once with one line
    and exit 130 -- nothing has been written yet."""
    try:
        for sig in SIGNALS:
            signal.signal(sig, _stop_at_once)
    except ValueError:  # not the main thread
        pass


def _stop_at_once(signum, frame):
    try:
        sys.stderr.write("interrupted; nothing was written\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def _install():
    """Put the handler in place with a clean slate; returns the previous handlers (ValueError outside the main
    thread, where signals cannot be caught)."""
    global _installed, _watched, _armed, _missed, _whole, _settled
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    _installed, _watched, _armed, _missed, _whole, _settled = True, None, True, False, 0, False
    return previous


@contextmanager
def handled(keep=False):
    """Handle Ctrl-C, SIGTERM and SIGHUP as described above for the block. keep: leave the handler in place
    afterwards, ignoring every signal (a program about to exit); else put the previous handlers back.
    Outside the main thread, signals cannot be caught: the block then runs with the handlers as they are."""
    global _installed, _watched, _settled
    try:
        previous = _install()
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        _settled = True
        if keep:
            ignore_from_now()
        else:
            for sig, old in previous.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            _installed, _watched, _settled = False, None, False


def install_for_good():
    """For a script (the demos): the handler from now until the process exits; from the moment it begins to exit,
    every signal is ignored (`ignore_from_now`)."""
    try:
        _install()
    except ValueError:  # not the main thread
        return
    atexit.register(ignore_from_now)


def ignore_from_now():
    """The program is ending: ignore the three signals to its very end. (SIG_IGN rather than the handler: Python
    puts the default action back for its own handlers as it shuts down, and SIGTERM would then kill a program
    that has said everything.)"""
    global _settled
    if not _installed:  # (a program that does not handle stops this way keeps its own handlers)
        return
    _settled = True
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def watching(state):
    """While the block runs, a first signal sets state.stop_requested instead of raising."""
    global _watched
    _watched = state
    try:
        yield
    finally:
        _watched = None


@contextmanager
def whole():
    """A block a stop must not cut: a KeyboardInterrupt a signal asks for during it is raised at its end."""
    global _whole, _armed, _missed
    _whole += 1
    try:
        yield
    finally:
        _whole -= 1
        if not _whole and _missed and _armed and _installed and not _settled:
            _armed, _missed = False, False
            raise KeyboardInterrupt


def disarm():
    """From now on a signal only is remembered (the training loop calls this as it stops for a requested stop:
    the code that saves the step must not be cut before it starts)."""
    global _armed
    _armed = False


def arm():
    """Let one more signal raise KeyboardInterrupt; one that came while disarmed raises it here, now."""
    global _armed, _missed
    _armed = True
    if _missed and _installed and not _settled:
        _armed, _missed = False, False
        raise KeyboardInterrupt


def settle():
    """The stop is being said: every signal from now on is ignored (to the end of `handled()`)."""
    global _settled
    if _installed:
        _settled = True
