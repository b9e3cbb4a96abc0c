"""Trainer options: the ``train:`` config section plus ``iters``/``batch_size``.

:class:`TrainOptions` checks its values when built (one-line ``ValueError``);
:func:`options_from_config` reads a config and applies command-line overrides. The
config checks (``ppRestore.config_checks``) use :data:`_TRAIN_KEYS` to refuse unknown
``train:`` keys with the closest valid one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

__all__ = ["TrainOptions", "options_from_config"]


@dataclass
class TrainOptions:
    """Trainer options (the ``train:`` config section plus ``iters``/``batch_size``)."""

    iters: int = 1000
    batch_size: int = 4
    save_dir: str = "output"
    save_interval: int = 1000
    log_iters: int = 10
    eval_interval: int | None = None  # default: save_interval
    do_eval: bool = False
    keep_checkpoint_max: int = 5
    accum_steps: int = 1
    ema_decay: float | None = None
    precision: str = "fp32"  # fp32 | fp16 | bf16
    amp_level: str = "O1"
    seed: int = 0
    use_vdl: bool = False
    num_workers: int = 0
    use_shared_memory: bool = True
    to_static: bool = False  # train through paddle.jit.to_static (opt-in, see docs)
    resume_model: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        """One-line ValueErrors for values that used to crash later (``save_interval 0``:
        ZeroDivisionError) or misbehave (``num_workers -1``)."""
        flags = {"iters", "batch_size", "save_interval", "log_iters", "num_workers"}
        for k, lo in (
            ("iters", 1),
            ("batch_size", 1),
            ("save_interval", 1),
            ("log_iters", 1),
            ("eval_interval", 1),
            ("accum_steps", 1),
            ("num_workers", 0),
            ("keep_checkpoint_max", None),
        ):
            v = getattr(self, k)
            if v is None and k == "eval_interval":
                continue
            where = f"--{k}" if k in flags else f"train.{k}"
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{where} must be an integer, got {v!r}")
            if lo is not None and v < lo:
                raise ValueError(f"{where} must be at least {lo}, got {v}")


_TRAIN_KEYS = {
    "save_interval", "log_iters", "eval_interval", "keep_checkpoint_max", "accum_steps",
    "ema", "ema_decay", "precision", "amp_level", "seed", "num_workers", "use_shared_memory",
    "use_vdl", "do_eval", "to_static",
}  # fmt: skip


def options_from_config(cfg: Dict[str, Any], **overrides: Any) -> TrainOptions:
    """``iters``, ``batch_size`` and the ``train:`` section, then non-None ``overrides``."""
    tr = dict(cfg.get("train") or {})
    unknown = set(tr) - _TRAIN_KEYS
    if unknown:
        raise ValueError(
            f"train: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TRAIN_KEYS))}"
        )
    ema = tr.pop("ema", None)
    if isinstance(ema, dict):
        tr["ema_decay"] = ema.get("decay", 0.999)
    elif ema:
        tr["ema_decay"] = 0.999
    kw: Dict[str, Any] = {
        "iters": cfg.get("iters", 1000),
        "batch_size": cfg.get("batch_size", 4),
        **tr,
    }
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainOptions(**kw)
