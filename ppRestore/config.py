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
import re
import reprlib
from typing import Any, Dict, Iterable, List

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
    "distill": (dict,),  # knowledge distillation: teacher, weights (ppRestore/compression)
    "qat": (dict,),  # quantisation-aware training for int8 deploy (ppRestore/compression/qat.py)
}


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` as a float (YAML 1.2; PyYAML's 1.1 rules
    make it the *string* "1e-4", so ``learning_rate: 1e-4`` would silently break) and
    refuses duplicate keys (a repeated ``iters:`` is a mistake, not "last one wins")."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except TypeError:
                continue  # unhashable keys: let PyYAML report them
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key '{key}' (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Writes strings that :class:`_Loader` would read as floats (``"1e5"``) quoted, and
    strings holding YAML line breaks other than ``\\n`` (NEL, LS, PS) double-quoted, where
    they are escaped (plain or single-quoted they would read back as spaces)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(c in value for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


def _yaml_load(stream: Any) -> Any:
    """What ``yaml.safe_load`` does, with :class:`_Loader`."""
    loader = _Loader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _short(value: Any) -> str:
    """A bounded repr for messages (a YAML alias bomb must not explode the error text)."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring = 2, 4, 4, 60
    text = r.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Most values a config may expand to, counting each use of a YAML alias again (a shipped
# config has a few hundred). Anchors and aliases are fine; a "billion laughs" (aliases of
# aliases, 9^8 values from 9 short lines) is refused in one line before any merge walks it.
MAX_CONFIG_NODES = 100_000


def _check_expansion(node: Any, where: str) -> None:
    """Refuse a recursive alias (``a: &a [*a]``) or a tree that would expand to more than
    :data:`MAX_CONFIG_NODES` values; linear in the number of *distinct* nodes (memoised
    by identity), so the check itself cannot be bombed."""
    sizes: Dict[int, int] = {}
    active: set = set()

    def size(n: Any) -> int:
        if not isinstance(n, (dict, list)):
            return 1
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{where}: a YAML alias refers to itself (recursive anchor)")
        active.add(key)
        total = 1
        for v in n.values() if isinstance(n, dict) else n:
            total += size(v)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{where}: expands to more than {MAX_CONFIG_NODES} values through YAML "
                    "aliases (an alias bomb?); refusing to load it"
                )
        active.discard(key)
        sizes[key] = total
        return total

    try:
        size(node)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None


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
            data = _yaml_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = " ".join(str(e.problem or e.context or "syntax error").split())
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - e.g. ValueError for a date like 2024-13-45
        raise ConfigError(f"{path}: not valid YAML: {type(e).__name__}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    _check_expansion(data, path)
    return data


def _strip_inherited(node: Any, _memo: Dict[int, Any] | None = None) -> Any:
    """Drop the ``_inherited_`` merge markers once merging is done (a marker left in a
    ``model:`` section would reach the constructor as an unknown argument).

    Shared sub-trees (YAML anchors/aliases) are visited once, so an alias bomb costs
    nothing here."""
    memo = {} if _memo is None else _memo
    if not isinstance(node, (dict, list)):
        return node
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, dict):
        out: Any = {}
        memo[id(node)] = out
        for k, v in node.items():
            if k != "_inherited_":
                out[k] = _strip_inherited(v, memo)
    else:
        out = []
        memo[id(node)] = out
        out.extend(_strip_inherited(v, memo) for v in node)
    return out


def _load_with_bases(path: str, _seen: List[str] | None = None) -> Dict[str, Any]:
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
        base_path = os.path.join(os.path.dirname(path), b)
        if not os.path.isfile(base_path):
            raise ConfigError(f"{path}: _base_ file not found: {b}")
        merged = _merge(merged, _load_with_bases(base_path, seen))
    merged = _merge(merged, cfg)
    return merged if _seen else _strip_inherited(merged)


def parse_override(item: str) -> tuple:
    """Split ``a.b.c=value`` into (["a","b","c"], parsed value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.subkey=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key segment")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except Exception:  # noqa: BLE001 - not YAML: keep it as a plain string (a path, ...)
        value = raw
    _check_expansion(value, f"override {key!r}")
    return key.split("."), value


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply dotted overrides; an unknown top-level key is an error with a suggestion.

    A segment that is an integer indexes into a list (``train_dataset.transforms.0.size=64``).
    Keys below the top level are checked later, by the constructor they are passed to.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r} must be a string like key.subkey=value")
        parts, value = parse_override(item)
        _check_key(parts[0], TOP_LEVEL_SCHEMA, f"override {item!r}")
        node: Any = cfg
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            above = ".".join(parts[:i])
            if isinstance(node, list):
                if not re.fullmatch(r"-?[0-9]+", p) or not -len(node) <= int(p) < len(node):
                    raise ConfigError(
                        f"override {item!r}: {above!r} is a list of "
                        f"{len(node)}; {p!r} is not a valid index"
                    )
                p = int(p)
            elif not isinstance(node, dict):
                raise ConfigError(
                    f"override {item!r}: {above!r} holds {type(node).__name__} "
                    f"{_short(node)}, not a mapping"
                )
            if last:
                node[p] = value
            else:
                if isinstance(node, dict) and (p not in node or node[p] is None):
                    node[p] = {}
                node = node[p]
    return cfg


def _check_key(key: str, valid: Iterable[str], where: str) -> None:
    valid = list(valid)
    if key not in valid:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(valid)}")


def validate(cfg: Dict[str, Any], source: str = "config") -> Dict[str, Any]:
    """Check top-level keys and their types; return ``cfg`` unchanged."""
    for k, v in cfg.items():
        if not isinstance(k, str):
            raise ConfigError(f"{source}: top-level keys must be names, got {_short(k)}")
        _check_key(k, TOP_LEVEL_SCHEMA, source)
        types = TOP_LEVEL_SCHEMA[k]
        if isinstance(v, bool) or not isinstance(v, types):
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise ConfigError(
                f"{source}: '{k}' must be {want}, got {type(v).__name__} ({_short(v)})"
            )
        if k in ("iters", "batch_size") and v < 1:
            raise ConfigError(f"{source}: '{k}' must be at least 1, got {v}")
    for section in ("model", "train_dataset", "val_dataset", "test_dataset"):
        if section in cfg:
            if "type" not in cfg[section]:
                raise ConfigError(f"{source}: '{section}' needs a 'type:' key")
            t = cfg[section]["type"]
            if not isinstance(t, str) or not t:
                raise ConfigError(
                    f"{source}: '{section}.type' must be a class name, got {_short(t)}"
                )
    from .config_checks import check_section_keys, check_sections_agree

    check_section_keys(cfg, source)
    check_sections_agree(cfg, source)
    return cfg


_TYPE_NAMES = {int: "an integer", str: "a string", dict: "a mapping", list: "a list"}


#: Folder that relative ``dataset_root`` paths are looked up under first (docs/data.md).
DATA_ENV = "PPRESTORE_DATA"


def dataset_root_candidates(root: str, config_path: str | None = None) -> List[str]:
    """Where a relative ``dataset_root`` may live, in the order tried: under
    ``$PPRESTORE_DATA``, the current folder, the config file's folder."""
    if os.path.isabs(root):
        return [root]
    out = []
    env = os.path.expanduser(os.environ.get(DATA_ENV, "").strip())
    if env:
        # The configs name datasets as data/<NAME>/... or ../shared/data/<name>; under
        # $PPRESTORE_DATA the same folder is <NAME>/... (the layout of docs/data.md).
        parts = [p for p in root.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        for prefix in (["shared", "data"], ["data"]):
            if parts[: len(prefix)] == prefix:
                parts = parts[len(prefix) :]
                break
        out.append(os.path.join(env, *parts))
    out.append(os.path.join(os.getcwd(), root))
    if config_path:
        out.append(os.path.join(os.path.dirname(os.path.abspath(config_path)), root))
    return [os.path.normpath(p) for p in out]


def _resolve_dataset_roots(cfg: Dict[str, Any], config_path: str) -> None:
    """Point each relative ``*_dataset.dataset_root`` at the first existing candidate
    (:func:`dataset_root_candidates`); a root found nowhere is left as written and the
    dataset names every place it looked when it is built."""
    for section, value in cfg.items():
        if not (isinstance(section, str) and section.endswith("_dataset")):
            continue
        root = value.get("dataset_root") if isinstance(value, dict) else None
        if not isinstance(root, str) or not root or os.path.isabs(root):
            continue
        for cand in dataset_root_candidates(root, config_path):
            if os.path.isdir(cand):
                value["dataset_root"] = cand
                break
        else:
            _UNRESOLVED[root] = dataset_root_candidates(root, config_path)


#: relative dataset_root -> the folders it was looked for in (for the error message).
_UNRESOLVED: Dict[str, List[str]] = {}


def load_config(path: str, overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Load ``path`` with its bases, apply ``overrides``, resolve relative dataset
    folders (:func:`dataset_root_candidates`) and validate. A ``path`` that does not
    exist here is looked up among the shipped configs (``configs/demo.yml`` works from
    any folder, also from an installed wheel)."""
    from .resources import find_config

    path = find_config(path)
    cfg = _load_with_bases(path)
    cfg = apply_overrides(cfg, overrides)
    _resolve_dataset_roots(cfg, path)
    return validate(cfg, source=path)


def save_config(cfg: Dict[str, Any], path: str) -> None:
    """Write the resolved config (after bases and overrides) next to a run's outputs."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(cfg, f, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
