"""A minimal ISP to look at raw results: white balance, demosaic, colour matrix, gamma."""

from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

import numpy as np

from .bayer import check_pattern, pack_bayer, pad_to_even, unpack_bayer

__all__ = ["gray_world_gains", "raw_to_rgb", "save_raw_preview"]


def _cv_demosaic_code(pattern: str) -> int:
    import cv2

    # OpenCV names a Bayer layout after the 2x2 cell starting at (1, 1), so an RGGB
    # image is "BayerBG" (checked in tests/test_raw.py with a pure-red scene).
    return {
        "RGGB": cv2.COLOR_BayerBG2RGB_EA,
        "BGGR": cv2.COLOR_BayerRG2RGB_EA,
        "GRBG": cv2.COLOR_BayerGB2RGB_EA,
        "GBRG": cv2.COLOR_BayerGR2RGB_EA,
    }[pattern]


def gray_world_gains(bayer01: np.ndarray, pattern: str = "RGGB") -> Tuple[float, float, float]:
    """White-balance gains that make the mean R and B equal the mean green."""
    p = pack_bayer(np.asarray(bayer01, np.float64), pattern).reshape(4, -1).mean(axis=1)
    g = max((p[1] + p[2]) / 2, 1e-8)
    return (float(g / max(p[0], 1e-8)), 1.0, float(g / max(p[3], 1e-8)))


def raw_to_rgb(
    bayer01: np.ndarray,
    pattern: str = "RGGB",
    wb_gains: Sequence[float] | None = None,
    ccm: np.ndarray | None = None,
    gamma: Union[float, str] = 2.2,
) -> np.ndarray:
    """White balance, demosaic (OpenCV edge-aware), colour matrix and gamma.

    Args:
        bayer01: ``H x W`` Bayer in ``[0, 1]`` (even size).
        wb_gains: R, G, B multipliers; ``None`` estimates them by gray world.
        ccm: optional 3x3 camera-to-sRGB matrix (rows = output channels).
        gamma: a power (2.2 as the official ``RawUtils.bayer2rgb``) or ``"srgb"``.

    Returns:
        ``H x W x 3`` float32 RGB in ``[0, 1]``.
    """
    import cv2

    pattern = check_pattern(pattern)
    bayer01 = pad_to_even(np.asarray(bayer01, np.float32))
    gains = np.asarray(
        wb_gains if wb_gains is not None else gray_world_gains(bayer01, pattern), np.float32
    )
    packed = pack_bayer(bayer01, pattern) * gains[[0, 1, 1, 2], None, None]
    bayer = unpack_bayer(np.clip(packed, 0, 1), pattern)
    u16 = np.round(bayer * 65535).astype(np.uint16)
    rgb = cv2.cvtColor(u16, _cv_demosaic_code(pattern)).astype(np.float32) / 65535
    if ccm is not None:
        rgb = np.clip(rgb @ np.asarray(ccm, np.float32).T, 0, 1)
    if gamma == "srgb":
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    else:
        rgb = np.power(rgb, 1.0 / float(gamma))
    return np.clip(rgb, 0, 1).astype(np.float32)


def save_raw_preview(path: str, bayer01: np.ndarray, pattern: str = "RGGB", **isp: Any) -> str:
    """Render ``bayer01`` with :func:`raw_to_rgb` and write an 8-bit image (via data.io)."""
    from .io import write_image

    rgb = raw_to_rgb(bayer01, pattern, **isp)[: bayer01.shape[0], : bayer01.shape[1]]
    return write_image(path, (rgb * 255 + 0.5).astype(np.uint8))
