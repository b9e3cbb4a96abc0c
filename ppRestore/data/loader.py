"""Loading batches: a deterministic resumable sampler, the DataLoader, worker errors.

Split from :mod:`.datasets` (which re-exports these names). The sampler yields sample
keys ``epoch * N + index`` so a dataset's randomness is a pure function of the sample
(see :mod:`.datasets`); a failing sample travels from a worker to the main process as
a small array and is re-raised there as its own exception class, one line.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterator, List

import numpy as np


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
        worker_init_fn=exit_with_parent,
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


def exit_with_parent(worker_id: int = 0) -> None:
    """Make this DataLoader worker exit when its parent (the trainer) dies.

    A ``kill -9`` of the trainer used to leave each worker (~200 MB) and its ``/dev/shm``
    segments alive for minutes. Linux: ``prctl(PR_SET_PDEATHSIG, SIGUSR1)`` through
    ctypes makes the kernel signal the worker the moment the parent exits; the handler
    raises SystemExit so Paddle's clean-up of its shared-memory files runs. Everywhere: a daemon
    thread checks every second that the parent is still the same process and, if not,
    signals itself, then forces the exit 3 s later if the worker is stuck in C code.
    SIGTERM is left to Paddle, which stops its workers with it.
    """
    import multiprocessing
    import signal
    import threading
    import time

    proc = multiprocessing.parent_process()  # the trainer, even if it is already gone
    parent = proc.pid if proc is not None and proc.pid else os.getppid()

    def orphaned(signum: int, frame: Any) -> None:
        # unwind through Paddle's worker loop, whose finally frees its shared memory
        raise SystemExit(0)

    # SIGUSR1, not SIGTERM: Paddle installs its own SIGTERM handling in workers and
    # stops them with it; that must stay as it is.
    signal.signal(signal.SIGUSR1, orphaned)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGUSR1), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog below does it
    if os.getppid() != parent:  # the parent died before prctl took effect
        # (its children are re-parented to init or a subreaper)
        os.kill(os.getpid(), signal.SIGUSR1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(3.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
