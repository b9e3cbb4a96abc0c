"""The one error table (ppRestore.errors): every row names a real exception class, and
the same exception reads and exits the same from every tool."""

from __future__ import annotations

import importlib

import pytest

from ppRestore import errors
from ppRestore.config import ConfigError
from ppRestore.data.io import ImageReadError, ImageWriteError
from ppRestore.registry import RegistryError
from ppRestore.weights.safe_load import UnsafeWeightsError, WeightsError


def test_every_row_is_an_exception_class_and_subclasses_come_first():
    classes = []
    for kind in errors.ERROR_TABLE:
        cls = getattr(importlib.import_module(kind.module), kind.name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), kind
        assert kind.code in (errors.EXIT_USAGE, errors.EXIT_FAILED), kind
        classes.append(cls)
    for i, cls in enumerate(classes):  # a base above its subclass would shadow it
        assert not any(issubclass(later, cls) and later is not cls for later in classes[i + 1 :])


@pytest.mark.parametrize(
    "exc, code",
    [
        (ConfigError("a.yml: unknown key 'itres'"), 2),
        (RegistryError("unknown model type 'X'"), 2),
        (UnsafeWeightsError("w: os.system"), 2),
        (WeightsError("w: missing keys"), 2),
        (ImageReadError("a.png: empty file"), 2),
        (FileNotFoundError("nope.yml"), 2),
        (ValueError("tile must be >= 16"), 2),
        (ImageWriteError("out: cannot write"), 1),
        (PermissionError("out: denied"), 1),
        (MemoryError(), 1),
        (RuntimeError("(InvalidArgument) x\n  [C++ trace]"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(exc, code):
    assert errors.exit_code(exc) == code


def test_run_cli_prints_one_line_and_returns_the_code(capsys):
    def boom():
        raise ConfigError("a.yml: unknown key 'itres'.\n  Did you mean 'iters'?")

    assert errors.run_cli(boom) == 2
    err = capsys.readouterr().err
    assert err == "error: a.yml: unknown key 'itres'. Did you mean 'iters'?\n"

    def engine():
        raise RuntimeError("\n  (InvalidArgument) bad shape\n  [C++ trace]\n")

    assert errors.run_cli(engine, prefix="x: error") == 1
    assert capsys.readouterr().err == "x: error: (InvalidArgument) bad shape\n"
    assert errors.run_cli(lambda: None) == 0 and errors.run_cli(lambda: 3) == 3


def test_unknown_exceptions_keep_their_traceback():
    class Bug(Exception):
        pass

    def bug():
        raise Bug("a bug")

    with pytest.raises(Bug):
        errors.run_cli(bug)


def test_gui_messages_come_from_the_same_table():
    assert errors.gui_message(ConfigError("a.yml: bad")) == "Config problem: a.yml: bad"
    assert errors.gui_message(PermissionError("denied")) == "PermissionError: denied"
    assert errors.gui_message(MemoryError()).startswith("Out of memory")
