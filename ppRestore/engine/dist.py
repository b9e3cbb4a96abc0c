"""Minimal data-parallel helpers (Paddle collective mode; gloo on CPU).

``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py ...`` sets
``PADDLE_TRAINERS_NUM`` / ``PADDLE_TRAINER_ID`` (and ``PADDLE_DISTRI_BACKEND=gloo`` on a
CPU-only build); a plain ``python tools/train.py`` is a world of one and never touches
``paddle.distributed``.
"""

from __future__ import annotations

import os

_initialized = False


def world_size() -> int:
    """Number of training processes (1 outside ``paddle.distributed.launch``)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    """This process's rank (0 outside a launch)."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main() -> bool:
    """Rank 0 alone logs, evaluates and saves."""
    return rank() == 0


def init() -> None:
    """Initialise the process group once when running under a multi-process launch."""
    global _initialized
    if world_size() > 1 and not _initialized:
        import paddle.distributed as pdist

        pdist.init_parallel_env()
        _initialized = True


def any_flag(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (keeps ranks in lock-step on stop)."""
    if world_size() <= 1:
        return flag
    import paddle
    import paddle.distributed as pdist

    t = paddle.to_tensor([1.0 if flag else 0.0])
    pdist.all_reduce(t, op=pdist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if world_size() > 1:
        import paddle.distributed as pdist

        pdist.barrier()
