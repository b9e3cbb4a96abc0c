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
    """Random ``patch_size`` GT crop and the aligned LQ crop (``patch_size // scale``)."""

    def __init__(self, patch_size: int = 128) -> None:
        self.patch_size = int(patch_size)

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
    """Deterministic centre crop (validation on large images)."""

    def __init__(self, patch_size: int = 256) -> None:
        self.patch_size = int(patch_size)

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


class Compose:
    """Apply paired transforms in order."""

    def __init__(self, cfgs: List[Dict[str, Any]]) -> None:
        self.ops = [TRANSFORMS.build(c) for c in (cfgs or [])]

    def __call__(self, lq: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Pair:
        for op in self.ops:
            lq, gt = op(lq, gt, rng)
        return np.ascontiguousarray(lq), np.ascontiguousarray(gt)
