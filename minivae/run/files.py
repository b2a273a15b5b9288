"""Writing files so that an interruption never leaves a half-written one, and errors said in one line.

Every file minivae writes (checkpoints, metrics.json, figures, downloads) goes through `atomic_path`: the
bytes go to a hidden temporary file in the target's folder, which is flushed to the disk and only then
renamed onto the target. A rename within one folder is atomic, so the target holds the old file or the new
one, never a mixture, and the temporary file is removed on every way out that Python sees (an exception,
Ctrl-C, and SIGTERM/SIGHUP, which the commands turn into exceptions; a stop never cuts the rename or the
clean-up: stops.whole). Only SIGKILL or a power cut can leave one behind: its name is
'.minivae-tmp.<target name>.<random>.tmp<extension>', a name no one else writes, and `remove_stale` clears such
leftovers from a folder, and nothing else. `make_folders` and `remove_made` make folders and remove again only
those a call made (a run's output folder, the download cache).
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from minivae.run import stops

TEMP_PREFIX, TEMP_SUFFIX = ".minivae-tmp.", ".tmp"  # every temporary file minivae makes: prefix, name, suffix


def one_line(err):
    """An exception's text on one line, for messages built around it."""
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def atomic_path(path):
    """Yield a temporary file name beside `path`; when the block ends normally, rename it onto `path`.

    For writers that want a file name (matplotlib, Pillow): the temporary name ends in `path`'s extension,
    so writers that infer the format from it still do. If the block raises, the temporary file is removed
    and `path` is untouched. A stop (stops.py) can cut the writing short, never the rename and the folder sync
    that make it durable, nor the clean-up: `path` then holds the old file or the new one, and the caller can
    tell which by reading it.
    """
    path = Path(path)
    tmp = None
    try:
        with stops.whole():  # made and named at once: a stop cannot leave it behind unseen
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.",
                                       suffix=TEMP_SUFFIX + path.suffix)
            os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes are on the disk before the name points at them
        with stops.whole():
            os.chmod(tmp, 0o644)  # mkstemp makes the file private; ours are ordinary files
            try:
                os.replace(tmp, path)
            except OSError as err:  # (a folder of that name, say): the error names the file, not our temporary one
                raise type(err)(err.errno, err.strerror, str(path)) from None
            _sync_folder(path.parent)
    finally:
        with stops.whole():
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)


@contextmanager
def atomic_file(path):
    """Yield a binary file open for writing; when the block ends normally it replaces `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def _sync_folder(folder):
    """Make a rename in `folder` durable (POSIX; elsewhere a folder cannot be opened, which is fine)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale(folder, name="*"):
    """Remove the temporary files that an interrupted write of `folder/name` left (SIGKILL, power loss); name "*"
    (the default) removes those of every file in the folder. Only minivae's own temporary files match: a name
    that starts with TEMP_PREFIX and holds TEMP_SUFFIX. Returns the paths removed."""
    stale = sorted(path for path in Path(folder).glob(f"{TEMP_PREFIX}{name}.*{TEMP_SUFFIX}*") if path.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def make_folders(folder):
    """Make `folder` and any missing parents; returns the folders this call made, outermost first (none if it
    existed). Each is made by one mkdir that fails if it exists, so when two programs race to make the same
    folder, exactly one of them has made it: only that one may remove it again (`remove_made`)."""
    folder = Path(folder)
    missing = []
    for parent in (folder, *folder.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    made = []
    try:
        for parent in reversed(missing):
            try:
                parent.mkdir()
            except FileExistsError:  # made by someone else meanwhile (or a file: the next mkdir says so)
                continue
            made.append(parent)
        if not folder.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(folder))
    except BaseException:  # a name too long, no permission, a stop: the parents made so far go again
        remove_made(made)
        raise
    return made


def remove_made(made):
    """Remove the folders `make_folders` made, innermost first, as long as they are empty; a folder that holds
    anything (someone else's file, say) is left, with those outside it."""
    for folder in reversed(made):
        try:
            Path(folder).rmdir()
        except OSError:
            return
