"""MATLAB-compatible colour conversions (ITU-R BT.601, "studio" range).

Super-resolution papers evaluate PSNR/SSIM on the Y channel of MATLAB's ``rgb2ycbcr``:
Y in [16, 235], Cb/Cr in [16, 240] for 8-bit images. OpenCV's ``COLOR_RGB2YCrCb`` is the
full-range JPEG variant (Y in [0, 255]) and gives different numbers, hence these.

Conventions (as MATLAB): float input is RGB in [0, 1] and float output is YCbCr scaled
to [0, 1] (Y in [16/255, 235/255]); uint8 input gives uint8 output (rounded half away
from zero and saturated). Arrays are ``... x 3`` (channels last).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rgb2ycbcr", "ycbcr2rgb", "rgb2y"]

# MATLAB rgb2ycbcr: ycbcr = offset + T * rgb, for rgb in [0, 1] and ycbcr in [0, 255].
_T = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_T_INV = np.linalg.inv(_T)


def _to_unit(img: np.ndarray) -> tuple:
    img = np.asarray(img)
    if img.shape[-1] != 3:
        raise ValueError(f"expected a ... x 3 image (channels last), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0, True
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"expected uint8 or float input, got {img.dtype}")
    return img.astype(np.float64), False


def _from_unit(out255: np.ndarray, was_uint8: bool, dtype: np.dtype) -> np.ndarray:
    if was_uint8:
        return np.clip(np.floor(out255 + 0.5), 0, 255).astype(np.uint8)
    return (out255 / 255.0).astype(dtype)


def rgb2ycbcr(img: np.ndarray) -> np.ndarray:
    """RGB -> YCbCr like MATLAB's ``rgb2ycbcr`` (BT.601, 16-235)."""
    unit, was_uint8 = _to_unit(img)
    out = unit @ _T.T + _OFFSET
    return _from_unit(out, was_uint8, np.asarray(img).dtype)


def rgb2y(img: np.ndarray) -> np.ndarray:
    """The Y channel of :func:`rgb2ycbcr`, shape ``img.shape[:-1]``."""
    unit, was_uint8 = _to_unit(img)
    out = unit @ _T[0] + _OFFSET[0]
    return _from_unit(out, was_uint8, np.asarray(img).dtype)


def ycbcr2rgb(img: np.ndarray) -> np.ndarray:
    """YCbCr -> RGB like MATLAB's ``ycbcr2rgb``. Float output is not clipped."""
    unit, was_uint8 = _to_unit(img)
    # MATLAB: rgb = T^-1 * (ycbcr*255 - offset), rgb in [0, 1]; we return *255 scale for
    # _from_unit's common path.
    out = (unit * 255.0 - _OFFSET) @ _T_INV.T * 255.0
    return _from_unit(out, was_uint8, np.asarray(img).dtype)
