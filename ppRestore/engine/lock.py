"""One training per ``--save_dir``: an advisory lock on ``save_dir/.lock``.

Two runs writing ``iter_N/`` and ``config.yaml`` into one folder silently replace each
other's checkpoints (the default ``output`` makes that easy). The lock is an
``fcntl.flock`` on a file holding the owner's PID and host: the kernel drops it when its
process ends in any way (exception, signal, ``kill -9``), so a lock left by a dead run is
simply taken over, and no PID test can mistake a recycled PID for the owner. Where
``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import time

__all__ = ["SaveDirLock", "SaveDirBusyError", "LOCK_NAME"]

LOCK_NAME = ".lock"


class SaveDirBusyError(RuntimeError):
    """Another live process trains into the same save_dir."""


class SaveDirLock:
    """Hold ``save_dir/.lock`` while a training writes there.

    Args:
        save_dir: the training's output folder (created if missing).
    """

    def __init__(self, save_dir: str) -> None:
        self.save_dir = save_dir
        self.path = os.path.join(save_dir, LOCK_NAME)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> SaveDirLock:
        """Take the lock or raise :class:`SaveDirBusyError` naming the owner."""
        if self._fd is not None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux/macOS
            return self
        os.makedirs(self.save_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise SaveDirBusyError(
                f"{self.save_dir} is in use by another training ({owner}); wait for it, stop "
                "it, or pass another --save_dir"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (idempotent); the file stays, empty (removing it would race
        with a run that just opened it)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> SaveDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info["started"])))
        return f"PID {info['pid']} on {info['host']}, since {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"
