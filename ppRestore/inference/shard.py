"""Split a folder run across processes and report it once.

Under ``python -m paddle.distributed.launch --nproc_per_node N tools/infer.py ...`` (or
``deploy/python/infer.py``; ``--ips`` for several machines) every process lists the
same inputs, keeps every N-th file (:func:`shard_plan`, rank ``PADDLE_TRAINER_ID`` of
``PADDLE_TRAINERS_NUM``) and restores it exactly as a single process would. At the end
each rank writes its result to ``SAVE_DIR/.pprestore-shards/<run>/rank<i>.json``; rank 0
waits for all of them and prints ONE summary (:func:`gather`). The run key hashes the
launch (its endpoints), the world size and the file list, so results of another run
are never mixed in. For several machines ``SAVE_DIR`` must be shared storage (NFS...).

Without a launcher (world size 1) nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import List, Tuple

from ..files import atomic_write

__all__ = ["ShardPlan", "shard_env", "shard_plan", "gather", "SHARD_DIR"]

SHARD_DIR = ".pprestore-shards"


def shard_env() -> Tuple[int, int]:
    """``(rank, world_size)`` from paddle.distributed's launcher environment."""
    env = os.environ
    world = int(env.get("PADDLE_TRAINERS_NUM") or env.get("PADDLE_GLOBAL_SIZE") or 1)
    rank = int(env.get("PADDLE_TRAINER_ID") or env.get("PADDLE_GLOBAL_RANK") or 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad launcher environment: rank {rank} of {world} processes")
    return rank, world


@dataclass
class ShardPlan:
    rank: int = 0
    world: int = 1
    files: List[str] = field(default_factory=list)  # every rank's inputs, in order
    key: str = ""

    def of(self, rank: int) -> List[str]:
        """The files rank ``rank`` restores: every ``world``-th, from ``rank``."""
        return self.files[rank :: self.world]


def shard_plan(files: List[str]) -> Tuple[List[str], ShardPlan]:
    """This process's share of ``files`` (round robin over the sorted list, so large
    and small images spread evenly) and the plan :func:`gather` needs."""
    rank, world = shard_env()
    h = hashlib.sha1()
    for part in (
        os.environ.get("PADDLE_TRAINER_ENDPOINTS", ""),
        os.environ.get("PADDLE_MASTER", ""),
        os.environ.get("PADDLE_JOB_ID", ""),
        str(world),
        *files,
    ):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    plan = ShardPlan(rank, world, list(files), h.hexdigest()[:16])
    return plan.of(rank), plan


def _write_json(path: str, data: dict) -> None:
    # atomic: rank 0 polls for this file and must never read half of it
    blob = json.dumps(data).encode("utf-8")
    atomic_write(path, lambda f: f.write(blob), fsync=False)


def gather(result, save_dir: str, timeout: float | None = None, poll: float = 0.5):
    """Combine the ranks' :class:`~ppRestore.inference.batch.BatchResult` s on rank 0.

    Every rank writes its own result; rank 0 waits (``timeout`` seconds, default
    ``PPRESTORE_SHARD_TIMEOUT`` or 7 days) for the others and returns the combined
    result (files of a rank that never reported count as failed); other ranks return
    their own result with ``is_primary`` False. A single process returns ``result``.
    """
    plan = getattr(result, "shard", None)
    if plan is None or plan.world <= 1:
        return result
    folder = os.path.join(save_dir, SHARD_DIR, plan.key)
    os.makedirs(folder, exist_ok=True)
    _write_json(
        os.path.join(folder, f"rank{plan.rank}.json"),
        {
            "rank": plan.rank,
            "restored": result.restored,
            "failed": result.failed,
            "seconds": result.seconds,
        },
    )
    if plan.rank != 0:
        result.is_primary = False
        return result
    if timeout is None:
        timeout = float(os.environ.get("PPRESTORE_SHARD_TIMEOUT", 7 * 24 * 3600))
    reports = _wait_for_reports(folder, plan.world, timeout, poll)
    merged = _merge_reports(type(result)(), plan, reports)
    if len(reports) == plan.world:
        _remove_reports(folder, plan.world)
    return merged


def _wait_for_reports(folder: str, world: int, timeout: float, poll: float) -> dict:
    """Rank -> its result report, read as each ``rank{r}.json`` appears, until all
    ``world`` ranks reported or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    reports = {}
    while True:
        for r in range(world):
            p = os.path.join(folder, f"rank{r}.json")
            if r not in reports and os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    reports[r] = json.load(f)
        if len(reports) == world or time.monotonic() > deadline:
            return reports
        time.sleep(poll)


def _merge_reports(merged, plan: ShardPlan, reports: dict):
    """Fill the empty BatchResult ``merged`` from the ranks' ``reports``, in the
    plan's file order; a rank that never reported fails all its files."""
    merged.shard = plan
    owner = {}  # output path -> input, across ranks (each rank only checked its own)
    for r in range(plan.world):
        rep = reports.get(r)
        if rep is None:
            merged.failed += [(f, f"{f}: rank {r} did not report a result") for f in plan.of(r)]
            continue
        for inp, out in rep["restored"]:
            real = os.path.realpath(out)
            if real in owner:
                merged.failed.append(
                    (inp, f"{inp}: output {out} is also the output of {owner[real]}")
                )
            else:
                owner[real] = inp
                merged.restored.append((inp, out))
        merged.failed += [tuple(x) for x in rep["failed"]]
        merged.seconds = max(merged.seconds, float(rep["seconds"]))
    order = {f: i for i, f in enumerate(plan.files)}
    merged.restored.sort(key=lambda t: order.get(t[0], -1))
    merged.failed.sort(key=lambda t: order.get(t[0], -1))
    return merged


def _remove_reports(folder: str, world: int) -> None:
    """Delete the reports and, when no other run's are left, their folders."""
    for r in range(world):
        os.remove(os.path.join(folder, f"rank{r}.json"))
    for d in (folder, os.path.dirname(folder)):
        try:
            os.rmdir(d)
        except OSError:
            break  # another run's reports are still there
