"""Hyper-parameter search over a training config with Optuna.

Each trial is a short training run through :class:`~ppRestore.engine.trainer.Trainer`
in this process (no subprocess per trial: no repeated Paddle start-up, and the trial's
validation PSNR reaches Optuna directly), scored by the validation PSNR of its last
evaluation. Every evaluation is reported as an intermediate value, so a median pruner
stops trials that fall behind the median of earlier trials at the same step. Results
go to ``trials.csv``, ``best_config.yml``, ``history.png`` and ``importance.png``.

Optuna: T. Akiba, S. Sano, T. Yanase, T. Ohta, M. Koyama, "Optuna: A Next-generation
Hyperparameter Optimization Framework", KDD 2019. TPE: J. Bergstra, R. Bardenet,
Y. Bengio, B. Kegl, "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011.

The search space is a YAML file (see ``configs/tune/``)::

    iters: 200            # training steps per trial (the config's own iters stay in best_config.yml)
    eval_interval: 50     # report validation PSNR every N steps (pruning decisions)
    pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 50}   # or {type: none}
    params:               # dotted config paths, list items by index
      lr_scheduler.learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      batch_size: {type: categorical, choices: [8, 16]}
      optimizer.type: {type: categorical, choices: [Adam, AdamW]}
      loss.types.0.type: {type: categorical, choices: [MSELoss, L1Loss, CharbonnierLoss]}

``--sampler grid`` needs a finite grid: categorical params, or ``grid: [values]`` on
numeric ones.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import warnings
from typing import Any, Dict, List

import yaml

__all__ = ["load_space", "run_study", "apply_params"]

_SPACE_KEYS = {"iters", "eval_interval", "pruner", "params", "direction"}
_PARAM_TYPES = {"float", "int", "categorical"}


class TuneError(ValueError):
    """A bad search space or study setting (one line, no traceback in the CLI)."""


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise TuneError(
            "pprestore tune (tools/tune.py) needs Optuna: pip install 'ppRestore[tune]' (optuna, matplotlib)"
        ) from None
    return optuna


def load_space(path: str) -> Dict[str, Any]:
    """Read and check a search-space YAML."""
    if not os.path.isfile(path):
        raise TuneError(f"search space not found: {path}")
    with open(path, encoding="utf-8") as f:
        space = yaml.safe_load(f) or {}
    if not isinstance(space, dict):
        raise TuneError(f"{path}: a search space is a mapping with 'params:'")
    bad = set(space) - _SPACE_KEYS
    if bad:
        raise TuneError(
            f"{path}: unknown key(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(_SPACE_KEYS))}"
        )
    params = space.get("params")
    if not isinstance(params, dict) or not params:
        raise TuneError(f"{path}: 'params:' must map config paths to distributions")
    for name, spec in params.items():
        if not isinstance(spec, dict) or spec.get("type") not in _PARAM_TYPES:
            raise TuneError(
                f"{path}: param {name}: 'type' must be one of {', '.join(sorted(_PARAM_TYPES))}"
            )
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise TuneError(
                    f"{path}: param {name}: categorical needs a non-empty 'choices' list"
                )
        elif "low" not in spec or "high" not in spec or not spec["low"] <= spec["high"]:
            raise TuneError(f"{path}: param {name}: {spec['type']} needs 'low' <= 'high'")
    for k in ("iters", "eval_interval"):
        if k in space and (not isinstance(space[k], int) or space[k] < 1):
            raise TuneError(f"{path}: '{k}' must be a positive integer")
    return space


def apply_params(cfg: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of ``cfg`` with dotted-path ``params`` set (missing mappings are created)."""
    out = copy.deepcopy(cfg)
    for path, value in params.items():
        node: Any = out
        parts = path.split(".")
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not p.lstrip("-").isdigit() or not -len(node) <= int(p) < len(node):
                    raise TuneError(f"param {path}: '{p}' is not an index of a list of {len(node)}")
                p = int(p)
            elif not isinstance(node, dict):
                raise TuneError(f"param {path}: '{'.'.join(parts[:i])}' is not a mapping")
            if last:
                node[p] = value
            else:
                if isinstance(node, dict) and not isinstance(node.get(p), (dict, list)):
                    node[p] = {}
                node = node[p]
    return out


def _suggest(trial: Any, name: str, spec: Dict[str, Any]) -> Any:
    t = spec["type"]
    if t == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if t == "int":
        return trial.suggest_int(
            name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log"))
        )
    return trial.suggest_float(
        name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
    )


def _grid(space: Dict[str, Any]) -> Dict[str, List[Any]]:
    grid = {}
    for name, spec in space["params"].items():
        if spec["type"] == "categorical":
            grid[name] = list(spec["choices"])
        elif isinstance(spec.get("grid"), list) and spec["grid"]:
            grid[name] = list(spec["grid"])
        else:
            raise TuneError(
                f"--sampler grid: param {name} needs 'choices' or a 'grid: [values]' list"
            )
    return grid


def _sampler(optuna: Any, kind: str, space: Dict[str, Any], seed: int) -> Any:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(_grid(space), seed=seed)
    raise TuneError(f"unknown sampler {kind!r}; use tpe, grid or random")


def _pruner(optuna: Any, spec: Dict[str, Any] | None) -> Any:
    spec = dict(spec or {"type": "median"})
    kind = spec.pop("type", "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(spec.pop("n_startup_trials", 2)),
            n_warmup_steps=int(spec.pop("n_warmup_steps", 0)),
        )
    if kind in ("none", None):
        return optuna.pruners.NopPruner()
    raise TuneError(f"pruner type {kind!r}: use median or none")


def _trial_trainer_cls():
    """A Trainer whose evaluations are reported to the Optuna trial (and may prune it)."""
    from .engine.trainer import Trainer

    class TrialTrainer(Trainer):
        trial: Any = None

        def evaluate(self) -> Dict[str, float]:
            import optuna

            out = super().evaluate()
            psnr = float(out["Evaluate/PSNR"])
            self.last_psnr = psnr
            self.trial.report(psnr if math.isfinite(psnr) else -1e9, self.iter)
            if self.iter < self.opts.iters and self.trial.should_prune():
                raise optuna.TrialPruned(f"PSNR {psnr:.3f} at iteration {self.iter}")
            return out

    return TrialTrainer


def _trial_config(
    cfg: Dict[str, Any], space: Dict[str, Any], params: Dict[str, Any]
) -> Dict[str, Any]:
    from .config import validate

    c = apply_params(cfg, params)
    iters = int(space.get("iters", c.get("iters", 1000)))
    c["iters"] = iters
    tr = dict(c.get("train") or {})
    ev = int(space.get("eval_interval", max(1, iters // 4)))
    tr.update(eval_interval=ev, save_interval=iters, keep_checkpoint_max=1, do_eval=True)
    c["train"] = tr
    try:
        return validate(c, "trial config")
    except ValueError as e:
        raise TuneError(str(e)) from None


def _write_csv(study: Any, path: str, names: List[str]) -> str:
    rows = []
    for t in study.trials:
        inter = t.intermediate_values
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "psnr": "" if t.value is None else f"{t.value:.4f}",
                **{n: t.params.get(n, "") for n in names},
                "last_step": max(inter) if inter else "",
                "seconds": "" if t.duration is None else f"{t.duration.total_seconds():.1f}",
            }
        )
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["trial", "state", "psnr", *names, "last_step", "seconds"])
        w.writeheader()
        w.writerows(rows)
    return path


def _plots(study: Any, save_dir: str) -> Dict[str, str]:
    """History and parameter-importance PNGs (importance needs two finished trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out = {}
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    for name, fn, need in (
        ("history.png", ovm.plot_optimization_history, 1),
        ("importance.png", ovm.plot_param_importances, 2),
    ):
        if len(done) < need:
            continue
        with warnings.catch_warnings():  # optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore")
            ax = fn(study)
        fig = ax.figure
        fig.set_size_inches(6.4, 4.0)
        fig.tight_layout()
        path = os.path.join(save_dir, name)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        out[name] = path
    return out


def run_study(
    cfg: Dict[str, Any],
    space: Dict[str, Any],
    trials: int,
    save_dir: str,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str = "ppRestore",
    seed: int = 0,
    log=print,
) -> Dict[str, Any]:
    """Run (or resume) a study until it holds ``trials`` finished trials.

    With ``storage`` (e.g. ``sqlite:///study.db``) the study is resumable: finished
    trials count towards ``trials``, and a trial left RUNNING by a killed process is
    marked failed and its parameters queued again.

    Returns:
        ``{"best_value", "best_params", "csv", "best_config", "plots", "n_trials"}``.
    """
    optuna = _import_optuna()
    from .engine import dist

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(save_dir, exist_ok=True)
    study = _open_study(optuna, space, sampler, storage, study_name, seed, log)
    TrialState = optuna.trial.TrialState
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    todo = trials - len(study.get_trials(deepcopy=False, states=finished))
    if todo > 0:
        if dist.world_size() > 1:
            raise TuneError(
                "pprestore tune (tools/tune.py) runs in one process; do not launch it distributed"
            )
        objective = _objective(cfg, space, save_dir)
        study.optimize(objective, n_trials=todo, callbacks=[_trial_logger(log)], catch=())
    else:
        log(f"the study already holds {trials} finished trials; nothing to run")
    return _results(study, cfg, list(space["params"]), save_dir)


def _open_study(
    optuna: Any,
    space: Dict[str, Any],
    sampler: str,
    storage: str | None,
    study_name: str,
    seed: int,
    log,
) -> Any:
    """Create or load the study; trials left RUNNING by a killed process are failed and
    their parameters queued again."""
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction=space.get("direction", "maximize"),
        sampler=_sampler(optuna, sampler, space, seed),
        pruner=_pruner(optuna, space.get("pruner")),
    )
    TrialState = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a process killed mid-trial leaves it RUNNING forever: fail it, redo its params
        study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params)
        log(f"trial {t.number} was interrupted: marked failed, its parameters queued again")
    return study


def _objective(cfg: Dict[str, Any], space: Dict[str, Any], save_dir: str):
    """The Optuna objective: train the trial's config in ``save_dir/trial_N``, return
    its last validation PSNR (evaluations on the way may prune it)."""
    Trainer = _trial_trainer_cls()

    def objective(trial: Any) -> float:
        params = {n: _suggest(trial, n, s) for n, s in space["params"].items()}
        tcfg = _trial_config(cfg, space, params)
        tdir = os.path.join(save_dir, f"trial_{trial.number}")
        trial.set_user_attr("save_dir", tdir)
        tr = Trainer.from_config(tcfg, save_dir=tdir, do_eval=True)
        tr.trial = trial
        tr.train()
        return float(tr.last_psnr)

    return objective


def _trial_logger(log):
    """A study callback logging one ``[TUNE]`` line per finished or pruned trial."""

    def report(study: Any, t: Any) -> None:
        ps = ", ".join(f"{k}={v}" for k, v in t.params.items())
        val = f"PSNR {t.value:.4f}" if t.value is not None else t.state.name.lower()
        if t.state.name == "PRUNED" and t.intermediate_values:
            step = max(t.intermediate_values)
            val = f"pruned at step {step} (PSNR {t.intermediate_values[step]:.4f})"
        log(f"[TUNE] trial {t.number}: {val} | {ps}")

    return report


def _results(study: Any, cfg: Dict[str, Any], names: List[str], save_dir: str) -> Dict[str, Any]:
    """Write trials.csv and, once a trial has finished, best_config.yml and the plots."""
    from .config import save_config

    csv_path = _write_csv(study, os.path.join(save_dir, "trials.csv"), names)
    result: Dict[str, Any] = {"csv": csv_path, "n_trials": len(study.trials), "plots": {}}
    if any(t.state.name == "COMPLETE" for t in study.trials):
        best = study.best_trial
        best_cfg = apply_params(cfg, best.params)
        path = os.path.join(save_dir, "best_config.yml")
        save_config(best_cfg, path)
        result.update(
            best_value=best.value, best_params=best.params, best_config=path, best_trial=best.number
        )
        result["plots"] = _plots(study, save_dir)
    return result
