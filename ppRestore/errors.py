"""One table from exceptions to a one-line message and an exit code.

Every command-line tool (``tools/*.py``, ``deploy/python/infer.py``, the ``pprestore``
command) and the GUI controller turn a failure into text through this table, so the
same mistake reads and exits the same everywhere:

* exit **2**: the input given to the command is wrong (config, arguments, weights file,
  dataset or image content); fix it and run again. ``argparse`` also exits 2.
* exit **1**: the run itself failed (cannot write, out of memory, training diverged, an
  optional package is missing, the inference engine refused the model).
* exit **130**: interrupted (Ctrl-C), as shells report SIGINT.

Unknown exceptions are not in the table: they are bugs and keep their traceback.

The classes are looked up by module and name in ``sys.modules`` only: an exception
cannot be an instance of a class whose module was never imported, so this file imports
nothing heavy (no paddle) and a tool's ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Callable, NamedTuple

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "ERROR_TABLE",
    "ErrorKind",
    "classify",
    "exit_code",
    "cli_message",
    "first_line",
    "gui_message",
    "run_cli",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ErrorKind(NamedTuple):
    """One row: the exception class (by module and name), a label for dialogs ("" shows
    the exception's own class name, e.g. ``PermissionError``), the exit code."""

    module: str
    name: str
    label: str
    code: int


# First match wins: subclasses before their bases.
ERROR_TABLE: tuple = (
    ErrorKind("ppRestore.config", "ConfigError", "Config problem", EXIT_USAGE),
    ErrorKind("ppRestore.registry", "RegistryError", "Config problem", EXIT_USAGE),
    ErrorKind("ppRestore.weights.errors", "UnsafeWeightsError", "Refused unsafe weights file", 2),
    ErrorKind("ppRestore.weights.errors", "WeightsError", "Weights problem", EXIT_USAGE),
    ErrorKind("ppRestore.engine.checkpoint", "CheckpointError", "Checkpoint problem", EXIT_USAGE),
    ErrorKind("ppRestore.engine.lock", "SaveDirBusyError", "Save folder in use", EXIT_USAGE),
    ErrorKind(
        "ppRestore.engine.train_state", "NonFiniteLossError", "Training diverged", EXIT_FAILED
    ),
    ErrorKind("ppRestore.data.image_types", "ImageReadError", "Cannot read image", EXIT_USAGE),
    ErrorKind("ppRestore.data.image_types", "ImageWriteError", "Cannot save image", EXIT_FAILED),
    ErrorKind("builtins", "FileNotFoundError", "Not found", EXIT_USAGE),
    ErrorKind("builtins", "MemoryError", "Out of memory", EXIT_FAILED),
    ErrorKind("builtins", "ValueError", "Invalid input", EXIT_USAGE),
    ErrorKind("builtins", "ImportError", "", EXIT_FAILED),
    ErrorKind("builtins", "OSError", "", EXIT_FAILED),
    # Paddle reports engine failures (a corrupt model.json, a kernel error) as RuntimeError.
    ErrorKind("builtins", "RuntimeError", "", EXIT_FAILED),
)

_MEMORY_HINT = "try Tile 'auto' or a smaller tile size"


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, shortened to ``limit`` characters (Paddle's
    C++ errors are many lines of message, hint and source location)."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def classify(exc: BaseException) -> ErrorKind | None:
    """The table row for ``exc``, or None for an exception the table does not know."""
    for kind in ERROR_TABLE:
        mod = sys.modules.get(kind.module)
        cls = getattr(mod, kind.name, None) if mod is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind
    return None


def exit_code(exc: BaseException) -> int:
    """The exit code for ``exc`` (1 for an exception outside the table)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    kind = classify(exc)
    return kind.code if kind else EXIT_FAILED


def _text(exc: BaseException) -> str:
    return first_line(str(exc)) or type(exc).__name__


def gui_message(exc: BaseException) -> str:
    """One line for an error dialog: the kind of problem, then the library's message
    (which already names the file and the key)."""
    kind = classify(exc)
    text = _text(exc)
    if kind is None or not kind.label:
        return f"{type(exc).__name__}: {text}"
    if kind.name == "MemoryError":
        return f"{kind.label}: {_MEMORY_HINT}"
    return f"{kind.label}: {text}"


def cli_message(exc: BaseException) -> str:
    """The text a command prints after ``error:``."""
    kind = classify(exc)
    if kind is not None and kind.name == "MemoryError":
        return "out of memory (try --tile auto or a smaller tile size)"
    if kind is None or kind.name == "RuntimeError":
        return _text(exc)  # engine errors: the first line says what is wrong
    # ppRestore's own messages are written as one sentence, sometimes wrapped: keep it all.
    return " ".join(str(exc).split()) or type(exc).__name__


def run_cli(main: Callable[..., int | None], *args, prefix: str = "error", **kwargs) -> int:
    """Call ``main(*args, **kwargs)`` and turn a known exception into one ``prefix: ...``
    line on stderr and its exit code; ``None`` from ``main`` means 0.

    Exceptions outside the table propagate with their traceback (they are bugs).
    """
    try:
        rc = main(*args, **kwargs)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - filtered by the table below
        if classify(e) is None:
            raise
        print(f"{prefix}: {cli_message(e)}", file=sys.stderr)
        return exit_code(e)
    return EXIT_OK if rc is None else int(rc)
