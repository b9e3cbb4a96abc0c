"""What a training run prints and plots: the start-up line, the periodic ``[TRAIN]``
line with its VisualDL scalars, and the ``[EVAL]`` step that keeps ``best_model/``.

:class:`TrainReportMixin` is a base of :class:`~ppRestore.engine.trainer.Trainer`
only; it uses the trainer's ``opts``, ``model``, ``ema``, ``evaluator``, ``optimizer``,
``train_dataset``, ``log``, ``vdl``, ``world``, counters and ``save``. Kept apart from
the loop so that the log format (which users grep and the tests read) is in one place.
"""

from __future__ import annotations

import time
from typing import Dict

import numpy as np

from .logger import format_eta

__all__ = ["TrainReportMixin"]


class TrainReportMixin:
    """Start-up, training and evaluation log lines for :class:`~ppRestore.engine.trainer.Trainer`."""

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
