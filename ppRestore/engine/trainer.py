"""The training loop as a :class:`Trainer` with small steps, usable from a notebook.

    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    trainer = Trainer.from_config(load_config("configs/x.yml"), save_dir="output/x")
    trainer.train()

Determinism: the data order of epoch ``e`` is a permutation drawn from ``(seed, e)``,
every sample's augmentation/degradation from ``(seed, epoch, index)``, and a checkpoint
stores the python/numpy/paddle RNG states plus the position in the epoch. A run
resumed from ``iter_N`` therefore reproduces an uninterrupted run bit for bit (tested
with ``kill -9``). Stopping: SIGINT/SIGTERM finish the current iteration, save a
checkpoint and return (exit codes 130 and 0 in ``tools/train.py``); a non-finite loss
stops with :class:`NonFiniteLossError` naming the iteration, leaving the last good
checkpoint as the newest one.

Around the loop: :mod:`.options` (``TrainOptions``, ``options_from_config``),
:mod:`.train_state` (checkpoint contents, save and resume), :mod:`.train_report` (the
start-up, ``[TRAIN]`` and ``[EVAL]`` lines, ``best_model/``). Their names are
re-exported here: ``from ppRestore.engine.trainer import TrainOptions`` keeps working.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from typing import Any, Dict

import numpy as np

from ..builder import restored_output
from . import checkpoint as ckpt
from . import dist
from .logger import VDLWriter, attach_log_file, detach_log_file, get_logger
from .options import (
    _TRAIN_KEYS,  # noqa: F401 - ppRestore.config_checks imports it from here
    TrainOptions,
    options_from_config,
)
from .train_report import TrainReportMixin
from .train_state import NonFiniteLossError, NonFiniteWeightsError, TrainStateMixin

__all__ = [
    "Trainer",
    "TrainOptions",
    "options_from_config",
    "set_seed",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
]


def set_seed(seed: int) -> None:
    """Seed python, numpy and paddle."""
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves and returns at the next iteration end."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: Dict[int, Any] = {}

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handlers
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


class Trainer(TrainStateMixin, TrainReportMixin):
    """Train a restoration model.

    Args:
        model: a ``paddle.nn.Layer`` (N x C x H x W in [0, 1] in and out).
        loss: a :class:`ppRestore.losses.CombinedLoss` (``(total, terms)``).
        optimizer, lr_scheduler: from :mod:`ppRestore.optim`.
        train_dataset: a dataset yielding ``(lq, gt, index)`` with sample keys.
        options: :class:`TrainOptions`.
        evaluator: an :class:`ppRestore.engine.evaluator.Evaluator` (or None).
    """

    def __init__(
        self,
        model: Any,
        loss: Any,
        optimizer: Any,
        lr_scheduler: Any,
        train_dataset: Any,
        options: TrainOptions,
        evaluator: Any = None,
    ) -> None:
        self.opts = options
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_dataset = train_dataset
        self.evaluator = evaluator
        self.log = get_logger()
        self.iter = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best = {"psnr": -math.inf, "iter": -1}
        self.ema = None
        self.stop = _StopFlag()
        self.world, self.rank = dist.world_size(), dist.rank()
        self._amp = self._setup_precision()
        self._build_loader()
        self.train_model = self._wrap_model()
        if options.ema_decay:
            from ..optim import ModelEMA

            self.ema = ModelEMA(self.model, options.ema_decay)
        self.vdl = VDLWriter(options.save_dir, options.use_vdl and dist.is_main())
        self._lock = None

    def _acquire_lock(self) -> None:
        """One training per save_dir (rank 0; see :mod:`.lock`), held while train() runs."""
        if self._lock is None and dist.is_main():
            from .lock import SaveDirLock

            self._lock = SaveDirLock(self.opts.save_dir).acquire()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: Dict[str, Any], **overrides: Any) -> Trainer:
        """Build every component from its config section (``overrides`` win over ``train:``)."""
        import paddle

        from ..builder import build_model
        from ..data.datasets import build_dataset, val_seed
        from ..losses import build_loss
        from ..optim import build_lr_scheduler, build_optimizer
        from .evaluator import Evaluator

        opts = options_from_config(cfg, **overrides)
        if opts.device:
            paddle.set_device(opts.device)
        dist.init()
        set_seed(opts.seed)
        # model.pretrained: fine-tune from those weights (a resumed run overwrites them)
        model = build_model(cfg["model"], load_pretrained=True)
        train_ds = build_dataset(cfg["train_dataset"], mode="train", seed=opts.seed)
        if cfg.get("qat") is not None:  # int8 fake quantisation (ppRestore/compression/qat.py)
            from ..compression.qat import prepare_from_config

            prepare_from_config(cfg["qat"], model, train_ds, opts.batch_size, cfg)
        evaluator = None
        if opts.do_eval:
            if "val_dataset" not in cfg:
                raise ValueError("--do_eval needs a 'val_dataset:' section in the config")
            # the val noise follows the config, not --seed: comparable across runs
            val_ds = build_dataset(cfg["val_dataset"], mode="val", seed=val_seed(cfg))
            evaluator = Evaluator(val_ds, infer_cfg=cfg.get("infer"), **(cfg.get("val") or {}))
        warm = (cfg.get("lr_scheduler") or {}).get("warmup_iters") or 0
        if isinstance(warm, int) and warm >= opts.iters:
            get_logger().warning(
                f"lr_scheduler.warmup_iters ({warm}) >= iters ({opts.iters}): the learning "
                "rate never leaves its warm-up; lower warmup_iters or raise iters"
            )
        loss, params = build_loss(cfg.get("loss")), model.parameters()
        if cfg.get("distill"):  # a frozen teacher wraps the loss (ppRestore/compression)
            from ..compression.distill import build_distill_loss

            loss = build_distill_loss(cfg["distill"], model, loss)
            params = params + loss.extra_parameters()
        sched = build_lr_scheduler(cfg.get("lr_scheduler"), opts.iters)
        optimizer = build_optimizer(cfg.get("optimizer"), params, sched)
        if dist.is_main():
            from ..config import save_config
            from .lock import SaveDirLock

            # a running training's config.yaml must not be replaced; the lock is held
            # only while writing it here (a notebook may build several trainers) and
            # for the whole of train()
            with SaveDirLock(opts.save_dir):
                save_config(cfg, os.path.join(opts.save_dir, "config.yaml"))
        return cls(model, loss, optimizer, sched, train_ds, opts, evaluator)

    def _setup_precision(self) -> Dict[str, Any] | None:
        """AMP settings, or None for fp32 (also the CPU fallback)."""
        import paddle

        p = self.opts.precision
        if p not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {p!r}")
        if p == "fp32":
            return None
        if "gpu" not in paddle.get_device():
            # Measured with paddle 3.3.1: auto_cast leaves CPU convs in float32 and the CPU
            # conv2d kernel is registered for float32/float64 only, so there is nothing to gain.
            self.log.warning(
                f"precision={p} is not supported on {paddle.get_device()} (Paddle has no fp16/bf16 CPU conv kernels); training in fp32"
            )
            return None
        dtype = "float16" if p == "fp16" else "bfloat16"
        scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15) if p == "fp16" else None
        if self.opts.amp_level == "O2":
            self.model, self.optimizer = paddle.amp.decorate(
                self.model, self.optimizer, level="O2", dtype=dtype
            )
        return {"dtype": dtype, "level": self.opts.amp_level, "scaler": scaler}

    def _build_loader(self) -> None:
        from ..data.datasets import build_dataloader

        self.loader, self.sampler = build_dataloader(
            self.train_dataset,
            self.opts.batch_size,
            shuffle=True,
            num_workers=self.opts.num_workers,
            use_shared_memory=self.opts.use_shared_memory,
            seed=self.opts.seed,
            drop_last=True,
            num_replicas=self.world,
            rank=self.rank,
        )
        self._iter_data = None

    def _wrap_model(self) -> Any:
        import paddle

        model = self.model
        if self.opts.to_static:
            # Measured on CPU (benchmarks/bench_train.py): within a few percent of dynamic
            # mode for more memory, so it is opt-in; never combine it with FLAGS_use_mkldnn
            # (crashes with paddle 3.3.1 CPU).
            model = paddle.jit.to_static(model, full_graph=True)
        if self.world > 1:
            return paddle.DataParallel(model)
        return model

    # ------------------------------------------------------------------ data
    def _next_batch(self) -> tuple:
        """Next batch; rolls over to the next epoch (its order drawn from (seed, epoch))."""
        while True:
            if self._iter_data is None:
                self.sampler.set_epoch(self.epoch)
                self.sampler.start_batch = self.batch_in_epoch
                self._iter_data = iter(self.loader)
            try:
                batch = next(self._iter_data)
                self.batch_in_epoch += 1
                return batch
            except StopIteration:
                self._iter_data = None
                self.epoch += 1
                self.batch_in_epoch = 0

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, lq: Any, gt: Any) -> tuple:
        import paddle

        ctx = (
            paddle.amp.auto_cast(True, level=self._amp["level"], dtype=self._amp["dtype"])
            if self._amp
            else contextlib.nullcontext()
        )
        with ctx:
            if self.loss.needs_aux:
                aux = self.train_model(lq, return_aux=True)
                pred = restored_output(aux)
            else:
                aux, pred = None, restored_output(self.train_model(lq))
            total, terms = self.loss(pred.astype("float32"), gt, aux)
        return total, terms

    def train_step(self) -> Dict[str, float]:
        """One optimizer step over ``accum_steps`` micro-batches; returns logged values."""
        n = self.opts.accum_steps
        t0 = time.perf_counter()
        reader = 0.0
        sums: Dict[str, float] = {}
        for _ in range(n):
            r0 = time.perf_counter()
            batch = self._next_batch()
            lq, gt = batch[0], batch[1]  # (lq, gt[, index]) -- the index is not needed here
            reader += time.perf_counter() - r0
            total, terms = self._forward_loss(lq, gt)
            val = float(total)
            if not math.isfinite(val):
                last = ckpt.find_latest_good(self.opts.save_dir)
                raise NonFiniteLossError(
                    f"loss is {val} at iteration {self.iter + 1} (terms: "
                    + ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
                    + f"); stopped without saving. Last good checkpoint: {last or 'none'}"
                )
            scaled = total / n
            scaler = self._amp["scaler"] if self._amp else None
            (scaler.scale(scaled) if scaler else scaled).backward()
            sums["loss"] = sums.get("loss", 0.0) + val / n
            for k, v in terms.items():
                sums[f"loss_{k}"] = sums.get(f"loss_{k}", 0.0) + float(v) / n
        scaler = self._amp["scaler"] if self._amp else None
        if scaler:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iter += 1
        sums["batch_cost"] = time.perf_counter() - t0
        sums["reader_cost"] = reader
        return sums

    # ------------------------------------------------------------------ the loop
    def train(self) -> Dict[str, Any]:
        """Run to ``iters``. Returns ``{"iteration", "stopped_by_signal", "best", "checkpoint"}``."""
        self._acquire_lock()  # before touching save_dir (clean_stale removes temp folders)
        try:
            return self._train()
        finally:
            self._release_lock()

    def _train(self) -> Dict[str, Any]:
        o = self.opts
        log_file = None
        if dist.is_main():
            ckpt.clean_stale(o.save_dir)
            log_file = attach_log_file(self.log, os.path.join(o.save_dir, "train.log"))
        try:
            return self._run(o)
        finally:
            detach_log_file(self.log, log_file)

    def _run(self, o: TrainOptions) -> Dict[str, Any]:
        path = ckpt.resolve_resume(o.resume_model, o.save_dir)
        if path:
            self.resume(path)
        elif o.resume_model == "auto":
            self.log.info(
                f"--resume_model auto: no complete checkpoint in {o.save_dir}, starting from scratch"
            )
        if dist.is_main():
            self.log.info(self._startup_line())
        self.model.train()
        self.stop.install()
        t_start, start_iter = time.perf_counter(), self.iter
        last_saved = self.iter if path else None
        eval_every = o.eval_interval or o.save_interval
        try:
            while self.iter < o.iters:
                vals = self.train_step()
                if dist.is_main() and (self.iter % o.log_iters == 0 or self.iter == o.iters):
                    self._log_train(vals, t_start, start_iter)
                if (
                    self.evaluator is not None
                    and dist.is_main()
                    and (self.iter % eval_every == 0 or self.iter == o.iters)
                ):
                    self.evaluate()
                if self.iter % o.save_interval == 0:
                    self.save()
                    last_saved = self.iter
                if dist.any_flag(self.stop.signum is not None):
                    break
            if last_saved != self.iter:
                self.save()
            stopped = self.stop.signum
            if stopped is not None:
                self.log.info(
                    f"Stopped by signal {stopped} at iteration {self.iter}; checkpoint saved, resume with --resume_model auto"
                )
        finally:
            self.stop.restore()
            self.vdl.close()
        return {
            "iteration": self.iter,
            "stopped_by_signal": self.stop.signum,
            "best": self.best,
            "checkpoint": ckpt.find_latest(o.save_dir),
        }
