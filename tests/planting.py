"""Planting a one-line mistake in a copy of minivae's code, to show that a test fails on it.

    plant(monkeypatch, Mistake(id, "run.training.Totals.add", "value * n", "value"))

takes the source of one real function (or method) of the library, replaces one piece of code (it must occur
exactly once) with the mistaken version, compiles the result in the function's own module and monkeypatches it
in, and wherever a module (minivae's or a test's) imported it, or minivae filed it in a table (a dict such as
losses.RECONSTRUCTIONS), as if the source file had been edited; it stays until monkeypatch undoes it. The
*_mistakes.py test files plant one mistake each and assert that a test of theirs (or a row of the gradient check's
table) then fails; their ids name the mistakes, so that the list reads as what the tests guard against.
"""

import importlib
import inspect
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent


class Mistake(NamedTuple):
    id: str
    target: str  # module path under minivae, then the class (if any) and the function: "core.losses.bce_logits"
    correct: str  # the code as it is
    mistaken: str  # the one-line mistake
    caught_by: Callable | None = None  # the test that must fail on it (the *_mistakes.py files say how it is called)


def _owner_of(target):
    """(the module, the object holding the function, the function's name) for a target such as
    'run.training.Totals.add': the longest prefix that imports as a module, then attributes."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(f"minivae.{'.'.join(parts[:cut])}")
        except ModuleNotFoundError:
            continue
        owner = module
        for attribute in parts[cut:-1]:
            owner = getattr(owner, attribute)
        return module, owner, parts[-1]
    raise ValueError(f"no module of minivae holds {target}")


def plant(monkeypatch, mistake):
    """Monkeypatch mistake.target with its source, `correct` replaced by `mistaken`."""
    module, owner, name = _owner_of(mistake.target)
    function = owner.__dict__[name]  # the raw function, staticmethod or classmethod, as the source defines it
    source = textwrap.dedent(inspect.getsource(getattr(function, "__func__", function)))
    if isinstance(function, (staticmethod, classmethod)) and not source.startswith("@"):  # getsource keeps decorators
        source = f"@{type(function).__name__}\n{source}"
    assert source.count(mistake.correct) == 1, f"{mistake.target} should contain {mistake.correct!r} once"
    source = source.replace(mistake.correct, mistake.mistaken)
    if owner is not module:  # compiled in a class body, so that a method's super() finds its class
        source = "class Planted:\n" + textwrap.indent(source, "    ")
    namespace = {}
    exec(compile(source, f"<{mistake.id}>", "exec"), vars(module), namespace)
    mistaken = namespace[name] if owner is module else namespace["Planted"].__dict__[name]
    code = getattr(mistaken, "__func__", mistaken).__code__
    if "__class__" in code.co_freevars:  # super() means the real class, not Planted
        getattr(mistaken, "__func__", mistaken).__closure__[code.co_freevars.index("__class__")].cell_contents = owner
    monkeypatch.setattr(owner, name, mistaken)
    if owner is module:  # as if the source were edited: wherever minivae or a test imported the function, or
        for other in [m for m in list(sys.modules.values()) if _ours(m)]:  # minivae filed it in a table
            for attribute, value in list(vars(other).items()):  # (a dict such as losses.RECONSTRUCTIONS)
                if value is function:
                    monkeypatch.setattr(other, attribute, mistaken)
                elif isinstance(value, dict):
                    for key in [key for key, entry in value.items() if entry is function]:
                        monkeypatch.setitem(value, key, mistaken)


def _ours(module):
    """Whether a module is minivae's or one of the tests'."""
    return (getattr(module, "__name__", "").startswith("minivae")
            or str(getattr(module, "__file__", None) or "").startswith(str(TESTS)))


def fails(test, **arguments):
    """Whether calling the test function (with these arguments) fails: an assertion, or any other error. A test
    that asks for `monkeypatch` or `tmp_path` gets one of its own, undone or removed afterwards."""
    wanted = inspect.signature(test).parameters
    with (pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as folder,
          warnings.catch_warnings(), np.errstate(all="ignore")):  # a mistake's overflows are not news
        warnings.simplefilter("ignore")
        fixtures = {"monkeypatch": monkeypatch, "tmp_path": Path(folder)}
        arguments = {name: value for name, value in fixtures.items() if name in wanted} | arguments
        try:
            test(**arguments)
        except (Exception, pytest.fail.Exception):  # any error fails a test, not only an assert (and pytest.raises
            return True  # fails by pytest.fail.Exception, which is not an Exception)
    return False
