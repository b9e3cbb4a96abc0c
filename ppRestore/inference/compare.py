"""Side-by-side ``input | output`` images, each half labelled (``--compare``).

Split out of :mod:`ppRestore.inference.batch` (which re-exports :func:`compare_image`).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..data.io import Image

__all__ = ["compare_image", "raw_compare_image", "label_band"]

# Pixels between the two halves (white).
_GAP = 8


def compare_image(
    inp: Image, out: Image, labels: Tuple[str, str] = ("input", "output")
) -> np.ndarray:
    """``input | output`` side by side (input nearest-upscaled to the output size), each
    half labelled in a white band above it, so a compare image explains itself."""
    a, b = inp.data, out.data
    if a.shape[:2] != b.shape[:2]:
        sy, sx = b.shape[0] // a.shape[0], b.shape[1] // a.shape[1]
        a = np.repeat(np.repeat(a, sy, axis=0), sx, axis=1)[: b.shape[0], : b.shape[1]]
    top = np.iinfo(b.dtype).max
    gap = np.full((b.shape[0], _GAP, b.shape[2]), top, dtype=b.dtype)
    body = np.concatenate([a.astype(b.dtype), gap, b], axis=1)
    band = label_band(body.shape[1], [(0, labels[0]), (b.shape[1] + _GAP, labels[1])])
    band = (band.astype(np.float64) * (top / 255.0)).round().astype(b.dtype)
    return np.concatenate([np.repeat(band[..., None], b.shape[2], axis=2), body], axis=0)


def raw_compare_image(
    noisy: np.ndarray, denoised: np.ndarray, pattern: str, gains: Tuple[float, ...]
) -> np.ndarray:
    """uint8 ``noisy | denoised`` previews of two Bayer frames through the simple ISP,
    with one white balance ``gains`` for both so the comparison is fair; labelled."""
    from ..data.isp import raw_to_rgb

    a = raw_to_rgb(noisy, pattern, wb_gains=gains)
    b = raw_to_rgb(denoised, pattern, wb_gains=gains)
    gap = np.ones((a.shape[0], _GAP, 3), np.float32)
    side = np.concatenate([a, gap, b], axis=1)
    band = label_band(side.shape[1], [(0, "input"), (a.shape[1] + _GAP, "output")])
    band = np.repeat(band[..., None].astype(np.float32) / 255.0, 3, axis=2)
    side = np.concatenate([band, side], axis=0)
    return (side * 255 + 0.5).astype(np.uint8)


def label_band(width: int, texts: List[Tuple[int, str]], height: int = 18) -> np.ndarray:
    """A white ``height x width`` uint8 band with black ``texts`` at the given x offsets
    (Pillow's built-in bitmap font: no font file needed)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    im = PILImage.new("L", (width, height), 255)
    draw = ImageDraw.Draw(im)
    for x, text in texts:
        draw.text((x + 4, 3), text, fill=0)
    return np.asarray(im)
