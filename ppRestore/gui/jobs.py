"""A restore running in the GUI controller's worker thread, and its progress/cancel hook.

:class:`RestoreJob` is what :meth:`.controller.GuiController.start_restore` returns (the
view polls its event queue); :class:`_PassProgress` turns the predictor's per-pass tile
callback into one fraction and raises :class:`RestoreCancelled` when asked to stop.
Re-exported from :mod:`.controller`.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Tuple

from ..data.io import Image

__all__ = ["RestoreCancelled", "RestoreJob"]


class RestoreCancelled(Exception):
    """Raised inside the worker (from the progress callback) when the user cancels."""


class RestoreJob:
    """One restore running in a worker thread; read its :attr:`events` queue."""

    def __init__(self) -> None:
        self.events: queue.Queue[Tuple[str, Any]] = queue.Queue()
        self._cancel = threading.Event()
        self.thread: threading.Thread | None = None
        self.result: Image | None = None
        self.error: str | None = None
        self.seconds = 0.0  # wall time of the finished job (model loading included)

    def cancel(self) -> None:
        """Ask the worker to stop at the next tile (a whole-image pass cannot be
        interrupted)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker; True when it has finished."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running()


class _PassProgress:
    """Turn the predictor's per-pass ``(done, total)`` tile callback into one overall
    fraction: self-ensemble runs 8 passes and a grey model on a colour image one pass
    per channel, and each pass restarts the tile count."""

    def __init__(
        self, passes: int, report: Callable[[float], None], cancel: threading.Event
    ) -> None:
        self.passes = max(1, passes)
        self.report = report
        self.cancel = cancel
        self.index = 0
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise RestoreCancelled()
        if done <= self.last:  # a new pass started
            self.index += 1
        self.last = done
        frac = (min(self.index, self.passes - 1) + done / max(total, 1)) / self.passes
        self.report(min(1.0, frac))
