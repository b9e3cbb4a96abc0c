"""``tools/gui.py --selftest IMAGE``: drive the real Tk window without a person.

Open, Restore, wait, Save, optional screenshot, quit, with the exit code in
``root._selftest_result``; used to check the window under Xvfb
(``tests/test_gui.py::test_window_selftest_under_xvfb``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import RestoreApp

__all__ = ["selftest"]


def selftest(app: RestoreApp, image: str, out: str, screenshot: str | None) -> None:
    """Drive the window like a user would: open, Restore, wait, Save, screenshot, quit."""
    root = app.root
    result = {"code": 1}

    def fail(msg: str) -> None:
        print(f"selftest: error: {msg}", file=sys.stderr)
        result["code"] = 1
        root.after(10, root.destroy)

    app.show_error = fail

    def finished(kind: str) -> None:
        if kind != "done":
            return  # errors already went through fail()
        if not app.save(out):
            return
        print(f"selftest: saved {out} (event loop polled {app.polls} times)", file=sys.stderr)
        # let the output redraw before the screenshot
        root.after(400, shoot)

    def shoot() -> None:
        root.update_idletasks()
        if screenshot:
            from PIL import ImageGrab

            x, y = root.winfo_rootx(), root.winfo_rooty()
            w, h = root.winfo_width(), root.winfo_height()
            ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ.get("DISPLAY")).save(
                screenshot
            )
            print(f"selftest: screenshot {screenshot}", file=sys.stderr)
        result["code"] = 0
        root.destroy()

    def go() -> None:
        if app.open_image(image):
            print(f"selftest: status: {app.status_var.get()}", file=sys.stderr)
            app.btn_restore.invoke()

    app.on_finished = finished
    root.after(300, go)
    root._selftest_result = result  # type: ignore[attr-defined]
