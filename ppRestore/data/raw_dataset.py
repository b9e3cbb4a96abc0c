"""Synthetic raw training pairs for PmrNet: clean sRGB -> unprocessed Bayer + sensor noise."""

from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

from ..registry import DATASETS
from .bayer import DEFAULT_KSIGMA, add_raw_noise, pack_bayer, unpack_bayer

__all__ = ["SyntheticRawDataset", "unprocess_rgb"]


def unprocess_rgb(
    rgb01: np.ndarray, rng: np.random.Generator, gamma: float = 2.2
) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """Invert the simple ISP of :func:`raw_to_rgb` on an sRGB image -> RGGB Bayer.

    Undoes the gamma, divides by random white-balance gains (R in [1.6, 2.4], B in
    [1.4, 2.2]) and a random exposure in [0.1, 1] (the paper targets low light), and
    mosaics to RGGB, in the spirit of Brooks et al., "Unprocessing Images for Learned Raw
    Denoising", CVPR 2019. Returns the ``H x W`` Bayer (even size) and the gains.
    """
    lin = np.power(np.clip(np.asarray(rgb01, np.float64), 0, 1), gamma)
    if lin.ndim == 2 or lin.shape[2] == 1:
        lin = np.repeat(lin.reshape(lin.shape[0], lin.shape[1], 1), 3, axis=2)
    gains = (float(rng.uniform(1.6, 2.4)), 1.0, float(rng.uniform(1.4, 2.2)))
    lin = lin / np.array(gains) * rng.uniform(0.1, 1.0)
    h, w = lin.shape[0] - lin.shape[0] % 2, lin.shape[1] - lin.shape[1] % 2
    packed = np.stack(
        [lin[0:h:2, 0:w:2, 0], lin[0:h:2, 1:w:2, 1], lin[1:h:2, 0:w:2, 1], lin[1:h:2, 1:w:2, 2]]
    )
    return unpack_bayer(packed.astype(np.float32), "RGGB"), gains


@DATASETS.register
class SyntheticRawDataset:
    """Noisy/clean packed-raw pairs synthesised from clean sRGB images.

    Each sample: crop (random in ``train``, centre in ``val``) -> flips/rot90 (train) ->
    :func:`unprocess_rgb` -> Poisson-Gaussian noise (:func:`add_raw_noise`) at an ISO
    drawn log-uniformly from ``iso_range`` -> pack both to ``4 x p/2 x p/2`` -> clip the
    noisy one as the official pre-processing does -> k-sigma transform both at that ISO.
    So ``lq``/``gt`` live in the anchor-ISO k-sigma space in ``[0, 1]`` units; train
    ``PmrNet(in_channels=4, inp_scale=256)`` on them to match the official scaling.

    Samples are ``(lq, gt, index)``; randomness comes from ``(seed, epoch, index)``
    (``(seed, index)`` in ``val``), like the other ppRestore datasets.

    Args:
        dataset_root: folder of clean images (colour preferred; grey is replicated).
        patch_size: Bayer patch size (even; the packed patch is half of it).
        iso_range: ``[low, high]`` ISO range (a single ISO when equal).
        mode: ``train`` or ``val``.
        seed: base seed.
        repeat: times each image appears per epoch.
    """

    def __init__(
        self,
        dataset_root: str,
        patch_size: int = 256,
        iso_range: Sequence[float] = (400, 6400),
        mode: str = "train",
        seed: int = 0,
        repeat: int = 1,
    ) -> None:
        from ..files import list_folder
        from .io import IMAGE_EXTENSIONS

        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if patch_size < 4 or patch_size % 2:
            raise ValueError(f"patch_size must be even and >= 4, got {patch_size}")
        lo, hi = float(iso_range[0]), float(iso_range[-1])
        if not 0 < lo <= hi:
            raise ValueError(f"iso_range must be 0 < low <= high, got {iso_range}")
        if not os.path.isdir(dataset_root):
            raise FileNotFoundError(f"dataset folder not found: {dataset_root}")
        self.root = dataset_root
        self.names = [os.path.basename(p) for p in list_folder(dataset_root, IMAGE_EXTENSIONS)]
        if not self.names:
            raise FileNotFoundError(f"no images in {dataset_root}")
        self.patch, self.iso_range, self.mode = int(patch_size), (lo, hi), mode
        self.seed, self.repeat = int(seed), max(1, int(repeat))

    def __len__(self) -> int:
        return len(self.names) * self.repeat

    def __getitem__(self, key: int):
        from .io import read_image

        epoch, index = divmod(int(key), len(self))
        train = self.mode == "train"
        rng = np.random.default_rng([self.seed, epoch, index] if train else [self.seed, index])
        img = read_image(os.path.join(self.root, self.names[index % len(self.names)])).to_float()
        p = self.patch
        ph, pw = max(0, p - img.shape[0]), max(0, p - img.shape[1])
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        H, W = img.shape[:2]
        if train:
            y, x = int(rng.integers(0, H - p + 1)), int(rng.integers(0, W - p + 1))
        else:
            y, x = (H - p) // 2, (W - p) // 2
        img = img[y : y + p, x : x + p]
        if train:
            if rng.random() < 0.5:
                img = img[:, ::-1]
            img = np.rot90(img, int(rng.integers(4)))
        clean, _ = unprocess_rgb(img, rng)
        lo, hi = self.iso_range
        iso = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        noisy = add_raw_noise(clean, iso, rng)
        gt = DEFAULT_KSIGMA.forward(pack_bayer(clean, "RGGB"), iso)
        lq = DEFAULT_KSIGMA.forward(np.clip(pack_bayer(noisy, "RGGB"), 0, 1), iso)
        return lq.astype(np.float32), gt.astype(np.float32), np.int64(index)
