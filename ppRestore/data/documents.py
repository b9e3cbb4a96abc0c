"""Synthetic document pairs for handwriting / pen-mark removal.

A clean page of printed text is rendered with OpenCV's built-in Hershey fonts (no font
files, nothing downloaded); the degraded copy adds pen marks on top: cubic Bezier
scribbles and short handwritten-looking words (Hershey script fonts) in blue, black or
red ink, drawn anti-aliased (4x supersampling) with a slight blur for ink bleed. The
target is the clean page, so a restoration network (e.g. ``PmrNet(in_channels=3)``,
configs/pmrnet/pmrnet_document.yml) learns to erase the marks and keep the print.

Everything is a pure function of the seed: the same seed gives the same pair on every
machine (numpy's PCG64 and OpenCV's rasteriser are deterministic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np

from ..registry import DATASETS

SizeLike = Union[int, Tuple[int, int]]
SeedLike = Union[int, Sequence[int], np.random.Generator]

# RGB pen colours (ballpoint blue, black, red) before per-stroke jitter.
PEN_COLOURS = {
    "blue": (28, 52, 160),
    "black": (22, 22, 28),
    "red": (190, 32, 36),
}
_SUPERSAMPLE = 4
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class DocumentPair:
    """``lq`` (with pen marks), ``gt`` (clean page): ``H x W x 3`` uint8 RGB; ``mask``:
    ``H x W`` bool, True where any pen ink has non-zero coverage."""

    lq: np.ndarray
    gt: np.ndarray
    mask: np.ndarray


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _hw(size: SizeLike) -> Tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if h < 32 or w < 32:
        raise ValueError(f"document size must be at least 32x32, got {h}x{w}")
    return int(h), int(w)


def _word(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 10))
    w = "".join(rng.choice(list(_LETTERS), size=n))
    r = rng.random()
    if r < 0.15:
        w = w.capitalize()
    elif r < 0.2:
        w = str(int(rng.integers(0, 10000)))
    if rng.random() < 0.1:
        w += str(rng.choice([".", ",", ";", ":"]))
    return w


def render_page(size: SizeLike = 256, seed: SeedLike = 0) -> np.ndarray:
    """Render a clean page of printed text: ``H x W x 3`` uint8 RGB."""
    import cv2

    rng = _rng(seed)
    h, w = _hw(size)
    paper = rng.integers(232, 256, size=3).astype(np.float32)
    page = np.empty((h, w, 3), np.float32)
    page[:] = paper
    # A faint fixed paper grain, identical in both images of a pair.
    page += rng.normal(0.0, 1.2, size=(h, w, 1)).astype(np.float32)
    page = np.clip(np.round(page), 0, 255).astype(np.uint8)

    fonts = [
        cv2.FONT_HERSHEY_SIMPLEX,
        cv2.FONT_HERSHEY_DUPLEX,
        cv2.FONT_HERSHEY_COMPLEX,
        cv2.FONT_HERSHEY_TRIPLEX,
        cv2.FONT_HERSHEY_PLAIN,
    ]
    font = int(rng.choice(fonts))
    unit = min(h, w) / 256.0
    line_h = max(9, int(round(rng.uniform(13, 22) * unit)))
    # Choose the font scale that makes capital letters ~55% of the line height.
    (_, cap), _ = cv2.getTextSize("H", font, 1.0, 1)
    scale = 0.55 * line_h / max(cap, 1)
    thick = 1 if scale < 0.9 else 2
    ink = tuple(int(v) for v in rng.integers(10, 60, size=1).repeat(3))
    margin = int(rng.uniform(0.04, 0.1) * w)
    y = margin + line_h
    space = cv2.getTextSize(" ", font, scale, thick)[0][0]
    while y < h - margin // 2:
        if rng.random() < 0.12:  # paragraph break
            y += line_h
            continue
        x = margin + (int(2 * space) if rng.random() < 0.2 else 0)
        right = w - margin - int(rng.uniform(0, 0.3) * w if rng.random() < 0.15 else 0)
        while True:
            word = _word(rng)
            tw = cv2.getTextSize(word, font, scale, thick)[0][0]
            if x + tw > right:
                break
            cv2.putText(page, word, (x, y), font, scale, ink, thick, cv2.LINE_AA)
            x += tw + space
        y += line_h
    return page


def _bezier(p: np.ndarray, n: int = 200) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (
        (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    )


def _stroke_alpha(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage in [0, 1] of one pen mark, anti-aliased by supersampling."""
    import cv2

    s = _SUPERSAMPLE
    canvas = np.zeros((h * s, w * s), np.uint8)
    unit = min(h, w) / 256.0
    width = max(1, int(round(rng.uniform(1.0, 3.5) * unit * s)))
    kind = rng.random()
    if kind < 0.7:
        # One or a few chained cubic Bezier segments inside a random region: scribbles,
        # strike-throughs, circles-ish loops, underlines.
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        extent = rng.uniform(0.15, 0.6) * min(h, w)
        start = np.array([cx, cy]) + rng.uniform(-extent, extent, 2) / 2
        for _ in range(int(rng.integers(1, 4))):
            ctrl = np.vstack([start, start + rng.uniform(-extent, extent, size=(3, 2))])
            pts = _bezier(ctrl)
            pts = np.clip(pts, -0.1 * w, 1.1 * w)
            cv2.polylines(
                canvas, [np.round(pts * s).astype(np.int32)], False, 255, width, cv2.LINE_AA
            )
            start = ctrl[3]
    else:
        # A handwritten-looking word (Hershey script fonts), slightly rotated.
        font = int(rng.choice([cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX]))
        text = " ".join(_word(rng) for _ in range(int(rng.integers(1, 3))))
        scale = rng.uniform(0.6, 1.3) * unit * s
        org = (int(rng.uniform(0.0, 0.6) * w * s), int(rng.uniform(0.15, 0.95) * h * s))
        cv2.putText(canvas, text, org, font, scale, 255, max(1, width), cv2.LINE_AA)
        angle = rng.uniform(-15, 15)
        m = cv2.getRotationMatrix2D((org[0], org[1]), angle, 1.0)
        canvas = cv2.warpAffine(canvas, m, (w * s, h * s), flags=cv2.INTER_LINEAR)
    alpha = cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.3, 0.8)
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    alpha[alpha < 1e-3] = 0.0  # drop blur tails too faint to change any 8-bit pixel
    return np.clip(alpha * rng.uniform(0.75, 0.97), 0, 1)


def add_pen_strokes(
    page: np.ndarray, seed: SeedLike = 0, num_strokes: Union[int, Tuple[int, int]] = (2, 7)
) -> Tuple[np.ndarray, np.ndarray]:
    """Draw pen marks over ``page`` (uint8 RGB); returns ``(marked, mask)``.

    Args:
        num_strokes: a count, or a ``(low, high)`` range (high exclusive) to draw from.
    """
    rng = _rng(seed)
    h, w = page.shape[:2]
    n = num_strokes if isinstance(num_strokes, int) else int(rng.integers(*num_strokes))
    img = page.astype(np.float32)
    mask = np.zeros((h, w), bool)
    names = list(PEN_COLOURS)
    for _ in range(n):
        colour = np.array(PEN_COLOURS[names[int(rng.integers(len(names)))]], np.float32)
        colour = np.clip(colour + rng.normal(0, 8, 3), 0, 255)
        a = _stroke_alpha(h, w, rng)[..., None]
        # Ink absorbs light: mix towards the pen colour by its coverage.
        img = img * (1.0 - a) + colour * a
        mask |= a[..., 0] > 0
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


def make_document_pair(seed: SeedLike = 0, size: SizeLike = 256) -> DocumentPair:
    """A deterministic (marked, clean, mask) page triple for ``seed``."""
    rng = _rng(seed)
    gt = render_page(size, rng)
    lq, mask = add_pen_strokes(gt, rng)
    return DocumentPair(lq, gt, mask)


def write_document_pairs(
    out_dir: str, num: int, size: SizeLike = 256, seed: int = 0, ext: str = ".png"
) -> list:
    """Write ``num`` pairs as ``out_dir/lq/NNNNN.png`` + ``out_dir/gt/NNNNN.png``.

    This is the paired-folder layout (same file names in ``lq/`` and ``gt/``) read by the
    trainer's ``PairedFolderDataset``. Pair ``i`` uses the seed ``(seed, i)``, so any
    subset can be regenerated. Returns the file names.
    """
    from .io import write_image

    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    names = []
    for i in range(num):
        pair = make_document_pair((seed, i), size)
        name = f"{i:05d}{ext}"
        write_image(os.path.join(out_dir, "lq", name), pair.lq)
        write_image(os.path.join(out_dir, "gt", name), pair.gt)
        names.append(name)
    return names


@DATASETS.register
class SyntheticDocumentDataset:
    """Pen-marked / clean page pairs generated on the fly (no files needed).

    Samples are ``(lq, gt, index)`` with ``C x H x W`` float32 in [0, 1], like the other
    ppRestore datasets. In ``train`` mode sample key ``epoch * num + i`` draws a fresh page
    from the seed ``(seed, epoch, i)``; in ``val`` mode page ``i`` is always ``(seed, i)``
    (``write_document_pairs(..., seed)`` writes the same val pages to disk).

    Args:
        num: pages per epoch.
        size: page size (int or ``[h, w]``).
        mode: ``train`` or ``val``.
        seed: base seed.
        channels: 3 (RGB) or 1 (BT.601 luma).
    """

    def __init__(
        self,
        num: int = 1000,
        size: SizeLike = 256,
        mode: str = "train",
        seed: int = 0,
        channels: int = 3,
    ) -> None:
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        self.num, self.size, self.mode, self.seed, self.channels = (
            int(num),
            size,
            mode,
            int(seed),
            channels,
        )
        self.names = [f"{i:05d}.png" for i in range(self.num)]

    def __len__(self) -> int:
        return self.num

    def _to_chw(self, img: np.ndarray) -> np.ndarray:
        x = img.astype(np.float32) / 255.0
        if self.channels == 1:
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __getitem__(self, key: int):
        epoch, index = divmod(int(key), self.num)
        seed = (self.seed, index) if self.mode == "val" else (self.seed, epoch, index)
        if self.mode == "train" and epoch == 0:
            seed = (self.seed, index)  # epoch 0 == the pages write_document_pairs writes
        pair = make_document_pair(seed, self.size)
        return self._to_chw(pair.lq), self._to_chw(pair.gt), np.int64(index)
