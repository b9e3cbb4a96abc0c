"""Helpers shared by the tests: run a command-line tool, register a test-only class."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from typing import Any, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")


def run_cli(
    script: str,
    *args: str,
    cwd: str | None = None,
    preload: Sequence[str] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``script`` (a path relative to the repo, e.g. ``tools/infer.py``) in a fresh
    interpreter, as a user does; ``preload`` names test modules imported first (e.g.
    ``toy_models``, whose ``_Toy*`` models a config then refers to)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), GLOG_minloglevel="3")
    path = os.path.join(REPO, script)
    if preload:
        code = (
            f"import sys, runpy, {', '.join(preload)}; "
            f"sys.argv = [{script!r}] + sys.argv[1:]; "
            f"runpy.run_path({path!r}, run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, path, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=timeout
    )


def run_main(script: str, *args: str, capsys=None) -> tuple:
    """Call ``script``'s ``main(args)`` in this process (same code path, no interpreter
    start-up); returns (exit code, captured stderr)."""
    code = runpy.run_path(os.path.join(REPO, script))["main"](list(args))
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def register_once(registry: Any, obj: Any) -> Any:
    """Register ``obj`` under its name unless that name is taken (a test module may be
    imported twice, as ``toy_models`` and ``tests.toy_models``); returns what the
    registry holds. Public API only: ``in`` and ``get``."""
    if obj.__name__ not in registry:
        registry.register(obj)
    return registry.get(obj.__name__)
