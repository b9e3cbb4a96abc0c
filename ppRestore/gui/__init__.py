"""A small Tkinter window to restore one image at a time (``python tools/gui.py``).

:mod:`.controller` holds the logic (no Tk, unit-tested); :mod:`.app` is the Tk view.
Nothing imports this package except ``tools/gui.py``, and Tk is imported only by
:mod:`.app`, so a Python without Tk loses the window and nothing else.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GuiController", "ModelSpec", "error_message", "main"]


def __getattr__(name: str) -> Any:
    if name in ("GuiController", "ModelSpec", "error_message"):
        from . import controller

        return getattr(controller, name)
    if name == "main":
        from .app import main

        return main
    raise AttributeError(name)
