"""Labelled result grids: degraded | restored | ground truth, with per-image PSNR.

``tools/val.py --save_grid N`` writes one ``grid_<name>.png`` per image for the first
``N`` validation images and ``grids.png`` with all of them stacked, as the denoising
tutorial shows its noisy / restored / clean comparisons. A degraded input smaller than
the target (super-resolution) is shown enlarged by nearest-neighbour, so pixels stay
visible as pixels.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np

__all__ = ["make_grid", "save_grids"]

_LABEL_H = 36  # two text lines: what the panel is, then its PSNR (or the image name)
_GAP = 4


def _to_rgb8(chw: np.ndarray, size: tuple | None = None) -> np.ndarray:
    """``C x H x W`` float in [0, 1] -> ``H x W x 3`` uint8 (grey repeated; resized if asked)."""
    from PIL import Image

    arr = np.clip(np.asarray(chw, dtype=np.float32), 0, 1)
    arr = (arr.transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] > 3:  # e.g. packed raw: show the first three planes
        arr = np.ascontiguousarray(arr[:, :, :3])
    if size is not None and arr.shape[:2] != size:
        arr = np.asarray(Image.fromarray(arr).resize((size[1], size[0]), Image.NEAREST))
    return arr


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def make_grid(
    lq: np.ndarray,
    out: np.ndarray,
    gt: np.ndarray,
    labels: Sequence[str],
) -> np.ndarray:
    """Three panels side by side under their labels; returns ``H x W x 3`` uint8.

    Args:
        lq, out, gt: ``C x H x W`` float images in [0, 1] (``lq`` may be smaller).
        labels: three captions, each up to two lines separated by ``\\n``, e.g.
            ``["degraded\\n20.2 dB", "restored\\n29.9 dB", "ground truth\\nimg.png"]``
            (two short lines fit a panel as narrow as 128 px).
    """
    from PIL import Image, ImageDraw

    size = tuple(gt.shape[-2:])
    panels = [_to_rgb8(lq, size), _to_rgb8(out, size), _to_rgb8(gt, size)]
    h, w = size
    canvas = np.full((h + _LABEL_H, 3 * w + 2 * _GAP, 3), 255, np.uint8)
    for i, p in enumerate(panels):
        x = i * (w + _GAP)
        canvas[_LABEL_H:, x : x + w] = p
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    font = _font()
    for i, text in enumerate(labels):
        for j, line in enumerate(str(text).split("\n")[:2]):
            draw.text((i * (w + _GAP) + 4, 2 + 16 * j), line, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def save_grids(samples: List[tuple], rows: List[Dict[str, float]], save_dir: str) -> List[str]:
    """Write ``grid_<name>.png`` per sample and ``grids.png`` (all stacked).

    Args:
        samples: ``(name, lq, restored, gt)`` tuples (``EvalResult.samples``).
        rows: the per-image metric rows (``EvalResult.rows``), matched by name.
        save_dir: output folder.

    Returns:
        The written paths, the stacked grid last.
    """
    from ..data.io import write_image

    by_name = {str(r["name"]): r for r in rows}
    os.makedirs(save_dir, exist_ok=True)
    paths, grids = [], []
    for name, lq, out, gt in samples:
        r = by_name.get(str(name), {})
        deg = "degraded" + (f"\n{r['input_psnr']:.2f} dB" if "input_psnr" in r else "")
        res = "restored" + (f"\n{r['psnr']:.2f} dB" if "psnr" in r else "")
        grid = make_grid(lq, out, gt, [deg, res, f"ground truth\n{name}"])
        stem = os.path.splitext(os.path.basename(str(name)))[0] or "image"
        paths.append(write_image(os.path.join(save_dir, f"grid_{stem}.png"), grid))
        grids.append(grid)
    if grids:
        width = max(g.shape[1] for g in grids)
        stacked = [
            np.pad(g, ((0, _GAP), (0, width - g.shape[1]), (0, 0)), constant_values=255)
            for g in grids
        ]
        paths.append(write_image(os.path.join(save_dir, "grids.png"), np.concatenate(stacked, 0)))
    return paths
