"""Optimizers, learning-rate schedules and EMA weights, built from config sections.

Config (PaddleSeg-like)::

    optimizer:    {type: Adam, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, grad_clip: 1.0}
    lr_scheduler: {type: CosineWarmup, learning_rate: 2.0e-4, warmup_iters: 100,
                   warmup_start_lr: 1.0e-6, eta_min: 1.0e-6}
    #             {type: MultiStepDecay, learning_rate: 1.0e-3, milestones: [5000], gamma: 0.5}

Schedules are per *optimizer step* and keep only ``last_epoch`` as state, so they
resume exactly from a checkpoint.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, Sequence

import paddle

__all__ = ["build_lr_scheduler", "build_optimizer", "WarmupCosine", "WarmupMultiStep", "ModelEMA"]


def _warm(step: int, warmup_iters: int, start: float, base: float) -> float | None:
    if warmup_iters > 0 and step < warmup_iters:
        return start + (base - start) * step / warmup_iters
    return None


class WarmupCosine(paddle.optimizer.lr.LRScheduler):
    """Linear warmup from ``warmup_start_lr`` then cosine decay to ``eta_min``.

    The cosine spans ``T_max`` steps after the warmup (default: ``total_iters -
    warmup_iters``, i.e. it ends with the run).
    """

    def __init__(
        self,
        learning_rate: float,
        total_iters: int,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
        eta_min: float = 0.0,
        T_max: int | None = None,
    ) -> None:
        self.warmup_iters = int(warmup_iters)
        self.total_iters = int(T_max) + self.warmup_iters if T_max else int(total_iters)
        self.warmup_start_lr, self.eta_min = float(warmup_start_lr), float(eta_min)
        super().__init__(float(learning_rate))

    def get_lr(self) -> float:
        step = self.last_epoch
        w = _warm(step, self.warmup_iters, self.warmup_start_lr, self.base_lr)
        if w is not None:
            return w
        span = max(self.total_iters - self.warmup_iters, 1)
        t = min(max(step - self.warmup_iters, 0), span) / span
        return self.eta_min + 0.5 * (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t))


class WarmupMultiStep(paddle.optimizer.lr.LRScheduler):
    """Linear warmup then ``lr * gamma ** (number of milestones passed)``."""

    def __init__(
        self,
        learning_rate: float,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
    ) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.warmup_iters, self.warmup_start_lr = (
            float(gamma),
            int(warmup_iters),
            float(warmup_start_lr),
        )
        super().__init__(float(learning_rate))

    def get_lr(self) -> float:
        step = self.last_epoch
        w = _warm(step, self.warmup_iters, self.warmup_start_lr, self.base_lr)
        if w is not None:
            return w
        return self.base_lr * self.gamma ** sum(step >= m for m in self.milestones)


def build_lr_scheduler(
    cfg: Dict[str, Any] | None, total_iters: int
) -> paddle.optimizer.lr.LRScheduler:
    """``CosineWarmup`` (default), ``MultiStepDecay`` or ``Constant``."""
    cfg = dict(cfg or {"type": "CosineWarmup", "learning_rate": 1e-4})
    kind = cfg.pop("type", "CosineWarmup")
    lr = float(cfg.pop("learning_rate", 1e-4))
    if kind in ("CosineWarmup", "CosineAnnealingDecay"):
        return WarmupCosine(lr, total_iters, **cfg)
    if kind in ("MultiStepDecay", "WarmupMultiStep"):
        return WarmupMultiStep(lr, **cfg)
    if kind == "Constant":
        return WarmupMultiStep(lr, milestones=[], **cfg)
    raise ValueError(
        f"unknown lr_scheduler type '{kind}'; known: CosineWarmup, MultiStepDecay, Constant"
    )


def build_optimizer(cfg: Dict[str, Any] | None, parameters, lr) -> paddle.optimizer.Optimizer:
    """``Adam`` (default) or ``AdamW``; ``grad_clip: X`` clips by global norm X."""
    cfg = dict(cfg or {"type": "Adam"})
    kind = cfg.pop("type", "Adam")
    clip = cfg.pop("grad_clip", None)
    grad_clip = paddle.nn.ClipGradByGlobalNorm(float(clip)) if clip else None
    kwargs = dict(
        learning_rate=lr,
        parameters=parameters,
        beta1=float(cfg.pop("beta1", 0.9)),
        beta2=float(cfg.pop("beta2", 0.999)),
        epsilon=float(cfg.pop("epsilon", 1e-8)),
        grad_clip=grad_clip,
    )
    wd = cfg.pop("weight_decay", None)
    if cfg:
        raise ValueError(f"optimizer {kind}: unknown option(s) {', '.join(cfg)}")
    if kind == "Adam":
        return paddle.optimizer.Adam(weight_decay=float(wd) if wd else None, **kwargs)
    if kind == "AdamW":
        return paddle.optimizer.AdamW(weight_decay=float(wd) if wd is not None else 0.01, **kwargs)
    raise ValueError(f"unknown optimizer type '{kind}'; known: Adam, AdamW")


class ModelEMA:
    """Exponential moving average of a model's weights (kept in a private copy).

    ``ema = d * ema + (1 - d) * w`` after each optimizer step with
    ``d = min(decay, (1 + n) / (10 + n))`` (a warm-up so early EMA is not stuck at the
    random init); buffers (e.g. BatchNorm statistics) are copied as they are.
    """

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model)
        self.model.eval()
        for p in self.model.parameters():
            p.stop_gradient = True

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = dict(model.named_parameters())
        for name, p in self.model.named_parameters():
            p.set_value(p * d + src[name].detach() * (1.0 - d))
        src_b = dict(model.named_buffers())
        for name, b in self.model.named_buffers():
            if name in src_b:
                b.set_value(src_b[name])

    def state_dict(self) -> Dict[str, Any]:
        return self.model.state_dict()
