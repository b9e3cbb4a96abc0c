"""Paired augmentations (registered in :data:`ppRestore.registry.TRANSFORMS`).

A transform is ``t(lq, gt, rng) -> (lq, gt)`` on ``H x W x C`` arrays, with an explicit
``np.random.Generator`` so augmentation is reproducible per (seed, epoch, index). The
crop is scale-aware: for super-resolution the LQ crop is ``patch_size / scale`` at the
matching position (scale is inferred from the two shapes).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ..registry import TRANSFORMS

Pair = Tuple[np.ndarray, np.ndarray]


@TRANSFORMS.register
class PairedRandomCrop:
    """Random ``patch_size`` GT crop and the aligned LQ crop (``patch_size // scale``).

    ``crop_size`` is accepted as another name for ``patch_size``.
    """

    def __init__(self, patch_size: int = 128, crop_size: int | None = None) -> None:
        self.patch_size = int(crop_size or patch_size)

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        scale = gt.shape[0] // lq.shape[0]
        if scale < 1 or gt.shape[1] // lq.shape[1] != scale:
            raise ValueError(f"GT {gt.shape[:2]} is not an integer multiple of LQ {lq.shape[:2]}")
        if self.patch_size % scale:
            raise ValueError(f"patch_size {self.patch_size} is not divisible by scale {scale}")
        lp = self.patch_size // scale
        h, w = lq.shape[:2]
        if h < lp or w < lp:
            raise ValueError(f"LQ image {h}x{w} is smaller than the LQ patch {lp}x{lp}")
        top, left = int(rng.integers(0, h - lp + 1)), int(rng.integers(0, w - lp + 1))
        lq = lq[top : top + lp, left : left + lp]
        gt = gt[top * scale : (top + lp) * scale, left * scale : (left + lp) * scale]
        return lq, gt


@TRANSFORMS.register
class PairedCenterCrop:
    """Deterministic centre crop (validation on large images); ``crop_size`` = ``patch_size``."""

    def __init__(self, patch_size: int = 256, crop_size: int | None = None) -> None:
        self.patch_size = int(crop_size or patch_size)

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        scale = gt.shape[0] // lq.shape[0]
        lp = self.patch_size // scale
        h, w = lq.shape[:2]
        top, left = max((h - lp) // 2, 0), max((w - lp) // 2, 0)
        lq = lq[top : top + lp, left : left + lp]
        gt = gt[top * scale : (top + lp) * scale, left * scale : (left + lp) * scale]
        return lq, gt


@TRANSFORMS.register
class RandomHorizontalFlip:
    """Flip both images left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() < self.prob:
            return lq[:, ::-1], gt[:, ::-1]
        return lq, gt


@TRANSFORMS.register
class RandomVerticalFlip:
    """Flip both images top-bottom with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() < self.prob:
            return lq[::-1], gt[::-1]
        return lq, gt


@TRANSFORMS.register
class RandomRot90:
    """Rotate both images by a random multiple of 90 degrees (k drawn from ``0..3``)."""

    def __init__(self, prob: float = 1.0) -> None:
        self.prob = prob

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        if rng.random() < self.prob:
            k = int(rng.integers(0, 4))
            return np.rot90(lq, k), np.rot90(gt, k)
        return lq, gt


@TRANSFORMS.register
class PairedRandomFlipRot:
    """One of the 8 flips/rotations (the dihedral group), uniformly (MPRNet/CMFNet ``aug``)."""

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        k = int(rng.integers(0, 8))
        if k >= 4:
            lq, gt = lq[:, ::-1], gt[:, ::-1]
        return np.rot90(lq, k % 4), np.rot90(gt, k % 4)


@TRANSFORMS.register
class PadToSize:
    """Pad images smaller than ``size`` (GT pixels; LQ by ``size // scale``) at the bottom/right.

    Args:
        size: ``[H, W]`` or one int.
        mode: ``reflect`` (CMFNet's training loader) or ``constant`` (zeros).
    """

    def __init__(self, size: Any = 256, mode: str = "reflect") -> None:
        self.size = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        if mode not in ("reflect", "constant", "edge"):
            raise ValueError(f"mode must be reflect, constant or edge, got {mode!r}")
        self.mode = mode

    def _pad(self, img: np.ndarray, h: int, w: int) -> np.ndarray:
        ph, pw = max(h - img.shape[0], 0), max(w - img.shape[1], 0)
        if ph == 0 and pw == 0:
            return img
        mode = self.mode
        if mode == "reflect" and (ph >= img.shape[0] or pw >= img.shape[1]):
            mode = "symmetric"  # reflect cannot pad more than the image size
        return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        scale = max(gt.shape[0] // lq.shape[0], 1)
        h, w = self.size
        return self._pad(lq, -(-h // scale), -(-w // scale)), self._pad(gt, h, w)


class Compose:
    """Apply paired transforms in order."""

    def __init__(self, cfgs: List[Dict[str, Any]]) -> None:
        self.ops = [TRANSFORMS.build(c) for c in (cfgs or [])]

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        for op in self.ops:
            lq, gt = op(lq, gt, rng)
        return np.ascontiguousarray(lq), np.ascontiguousarray(gt)
