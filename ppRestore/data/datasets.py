"""Restoration datasets (registered in :data:`ppRestore.registry.DATASETS`).

Samples are ``(lq, gt, index)`` with ``lq``/``gt`` float32 ``C x H x W`` in [0, 1].

Randomness is a pure function of the sample: ``__getitem__`` receives a *sample key*
``epoch * len(dataset) + index`` from :class:`ResumableBatchSampler` (a plain index is
epoch 0) and builds ``np.random.default_rng((seed, epoch, index))`` for augmentation
and degradation; validation uses ``(seed, index)``. Results therefore do not depend on
the number of DataLoader workers, and a resumed run replays the same samples.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, List, Sequence, Union

import numpy as np

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
    names = sorted(
        f
        for f in os.listdir(folder)
        if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
    )
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


def _batch_sampler_base():
    import paddle

    return paddle.io.DistributedBatchSampler


class ResumableBatchSampler(_batch_sampler_base()):
    """Deterministic, shardable, resumable batch sampler.

    Epoch ``e``'s order is ``default_rng((seed, e)).permutation(N)``; each rank takes a
    strided share (padded by wrapping so ranks have equal length, as Paddle's
    ``DistributedBatchSampler`` does). It yields sample keys ``e * N + i``. Set
    :attr:`epoch` and :attr:`start_batch` to resume mid-epoch.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            drop_last=drop_last,
        )
        self.seed = int(seed)
        self.start_batch = 0
        n = len(dataset)
        self.per_rank = int(math.ceil(n / self.nranks))
        if drop_last and self.per_rank < batch_size:
            raise ValueError(
                f"dataset has {n} samples, fewer than batch_size {batch_size} per rank; "
                "lower batch_size or raise the dataset's repeat"
            )

    def epoch_indices(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(n)
            if self.shuffle
            else np.arange(n)
        )
        total = self.per_rank * self.nranks
        order = np.concatenate([order, order[: total - n]]) if total > n else order
        return order[self.local_rank : total : self.nranks]

    def __iter__(self) -> Iterator[List[int]]:
        n = len(self.dataset)
        idx = self.epoch_indices(self.epoch)
        batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        start, self.start_batch = self.start_batch, 0
        for b in batches[start:]:
            yield [int(self.epoch * n + i) for i in b]

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return int(math.ceil(self.per_rank / self.batch_size))


def build_dataloader(
    dataset: Any,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    use_shared_memory: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    num_replicas: int | None = None,
    rank: int | None = None,
):
    """A ``paddle.io.DataLoader`` over a :class:`ResumableBatchSampler`.

    ``use_shared_memory=False`` is for hosts with a small ``/dev/shm`` (AI Studio, Docker's
    64 MB default): workers then pass batches through pipes instead.
    """
    import paddle

    sampler = ResumableBatchSampler(
        dataset,
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    if num_workers == 0:
        return _MainThreadLoader(dataset, sampler), sampler
    loader = paddle.io.DataLoader(
        _CatchingDataset(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        use_shared_memory=use_shared_memory and num_workers > 0,
        return_list=True,
        collate_fn=_collate_or_error,
    )
    return _WorkerLoader(loader), sampler


# A sample that raised in a DataLoader worker travels to the main process as this one
# key (the exception's class and message as UTF-8 JSON bytes), instead of the exception
# itself: Paddle 3.3 re-raises a worker's exception in its reader thread, which prints a
# traceback and leaves the trainer with "SystemError: Blocking queue is killed". This
# way the trainer gets the same exception class and message (an ImageReadError naming
# the file) as with num_workers=0. JSON, not pickle: nothing here unpickles (see
# tests/test_safe_load.py), and only known exception classes are rebuilt.
_ERROR_KEY = "__ppRestore_worker_error__"


def _rebuildable() -> Dict[str, type]:
    import builtins

    from .io import ImageReadError, ImageWriteError

    known = {c.__name__: c for c in (ImageReadError, ImageWriteError)}
    for name in dir(builtins):
        c = getattr(builtins, name)
        if isinstance(c, type) and issubclass(c, Exception):
            known.setdefault(name, c)
    return known


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _CatchingDataset:
    """Map-style view of ``dataset`` whose ``__getitem__`` returns :class:`_Failed`
    instead of raising (runs in the worker processes)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Any:
        try:
            return self.dataset[key]
        except Exception as e:  # forwarded to the main process by _collate_or_error
            return _Failed(e)


def _error_payload(exc: BaseException) -> np.ndarray:
    """The nearest rebuildable class of ``exc`` (e.g. ValueError for a RawError) and its
    message, as uint8 JSON bytes."""
    import json

    known = _rebuildable()
    name = next(
        (c.__name__ for c in type(exc).__mro__ if known.get(c.__name__) is c), "RuntimeError"
    )
    blob = json.dumps({"type": name, "message": str(exc)}).encode("utf-8")
    return np.frombuffer(blob, dtype=np.uint8).copy()


def _rebuild_error(payload: np.ndarray) -> Exception:
    import json

    d = json.loads(np.asarray(payload, dtype=np.uint8).tobytes().decode("utf-8"))
    name, msg = str(d.get("type")), str(d.get("message"))
    cls = _rebuildable().get(name)
    if cls is not None:
        try:
            return cls(msg)
        except Exception:  # noqa: BLE001 - a class that needs more than a message
            pass
    return RuntimeError(f"{name}: {msg}")


def _collate_or_error(samples: List[Any]) -> Any:
    from paddle.io.dataloader.collate import default_collate_fn

    for s in samples:
        if isinstance(s, _Failed):
            return {_ERROR_KEY: _error_payload(s.exc)}
    return default_collate_fn(samples)


class _WorkerLoader:
    """``paddle.io.DataLoader`` with workers, re-raising a sample's exception in the
    caller (see ``_ERROR_KEY``); batches are otherwise passed through unchanged."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, dict) and _ERROR_KEY in batch:
                raise _rebuild_error(batch[_ERROR_KEY])
            yield batch


class _MainThreadLoader:
    """The ``num_workers=0`` loader: reads and collates samples in the calling thread.

    ``paddle.io.DataLoader`` (Paddle 3.3) fetches in a helper thread even with
    ``num_workers=0``; an exception there (a truncated image in the training set) kills
    that thread and the trainer then waits forever. Here the error reaches the trainer
    as an ordinary exception naming the file. Batches are what ``DataLoader`` with
    ``return_list=True`` gives: one stacked tensor per sample field.
    """

    def __init__(self, dataset: Any, batch_sampler: Any) -> None:
        self.dataset, self.batch_sampler = dataset, batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        import paddle

        for indices in self.batch_sampler:
            samples = [self.dataset[i] for i in indices]
            yield [
                paddle.to_tensor(np.stack([np.asarray(s[j]) for s in samples]))
                for j in range(len(samples[0]))
            ]


def dataset_names(dataset: Any) -> Sequence[str]:
    """File names of a dataset's images (for per-image CSVs)."""
    return list(getattr(dataset, "names", []))
