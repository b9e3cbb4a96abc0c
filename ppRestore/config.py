"""YAML configs: ``_base_`` inheritance, dotted ``-o key=value`` overrides, validation.

Follows PaddleSeg's ``cvlibs/config.py`` conventions so a PaddleSeg user feels at home:
a config may name one or more ``_base_`` files (paths relative to itself) whose dicts are
merged recursively underneath it; a child dict with ``_inherited_: false`` replaces its
base instead of merging. Overrides use dotted paths (``-o model.n_feat=32``) and their
values are parsed as YAML (``true``, ``3``, ``[1, 2]``, ``1e-4``).
"""

from __future__ import annotations

import copy
import difflib
import os
from typing import Any, Dict, Iterable, List, Optional

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


# Top-level keys and the Python types their values may have. Unknown keys are an
# error with a suggestion, so a typo like ``iter:`` fails loudly instead of silently.
TOP_LEVEL_SCHEMA: Dict[str, tuple] = {
    "_base_": (str, list),
    "model": (dict,),
    "train_dataset": (dict,),
    "val_dataset": (dict,),
    "test_dataset": (dict,),
    "loss": (dict,),
    "optimizer": (dict,),
    "lr_scheduler": (dict,),
    "iters": (int,),
    "batch_size": (int,),
    "train": (dict,),  # trainer options: log/save/eval intervals, ema, accum_steps, ...
    "val": (dict,),  # evaluation options: crop_border, test_y_channel, ...
    "infer": (dict,),  # predictor options: pad_multiple, tile, color handling, ...
    "export": (dict,),  # export options: input_shape, ...
    "task": (str,),  # human-readable task name, e.g. "deblur"
}


def _merge(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            if v.get("_inherited_", True) is False:
                out[k] = {kk: vv for kk, vv in v.items() if kk != "_inherited_"}
            else:
                out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _load_with_bases(path: str, _seen: Optional[List[str]] = None) -> Dict[str, Any]:
    path = os.path.abspath(path)
    seen = list(_seen or [])
    if path in seen:
        raise ConfigError(f"_base_ cycle: {' -> '.join(seen + [path])}")
    seen.append(path)
    cfg = _read_yaml(path)
    bases = cfg.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: Dict[str, Any] = {}
    for b in bases:
        merged = _merge(merged, _load_with_bases(os.path.join(os.path.dirname(path), b), seen))
    return _merge(merged, cfg)


def parse_override(item: str) -> tuple:
    """Split ``a.b.c=value`` into (["a","b","c"], parsed value)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.subkey=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}': empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # keep as a plain string, e.g. a path with a colon
    return key.split("."), value


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply dotted overrides; an unknown intermediate key is an error with a suggestion."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        parts, value = parse_override(item)
        node = cfg
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                if i == 0:
                    _check_key(p, TOP_LEVEL_SCHEMA, f"override '{item}'")
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(
                    f"override '{item}': '{'.'.join(parts[: i + 1])}' is a "
                    f"{type(node[p]).__name__}, not a mapping"
                )
            node = node[p]
        if len(parts) == 1:
            _check_key(parts[0], TOP_LEVEL_SCHEMA, f"override '{item}'")
        node[parts[-1]] = value
    return cfg


def _check_key(key: str, valid: Iterable[str], where: str) -> None:
    valid = list(valid)
    if key not in valid:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where}: unknown key '{key}'.{hint} Valid keys: {', '.join(valid)}")


def validate(cfg: Dict[str, Any], source: str = "config") -> Dict[str, Any]:
    """Check top-level keys and their types; return ``cfg`` unchanged."""
    for k, v in cfg.items():
        _check_key(k, TOP_LEVEL_SCHEMA, source)
        types = TOP_LEVEL_SCHEMA[k]
        if isinstance(v, bool) or not isinstance(v, types):
            want = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{source}: '{k}' must be a {want}, got {type(v).__name__} ({v!r})")
    for section in ("model", "train_dataset", "val_dataset", "test_dataset"):
        if section in cfg and "type" not in cfg[section]:
            raise ConfigError(f"{source}: '{section}' needs a 'type:' key")
    return cfg


def load_config(path: str, overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Load ``path`` with its bases, apply ``overrides`` and validate."""
    cfg = _load_with_bases(path)
    cfg = apply_overrides(cfg, overrides)
    return validate(cfg, source=path)


def save_config(cfg: Dict[str, Any], path: str) -> None:
    """Write the resolved config (after bases and overrides) next to a run's outputs."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
