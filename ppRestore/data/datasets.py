"""Restoration datasets (registered in :data:`ppRestore.registry.DATASETS`).

Samples are ``(lq, gt, index)`` with ``lq``/``gt`` float32 ``C x H x W`` in [0, 1].

Randomness is a pure function of the sample: ``__getitem__`` receives a *sample key*
``epoch * len(dataset) + index`` from :class:`ResumableBatchSampler` (a plain index is
epoch 0) and builds ``np.random.default_rng((seed, epoch, index))`` for augmentation
and degradation; validation uses ``(seed, index)``. Results therefore do not depend on
the number of DataLoader workers, and a resumed run replays the same samples.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Union

import numpy as np

from ..files import list_folder
from ..registry import DATASETS
from .degradations import DegradationPipeline
from .io import IMAGE_EXTENSIONS, read_image
from .transforms import Compose


def _matlab_y(img: Any) -> np.ndarray:
    """MATLAB's ``rgb2ycbcr`` Y (BT.601, 16-235) of an 8-bit RGB image, rounded to 8 bits
    as MATLAB does, as float ``H x W x 1`` in [0, 1]: the luma SR papers train and score
    on. A grey image is taken as Y already (as the SRCNN/VDSR training scripts do)."""
    from .color import rgb2y

    data = img.data
    if data.shape[2] == 1:
        return img.to_float()
    if data.dtype != np.uint8:  # 16-bit: MATLAB-style rounding is defined on 8 bits
        return rgb2y(img.to_float().astype(np.float64)).astype(np.float32)[..., None]
    return (rgb2y(data).astype(np.float32) / 255.0)[..., None]


def _to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Float ``H x W x C`` -> ``channels`` (BT.601 luma for RGB->grey, replicate for grey->RGB)."""
    c = img.shape[2]
    if c == channels:
        return img
    if channels == 1 and c == 3:
        return (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if channels == 3 and c == 1:
        return np.repeat(img, 3, axis=2)
    raise ValueError(f"cannot convert a {c}-channel image to {channels} channels")


def _where_looked(folder: str) -> str:
    """What a missing relative dataset folder was relative to (config.load_config
    records every place it tried), plus where to read about getting the data."""
    from ..config import _UNRESOLVED, DATA_ENV

    if os.path.isabs(folder):
        tried = [folder]
    else:
        tried = [os.path.join(os.getcwd(), folder)]
        for root, cands in _UNRESOLVED.items():
            if folder == root or folder.startswith(root.rstrip("/") + "/"):
                rest = folder[len(root) :].lstrip("/")
                tried = [os.path.join(c, rest) if rest else c for c in cands]
    env = os.environ.get(DATA_ENV) or "unset"
    return (
        f"looked in: {', '.join(tried)}; relative paths are tried under ${DATA_ENV} ({env}), "
        "the current folder and the config file's folder; see docs/data.md"
    )


def _list_folder(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset folder not found: {folder} ({_where_looked(folder)})")
    names = [os.path.basename(p) for p in list_folder(folder, IMAGE_EXTENSIONS)]
    if not names:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return names


def _chw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


class _RestoreDataset:
    """Shared logic: key -> (epoch, index) -> rng, image cache, transforms.

    ``channels``: 3 (RGB; grey replicated), 1 (BT.601 full-range luma) or ``"y"``
    (MATLAB's ``rgb2ycbcr`` Y, 16-235, rounded to 8 bits: the channel SR papers train
    and score on, so Set5/Set14 PSNR matches their protocol without converting files).
    """

    def __init__(
        self,
        mode: str = "train",
        transforms: List[Dict[str, Any]] | None = None,
        channels: Union[int, str] = 3,
        seed: int = 0,
        repeat: int = 1,
        cache: bool = False,
    ) -> None:
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if channels not in (1, 3, "y"):
            raise ValueError(f"channels must be 1, 3 or 'y' (MATLAB BT.601 luma), got {channels!r}")
        self.mode, self.channels, self.seed = mode, channels, int(seed)
        self.repeat = max(int(repeat), 1)
        self.transforms = Compose(transforms or [])
        self.cache = cache
        self._cache: Dict[str, np.ndarray] = {}
        self.names: List[str] = []

    def __len__(self) -> int:
        return len(self.names) * self.repeat

    def _read(self, path: str) -> np.ndarray:
        if self.cache and path in self._cache:
            return self._cache[path]
        decoded = read_image(path)
        if self.channels == "y":
            img = _matlab_y(decoded)
        else:
            img = _to_channels(decoded.to_float(), int(self.channels))
        if self.cache:
            self._cache[path] = img
        return img

    def rng_for(self, key: int) -> tuple:
        """``(index, rng)`` for a sample key (see the module docstring)."""
        n = len(self)
        epoch, index = divmod(int(key), n)
        if self.mode == "val":
            return index, np.random.default_rng([self.seed, index])
        return index, np.random.default_rng([self.seed, epoch, index])

    def name_of(self, index: int) -> str:
        return self.names[index % len(self.names)]


@DATASETS.register
class PairedFolderDataset(_RestoreDataset):
    """``dataset_root/lq/`` and ``dataset_root/gt/`` images matched by file name.

    Args:
        dataset_root: folder holding ``lq_dir`` and ``gt_dir``.
        lq_dir, gt_dir: subfolder names (or absolute paths).
        mode, transforms, channels, seed, repeat, cache: see :class:`_RestoreDataset`.
    """

    def __init__(
        self,
        dataset_root: str,
        lq_dir: str = "lq",
        gt_dir: str = "gt",
        mode: str = "train",
        transforms: List[Dict[str, Any]] | None = None,
        channels: Union[int, str] = 3,
        seed: int = 0,
        repeat: int = 1,
        cache: bool = False,
    ) -> None:
        super().__init__(mode, transforms, channels, seed, repeat, cache)
        self.lq_root = os.path.join(dataset_root, lq_dir)
        self.gt_root = os.path.join(dataset_root, gt_dir)
        lq, gt = _list_folder(self.lq_root), _list_folder(self.gt_root)
        lq_set, gt_set = set(lq), set(gt)
        if lq_set != gt_set:
            only_lq = sorted(lq_set - gt_set)
            only_gt = sorted(gt_set - lq_set)
            raise ValueError(
                f"{dataset_root}: lq/ and gt/ do not match by file name; "
                f"only in {lq_dir}/: {only_lq or '-'}; only in {gt_dir}/: {only_gt or '-'}"
            )
        self.names = gt

    def __getitem__(self, key: int):
        index, rng = self.rng_for(key)
        name = self.name_of(index)
        lq = self._read(os.path.join(self.lq_root, name))
        gt = self._read(os.path.join(self.gt_root, name))
        lq, gt = self.transforms(lq, gt, rng)
        return _chw(lq), _chw(gt), np.int64(index)


@DATASETS.register
class PairedImageDataset(PairedFolderDataset):
    """:class:`PairedFolderDataset` with ``input/`` + ``target/`` folders (MPRNet/CMFNet layout)."""

    def __init__(
        self,
        dataset_root: str,
        input_dir: str = "input",
        target_dir: str = "target",
        mode: str = "train",
        transforms: list[dict[str, Any]] | None = None,
        channels: Union[int, str] = 3,
        seed: int = 0,
        repeat: int = 1,
        cache: bool = False,
    ) -> None:
        super().__init__(
            dataset_root, input_dir, target_dir, mode, transforms, channels, seed, repeat, cache
        )


@DATASETS.register
class SyntheticDataset(_RestoreDataset):
    """Clean images + an on-the-fly degradation pipeline.

    By default the transforms (crop/flip/rot) run on the clean image first and the
    degradations then make the LQ from the patch, so a crop never cuts a blur or noise
    pattern. ``degrade_first: true`` does it the other way round, as SR training sets
    are classically made (SRCNN's sub-images, BasicSR's pre-made LR folders): the whole
    image is degraded (and upscaled), then the transforms crop the aligned (LQ, GT)
    pair. Why: a resize kernel at a patch edge sees mirrored pixels, so a patch's
    bicubic input differs from the full image's near its border (x3, measured on
    train400: 5.9 / 1.5 / 1.8 / 0.9 grey levels RMS at 0 / 1 / 2 / 3 px from the edge,
    ~0 beyond 7 px), while test images are degraded whole. With ``cache: true`` and
    deterministic degradations (``BicubicDownscale``) the degraded image is cached too.

    Args:
        dataset_root: folder of clean images.
        degradations: list of ``{type: ..., ...}`` (see :mod:`.degradations`).
        upscale_lq: for SR, bicubic-upscale the LR image back to GT size (SRCNN-style
            input) instead of returning the low-resolution image.
        degrade_first: degrade the whole image, then transform the pair (see above).
        mode, transforms, channels, seed, repeat, cache: see :class:`_RestoreDataset`.
    """

    def __init__(
        self,
        dataset_root: str,
        degradations: List[Dict[str, Any]] | None = None,
        upscale_lq: bool = False,
        mode: str = "train",
        transforms: List[Dict[str, Any]] | None = None,
        channels: Union[int, str] = 3,
        seed: int = 0,
        repeat: int = 1,
        cache: bool = False,
        degrade_first: bool = False,
    ) -> None:
        super().__init__(mode, transforms, channels, seed, repeat, cache)
        self.root = dataset_root
        self.names = _list_folder(dataset_root)
        self.degrade = DegradationPipeline(degradations or [])
        self.scale = self.degrade.scale
        self.upscale_lq = upscale_lq
        self.degrade_first = bool(degrade_first)
        # whole-image LQ is worth keeping only when the same image always gives the same LQ
        self._cache_lq = bool(cache) and self.degrade.deterministic
        self._lq_cache: Dict[str, np.ndarray] = {}

    def _modcrop(self, img: np.ndarray) -> np.ndarray:
        """Crop to a multiple of the SR scale, so that LR is exactly GT / scale."""
        s = self.scale
        return img[: img.shape[0] - img.shape[0] % s, : img.shape[1] - img.shape[1] % s]

    def _make_lq(self, gt: np.ndarray, rng: np.random.Generator) -> tuple:
        """Mod-crop ``gt`` to the scale, degrade it, optionally upscale back."""
        s = self.scale
        gt = self._modcrop(gt)
        lq = self.degrade(np.ascontiguousarray(gt), rng)
        if s > 1 and self.upscale_lq:
            from .resize import imresize

            lq = np.clip(imresize(lq, float(s)), 0, 1).astype(np.float32).reshape(gt.shape)
        return lq, gt

    def __getitem__(self, key: int):
        index, rng = self.rng_for(key)
        path = os.path.join(self.root, self.name_of(index))
        gt = self._read(path)
        if not self.degrade_first:
            _, gt = self.transforms(gt, gt, rng)
            lq, gt = self._make_lq(gt, rng)
            return _chw(lq), _chw(gt), np.int64(index)
        if path in self._lq_cache:
            lq, gt = self._lq_cache[path], self._modcrop(gt)
        else:
            lq, gt = self._make_lq(gt, rng)
            if self._cache_lq:
                self._lq_cache[path] = lq
        lq, gt = self.transforms(lq, gt, rng)
        return _chw(lq), _chw(gt), np.int64(index)


def val_seed(cfg: Dict[str, Any]) -> int:
    """Seed of the validation set's random degradations (noise): the config's
    ``train.seed`` (0 if unset), never a ``--seed`` given to one training run, so that
    ``tools/val.py`` and every run's in-training eval score the same noisy images."""
    return int((cfg.get("train") or {}).get("seed", 0))


def build_dataset(cfg: Dict[str, Any], mode: str | None = None, seed: int | None = None):
    """Build a dataset from its config section, filling ``mode``/``seed`` if not set."""
    cfg = dict(cfg)
    if mode is not None:
        cfg.setdefault("mode", mode)
    if seed is not None:
        cfg.setdefault("seed", seed)
    return DATASETS.build(cfg)


# The loader half (ResumableBatchSampler, build_dataloader, worker-error transport) lives
# in .loader; these names stay importable from here.
from .loader import (  # noqa: E402,F401
    ResumableBatchSampler,
    _error_payload,
    _rebuild_error,
    build_dataloader,
)
