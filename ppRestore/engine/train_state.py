"""Checkpoint side of the :class:`~ppRestore.engine.trainer.Trainer`: what a checkpoint
holds, saving (never NaN weights), and resuming bit for bit.

:class:`TrainStateMixin` is a base of ``Trainer`` only; it uses the trainer's ``opts``,
``model``, ``loss``, ``optimizer``, ``lr_scheduler``, ``ema``, ``world``, ``log`` and
position counters (``iter``, ``epoch``, ``batch_in_epoch``, ``best``). It lives apart
from the loop so that the format of a checkpoint's ``train_state`` is read in one place.
"""

from __future__ import annotations

from typing import Any, Dict

from . import checkpoint as ckpt
from . import dist

__all__ = ["NonFiniteLossError", "NonFiniteWeightsError", "TrainStateMixin"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the iteration and the last checkpoint."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The weights became NaN/Inf (e.g. a huge learning rate): nothing is saved."""


class TrainStateMixin:
    """``train_state`` / ``save`` / ``resume`` for :class:`~ppRestore.engine.trainer.Trainer`."""

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
