"""The ``pprestore`` command: ``pprestore train|val|infer|export|convert|prune|tune ...``.

Each subcommand is a module here with ``main(argv) -> int``; ``tools/*.py`` are thin
shims over the same modules (``python tools/train.py -c ...`` from a clone, as in
PaddleSeg), and ``python -m ppRestore`` is this dispatcher too. Subcommands import
their dependencies lazily, so ``pprestore --help`` does not load Paddle.
"""

from __future__ import annotations

import difflib
import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module under ppRestore.commands, one-line summary)
COMMANDS = {
    "train": ("train", "train a model from a config"),
    "val": ("val", "score weights or an exported model on the config's val_dataset"),
    "infer": ("infer", "restore images (a file, a folder or a glob)"),
    "export": ("export", "export for Paddle Inference / ONNX (deploy.yaml + model)"),
    "convert": ("convert", "convert an official (PyTorch, ...) checkpoint"),
    "prune": ("prune", "channel-prune trained weights into a smaller network"),
    "tune": ("tune", "hyper-parameter search with Optuna (the [tune] extra)"),
}


def _usage() -> str:
    from .. import __version__

    lines = [f"usage: pprestore <command> [options]   (ppRestore {__version__})", "", "commands:"]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "pprestore <command> -h shows the command's options."]
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    """Run ``pprestore`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"ppRestore {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(
            f"pprestore: error: unknown command '{name}'.{hint} Commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    prog, sys.argv[0] = sys.argv[0], f"pprestore {name}"  # argparse's prog in usage lines
    try:
        return module.main(argv[1:])
    finally:
        sys.argv[0] = prog
