"""Config checks beyond the top level: each section's keys, and sections against each other.

Called by :func:`ppRestore.config.validate`; every failure is one :class:`ConfigError`
line naming the key (and the closest valid one).
"""

from __future__ import annotations

from typing import Any, Dict, List

from .config import ConfigError, _check_key

__all__ = ["section_keys", "check_section_keys", "check_sections_agree"]

# Sections with fixed options. ``model:``, ``*_dataset:`` and loss entries are not here:
# their constructors check their arguments and name the closest one (registry.build).
_OPTIMIZER_KEYS = ("type", "grad_clip", "beta1", "beta2", "epsilon", "weight_decay")
_LR_KEYS = ("type", "learning_rate", "warmup_iters", "warmup_start_lr", "T_max", "eta_min")
_LR_STEP_KEYS = ("milestones", "gamma")
_EXPORT_KEYS = ("input_shape", "int8")  # int8: quantize.RECIPE_KEYS, checked there
# The names a model's input-channel argument goes by (unified later; all accepted).
_MODEL_CHANNEL_KEYS = ("in_channels", "in_c", "num_channels")


def section_keys(section: str, value: Any) -> List[str] | None:
    """The valid keys of a config section, or None where its consumer checks them.

    Read from the consumer itself where it is light to import (``infer:`` from
    :class:`~ppRestore.inference.predictor.InferOptions`, ``train:`` from the trainer,
    ``val:`` from the evaluator's arguments), so a new option needs no second list.
    """
    import inspect

    if not isinstance(value, dict):
        return None
    if section == "infer":
        from dataclasses import fields

        from .inference.predictor import InferOptions

        return [f.name for f in fields(InferOptions)]
    if section == "train":
        from .engine.options import _TRAIN_KEYS

        return sorted(_TRAIN_KEYS)
    if section == "val":
        from .engine.evaluator import Evaluator

        params = inspect.signature(Evaluator.__init__).parameters
        return [p for p in params if p not in ("self", "dataset", "infer_cfg")]
    if section == "export":
        return list(_EXPORT_KEYS)
    if section == "optimizer":
        return list(_OPTIMIZER_KEYS)
    if section == "lr_scheduler":
        step = value.get("type") in ("MultiStepDecay", "WarmupMultiStep", "Constant")
        return list(_LR_KEYS[:4]) + list(_LR_STEP_KEYS if step else _LR_KEYS[4:])
    if section == "loss" and "type" not in value:
        return ["types", "coef"]
    return None


def _model_channels(model: Dict[str, Any]) -> tuple:
    for k in _MODEL_CHANNEL_KEYS:
        if isinstance(model.get(k), int) and not isinstance(model.get(k), bool):
            return k, model[k]
    return None, None


def _dataset_scale(ds: Dict[str, Any]) -> int | None:
    """The size ratio GT / LQ a dataset section makes, when its config says it."""
    degs = ds.get("degradations")
    if not isinstance(degs, list):
        return None
    scale = 1
    for d in degs:
        if isinstance(d, dict) and isinstance(d.get("scale"), int):
            scale *= d["scale"]
    return scale


def check_sections_agree(cfg: Dict[str, Any], source: str = "config") -> None:
    """Cross-section checks on what the config states explicitly: the model's input
    channels against each dataset's ``channels`` and the ``infer.color`` mode, the
    model's ``scale`` against the datasets' degradations and ``infer.scale``.

    Raises:
        ConfigError: one line naming both keys.
    """
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    infer = cfg.get("infer") if isinstance(cfg.get("infer"), dict) else {}
    key, in_c = _model_channels(model)
    for section in ("train_dataset", "val_dataset", "test_dataset"):
        ds = cfg.get(section)
        if not isinstance(ds, dict):
            continue
        ch = ds.get("channels")
        if in_c in (1, 3) and ch in (1, 3, "y"):
            want = 1 if ch in (1, "y") else 3
            if want != in_c:
                raise ConfigError(
                    f"{source}: {section}.channels is {ch!r} ({want}-channel images) but "
                    f"model.{key} is {in_c}"
                )
        ds_scale = _dataset_scale(ds)
        m_scale = model.get("scale")
        if ds_scale and isinstance(m_scale, int) and ds_scale != m_scale:
            raise ConfigError(
                f"{source}: {section}.degradations downscale by {ds_scale} but model.scale "
                f"is {m_scale}"
            )
    color = infer.get("color")
    need = {"y": 1, "gray": 1, "rgb": 3, "raw": 4}.get(color)
    if need is not None and in_c is not None and in_c != need:
        raise ConfigError(
            f"{source}: infer.color '{color}' needs a {need}-channel model, but model.{key} "
            f"is {in_c}"
        )
    i_scale, m_scale = infer.get("scale"), model.get("scale")
    if isinstance(i_scale, int) and isinstance(m_scale, int) and i_scale != m_scale:
        raise ConfigError(f"{source}: infer.scale is {i_scale} but model.scale is {m_scale}")


def check_section_keys(cfg: Dict[str, Any], source: str = "config") -> None:
    """Refuse a key no consumer reads, in every section :func:`section_keys` knows."""
    for section in cfg:
        keys = section_keys(section, cfg[section])
        if keys is not None:
            for k in cfg[section]:
                _check_key(k, keys, f"{source}: {section}")
