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
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

from ..builder import restored_output
from . import checkpoint as ckpt
from . import dist
from .logger import VDLWriter, attach_log_file, detach_log_file, format_eta, get_logger


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the iteration and the last checkpoint."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The weights became NaN/Inf (e.g. a huge learning rate): nothing is saved."""


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


class Trainer:
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
            else _null()
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

    # ------------------------------------------------------------------ state
    def train_state(self) -> Dict[str, Any]:
        return {
            "iteration": self.iter,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "seed": self.opts.seed,
            "world_size": self.world,
            # compared on resume (a changed value is allowed, but said)
            "batch_size": self.opts.batch_size,
            "accum_steps": self.opts.accum_steps,
            "iters": self.opts.iters,
            "lr_scheduler": {k: v for k, v in self.lr_scheduler.state_dict().items()},
            "rng": ckpt.get_rng_states(),
            "best": self.best,
            "ema_updates": self.ema.updates if self.ema else 0,
        }

    def _check_finite_weights(self) -> None:
        """Refuse to save NaN/Inf weights (a learning rate of 1e39 makes them after one
        step, before any loss is NaN): such a checkpoint is never written, so it can
        never be called the last good one."""
        bad = ckpt.non_finite_params(self.model.state_dict())
        if self.ema is not None and not bad:
            bad = ckpt.non_finite_params(self.ema.state_dict())
        if bad:
            last = ckpt.find_latest_good(self.opts.save_dir)
            raise NonFiniteWeightsError(
                f"weights are not finite at iteration {self.iter} ({bad}; learning rate too "
                f"high?); not saved. Last good checkpoint: {last or 'none'}"
            )

    def save(self, name: str | None = None) -> str | None:
        """Write a checkpoint (rank 0 only) and prune old ones."""
        if not dist.is_main():
            return None
        self._check_finite_weights()
        path = ckpt.save_checkpoint(
            self.opts.save_dir,
            self.iter,
            self._ckpt_model(),
            self.optimizer if name is None else None,
            self.train_state(),
            ema_state=self.ema.state_dict() if self.ema else None,
            name=name,
        )
        if name is None:
            ckpt.prune(self.opts.save_dir, self.opts.keep_checkpoint_max)
        return path

    def _ckpt_model(self) -> Any:
        """The model as checkpoints see it (a distillation loss adds its adapters' names)."""
        view = getattr(self.loss, "checkpoint_view", None)
        return view(self.model) if view else self.model

    def resume(self, path: str) -> None:
        """Load weights, optimizer, scheduler, RNG and data position from ``path``."""
        from ..weights.safe_load import load_state_dict

        data = ckpt.load_checkpoint(path)
        st = data["train_state"]
        if int(st.get("world_size", 1)) != self.world:
            self.log.warning(
                f"{path} was written with world_size {st.get('world_size')}, now {self.world}: the data order will differ"
            )
        self._warn_resume_changes(st, path)
        load_state_dict(self.model, data["model"], source=path)
        if data["optimizer"] is None:
            raise ckpt.CheckpointError(f"{path} has no model.pdopt: cannot resume training from it")
        ckpt.load_optimizer_state(
            self.optimizer, self._ckpt_model(), data["optimizer"], source=path
        )
        self.lr_scheduler.set_state_dict(st["lr_scheduler"])
        if self.ema is not None and data["ema"] is not None:
            load_state_dict(self.ema.model, data["ema"], source=path)
            self.ema.updates = int(st.get("ema_updates", 0))
        self.iter, self.epoch, self.batch_in_epoch = (
            int(st["iteration"]),
            int(st["epoch"]),
            int(st["batch_in_epoch"]),
        )
        self.best = st.get("best", self.best)
        ckpt.set_rng_states(st["rng"])
        self._iter_data = None
        self.log.info(
            f"Resumed from {path} at iteration {self.iter} (epoch {self.epoch}, batch {self.batch_in_epoch})"
        )

    def _warn_resume_changes(self, st: Dict[str, Any], path: str) -> None:
        """The one place a resume compares the run's settings with the checkpoint's:
        a changed ``iters`` moves the end (and the cosine schedule's shape), a changed
        ``batch_size`` changes samples per step and the data position."""
        for key in ("iters", "batch_size", "accum_steps"):
            now = getattr(self.opts, key)
            was = st.get(key)
            if was is not None and int(was) != int(now):
                self.log.warning(
                    f"resuming {path}: {key} was {was}, now {now}"
                    + (
                        "; the learning-rate schedule was built for the new value"
                        if key == "iters"
                        else "; each step now sees a different number of samples"
                        if key == "batch_size"
                        else "; the run will not match an uninterrupted one"
                    )
                )

    def _startup_line(self) -> str:
        """One line saying what this run will do (printed and written to train.log)."""
        import paddle

        o = self.opts
        n_params = sum(int(np.prod(p.shape)) for p in self.model.parameters())
        n_val = len(self.evaluator.dataset) if self.evaluator is not None else 0
        return (
            f"start: {len(self.train_dataset)} training samples, {n_val} validation images, "
            f"{type(self.model).__name__} with {n_params:,} parameters, iterations "
            f"{self.iter}->{o.iters} at batch {o.batch_size}, device {paddle.device.get_device()}"
            f"{f' x{self.world}' if self.world > 1 else ''}, save_dir {o.save_dir}"
        )

    # ------------------------------------------------------------------ evaluation / logging
    def evaluate(self) -> Dict[str, float]:
        """Evaluate the model (and its EMA), log, and keep ``best_model/``."""
        res = self.evaluator.evaluate(self.model)
        out = {"Evaluate/PSNR": res.psnr, "Evaluate/SSIM": res.ssim}
        msg = f"[EVAL] iter: {self.iter}, PSNR: {res.psnr:.4f}, SSIM: {res.ssim:.4f}"
        if res.input_psnr is not None:
            out["Evaluate/input_PSNR"] = res.input_psnr
            out["Evaluate/input_SSIM"] = res.input_ssim
            msg += f" (degraded input PSNR: {res.input_psnr:.4f}, SSIM: {res.input_ssim:.4f})"
        if self.ema is not None:
            er = self.evaluator.evaluate(self.ema.model)
            out.update({"Evaluate/EMA_PSNR": er.psnr, "Evaluate/EMA_SSIM": er.ssim})
            msg += f", EMA PSNR: {er.psnr:.4f}, EMA SSIM: {er.ssim:.4f}"
        if res.psnr > self.best["psnr"]:
            self.best = {"psnr": res.psnr, "ssim": res.ssim, "iter": self.iter}
            self.save(name="best_model")
        msg += f" | best PSNR {self.best['psnr']:.4f} at iter {self.best['iter']}"
        self.log.info(msg)
        self.vdl.scalars(out, self.iter)
        for name, lq, pred, gt in res.samples:
            self.vdl.triplet(f"Evaluate/{name}", lq, pred, gt, self.iter)
        return out

    def _log_train(self, vals: Dict[str, float], t_start: float, start_iter: int) -> None:
        done = self.iter - start_iter
        elapsed = time.perf_counter() - t_start
        eta = elapsed / max(done, 1) * (self.opts.iters - self.iter)
        ips = (
            self.opts.batch_size
            * self.opts.accum_steps
            * self.world
            / max(vals["batch_cost"], 1e-9)
        )
        lr = self.optimizer.get_lr()
        terms = " ".join(f"{k[5:]}={v:.4f}" for k, v in vals.items() if k.startswith("loss_"))
        self.log.info(
            f"[TRAIN] epoch: {self.epoch + 1}, iter: {self.iter}/{self.opts.iters}, loss: {vals['loss']:.4f} ({terms}), "
            f"lr: {lr:.6f}, batch_cost: {vals['batch_cost']:.4f}, reader_cost: {vals['reader_cost']:.5f}, "
            f"ips: {ips:.4f} samples/sec | ETA {format_eta(eta)}"
        )
        sc = {f"Train/{k}": v for k, v in vals.items() if k.startswith("loss")}
        sc.update(
            {
                "Train/lr": lr,
                "Train/ips": ips,
                "Train/batch_cost": vals["batch_cost"],
                "Train/reader_cost": vals["reader_cost"],
            }
        )
        self.vdl.scalars(sc, self.iter)

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


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> bool:
        return False


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
