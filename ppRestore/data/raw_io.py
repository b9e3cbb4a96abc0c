"""Reading raw (Bayer) files: ``.npy`` arrays and camera raw files (through rawpy).

:func:`read_raw` resolves a file's pattern and black/white levels once and returns a
:class:`RawImage` that remembers them, so writing a result back in the input's
convention needs no second look at the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np

from .bayer import _OFFSETS, RawError, check_pattern, normalize_bayer, pack_bayer, unpack_bayer

__all__ = ["RAW_EXTENSIONS", "RawImage", "read_raw"]


@dataclass
class RawImage:
    """A decoded raw file: a ``[0, 1]`` Bayer image and what is known about it.

    ``dtype``, ``black_level`` and ``white_level`` are the file's value convention
    (resolved once, by :func:`read_raw`): :meth:`to_stored` maps a result back into it,
    so a denoised ``.npy`` keeps its input's dtype and levels. ``dtype`` is None for
    camera raw files, whose results are float32 in ``[0, 1]``.
    """

    bayer: np.ndarray
    pattern: str = "RGGB"
    wb_gains: Tuple[float, float, float] | None = None  # R, G, B multipliers
    iso: float | None = None
    path: str = ""
    dtype: np.dtype | None = None
    black_level: Union[float, Sequence[float]] = 0.0
    white_level: float = 1.0

    def to_stored(self, x01: np.ndarray) -> np.ndarray:
        """A ``[0, 1]`` Bayer result in this file's convention (dtype and levels)."""
        x01 = np.asarray(x01, np.float64)
        if self.dtype is None:
            return x01.astype(np.float32)
        black = np.asarray(self.black_level, np.float64).ravel()
        black_ref = float(black.mean()) if black.size == 4 else float(black[0])
        y = x01 * (float(self.white_level) - black_ref)
        if black.size == 4:  # per CFA site, as normalize_bayer subtracted it
            y = unpack_bayer(pack_bayer(y, self.pattern) + black[:, None, None], self.pattern)
            y = y[: x01.shape[0], : x01.shape[1]]
        else:
            y = y + black_ref
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            return np.clip(np.rint(y), info.min, info.max).astype(self.dtype)
        return y.astype(self.dtype)


RAW_EXTENSIONS = (".dng", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw")


def read_raw(
    path: str,
    pattern: str | None = None,
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
) -> RawImage:
    """Read ``.npy`` (a 2-D Bayer array) or a camera raw file (``.dng`` ...) via rawpy.

    For ``.npy``: float arrays are taken as already normalised unless levels are given;
    integer arrays are normalised with ``black_level`` (default 0) and ``white_level``
    (default the dtype maximum). ``pattern`` defaults to RGGB. Camera raw files take
    their pattern, levels and white balance from the file (needs ``pip install rawpy``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RawError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise RawError(f"{path}: not a readable .npy array ({e})") from None
        if arr.ndim != 2:
            raise RawError(f"{path}: expected a 2-D Bayer array, got shape {arr.shape}")
        pat = check_pattern(pattern or "RGGB")
        if np.issubdtype(arr.dtype, np.floating) and black_level is None and white_level is None:
            bayer = np.clip(arr.astype(np.float32), 0, 1)
            return RawImage(bayer, pat, path=path, dtype=arr.dtype)
        black = 0.0 if black_level is None else black_level
        if white_level is None:  # normalize_bayer's default, kept for to_stored
            integer = np.issubdtype(arr.dtype, np.integer)
            white_level = float(np.iinfo(arr.dtype).max) if integer else 1.0
        bayer = normalize_bayer(arr, black, white_level, pat)
        return RawImage(bayer, pat, path=path, dtype=arr.dtype, black_level=black,
                        white_level=float(white_level))  # fmt: skip
    if ext in RAW_EXTENSIONS:
        return _read_camera_raw(path, pattern, black_level, white_level)
    raise RawError(
        f"{path}: unsupported raw format '{ext}' (use .npy or {', '.join(RAW_EXTENSIONS)})"
    )


def _read_camera_raw(path: str, pattern, black_level, white_level) -> RawImage:
    try:
        import rawpy
    except ImportError:
        raise RawError(
            f"{path}: reading camera raw files needs rawpy (pip install rawpy, or "
            "pip install ppRestore[raw]); or save the Bayer array as .npy"
        ) from None
    try:
        with rawpy.imread(path) as raw:
            data = np.array(raw.raw_image_visible)
            desc = (
                raw.color_desc.decode()
                if isinstance(raw.color_desc, bytes)
                else str(raw.color_desc)
            )
            cell = raw.raw_pattern[:2, :2]
            # color_desc is e.g. "RGBG" (two greens): any non-R/B colour is a green site.
            file_pattern = "".join(
                c if c in "RB" else "G" for c in (desc[int(i)] for i in cell.ravel())
            )
            blacks = [float(b) for b in raw.black_level_per_channel]
            # black_level_per_channel is indexed by colour index; reorder to R, G1, G2, B.
            idx = cell.ravel()
            site_black = [blacks[int(i)] for i in idx]
            white = float(raw.white_level)
            wb = [float(g) for g in raw.camera_whitebalance[:3]]
    except RawError:
        raise
    except Exception as e:  # rawpy raises its own LibRawError family
        raise RawError(f"{path}: cannot decode raw file ({type(e).__name__}: {e})") from None
    pat = check_pattern(pattern or file_pattern)
    if black_level is None:
        # site_black is in cell (row-major) order; map to R, G1, G2, B via the offsets.
        by_pos = {
            (0, 0): site_black[0],
            (0, 1): site_black[1],
            (1, 0): site_black[2],
            (1, 1): site_black[3],
        }
        black_level = [by_pos[o] for o in _OFFSETS[pat]]
    bayer = normalize_bayer(data, black_level, white_level or white, pat)
    gains = None
    if wb[1] > 0:
        gains = (wb[0] / wb[1], 1.0, wb[2] / wb[1])
    return RawImage(bayer, pat, gains, path=path)
