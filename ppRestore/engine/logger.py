"""Console + VisualDL logging for training (VisualDL imported only when enabled)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Dict

import numpy as np

_LOGGER_NAME = "ppRestore"


def get_logger() -> logging.Logger:
    """The package logger: ``YYYY-MM-DD HH:MM:SS [INFO] message`` on stdout."""
    logger = logging.getLogger(_LOGGER_NAME)
    if not logger.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(
            logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
        )
        logger.addHandler(h)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def attach_log_file(logger: logging.Logger, path: str) -> logging.Handler:
    """Also write ``logger``'s lines to ``path`` (appending: a resumed run continues
    the same train.log)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(
        logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    logger.addHandler(h)
    return h


def detach_log_file(logger: logging.Logger, handler: logging.Handler | None) -> None:
    if handler is not None:
        logger.removeHandler(handler)
        handler.close()


def format_eta(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class VDLWriter:
    """Scalars and image triplets to VisualDL under ``save_dir/vdl`` (no-op when disabled)."""

    def __init__(self, save_dir: str | None, enabled: bool) -> None:
        self._w = None
        if enabled and save_dir:
            from visualdl import LogWriter

            self.logdir = os.path.join(save_dir, "vdl")
            self._w = LogWriter(logdir=self.logdir)

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self._w is None:
            return
        for k, v in values.items():
            self._w.add_scalar(tag=k, value=float(v), step=step)

    def triplet(self, tag: str, lq: np.ndarray, out: np.ndarray, gt: np.ndarray, step: int) -> None:
        """Input | output | target side by side (input resized to GT size if smaller)."""
        if self._w is None:
            return
        import cv2

        def u8(chw: np.ndarray) -> np.ndarray:
            hwc = (np.clip(chw.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc

        a, b, c = u8(lq), u8(out), u8(gt)
        if a.shape != c.shape:
            a = cv2.resize(a, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_NEAREST)
        self._w.add_image(
            tag=tag, img=np.concatenate([a, b, c], axis=1), step=step, dataformats="HWC"
        )

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
