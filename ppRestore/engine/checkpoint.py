"""Crash-safe checkpoints: ``save_dir/iter_N/`` written atomically.

Layout of one checkpoint folder::

    iter_N/model.pdparams       model weights (ppRestore.weights.safe_load.save_weights)
    iter_N/model_ema.pdparams   EMA weights (when EMA is on)
    iter_N/model.pdopt          optimizer state, keyed by *structured* parameter names
    iter_N/train_state.json     iteration, epoch position, scheduler, RNG states, best metric
    iter_N/COMPLETE             written last: the folder is whole

Writing goes to a hidden ``.iter_N.tmp-XXXX`` folder; each file is fsynced, the marker
is written, the folder is renamed to ``iter_N`` and the parent folder is fsynced. A
``kill -9`` or a full disk at any point therefore leaves either the previous complete
checkpoints untouched, or one more complete checkpoint -- never a half one under a
real name. :func:`find_latest` ignores anything without the marker.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from typing import Any, Dict, List

import numpy as np

from ..weights.safe_load import load_weights, save_weights

MARKER = "COMPLETE"
_ITER_RE = re.compile(r"^iter_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the run."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. ENOSPC); the message names the path.
    The previous complete checkpoints are untouched (the save is atomic)."""


# train_state.json keys resume() needs
_STATE_KEYS = ("iteration", "epoch", "batch_in_epoch", "lr_scheduler", "rng")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: str, obj: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- RNG state
def get_rng_states() -> Dict[str, Any]:
    """Python, numpy and paddle (CPU generator) RNG states as JSON-able values."""
    import paddle

    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "paddle": [list(s.__getstate__()) for s in paddle.get_rng_state()],
    }


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    import paddle

    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = states["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if states.get("paddle"):
        cls = type(paddle.get_rng_state()[0])
        restored = []
        for s in states["paddle"]:
            obj = cls.__new__(cls)
            obj.__setstate__(tuple(s))
            restored.append(obj)
        paddle.set_rng_state(restored)


# ------------------------------------------------------------ optimizer key remapping
def _param_name_map(model: Any) -> Dict[str, str]:
    """paddle's unique tensor name (``conv2d_3.w_0``) -> structured name (``body.0.weight``)."""
    return {p.name: n for n, p in model.named_parameters()}


def _remap_keys(state: Dict[str, Any], mapping: Dict[str, str]) -> Dict[str, Any]:
    """Rename optimizer accumulator keys ``<prefix>_moment1_0`` by the longest matching prefix.

    Paddle keys optimizer state by global tensor names, which depend on how many layers
    were created before in the process; structured names make a checkpoint loadable in
    any process (a notebook, a test) that builds the same model.
    """
    prefixes = sorted(mapping, key=len, reverse=True)
    out: Dict[str, Any] = {}
    for k, v in state.items():
        new = k
        for p in prefixes:
            if k == p or k.startswith(p + "_"):
                new = mapping[p] + k[len(p) :]
                break
        out[new] = v
    return out


def _plain(obj: Any) -> Any:
    """Paddle tensors -> numpy, recursively (for the optimizer's nested dicts)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if hasattr(obj, "numpy") and not isinstance(obj, np.ndarray):
        return obj.numpy()
    return obj


def optimizer_state(optimizer: Any, model: Any) -> Dict[str, Any]:
    """The optimizer's state dict with structured names, as numpy."""
    state = _plain(optimizer.state_dict())
    mapping = _param_name_map(model)
    out = _remap_keys(
        {k: v for k, v in state.items() if k not in ("master_weights", "LR_Scheduler")}, mapping
    )
    if "master_weights" in state:
        out["master_weights"] = _remap_keys(state["master_weights"], mapping)
    if "LR_Scheduler" in state:  # paddle insists on it when loading; plain numbers
        out["LR_Scheduler"] = state["LR_Scheduler"]
    return out


def check_optimizer_state(model: Any, state: Dict[str, Any], source: str = "") -> None:
    """Refuse, in one line, an optimizer state that belongs to another model: every array
    entry must be an accumulator of one of ``model``'s parameters (structured name +
    ``_suffix``) with that parameter's shape or a single element (beta-power counters).
    Paddle itself ignores unknown entries and only fails at the first step, with an
    assertion traceback, on mis-shaped ones."""
    where = f"{source}: " if source else ""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    prefixes = sorted(shapes, key=len, reverse=True)
    foreign, wrong = [], []
    for k, v in state.items():
        if k in ("LR_Scheduler", "master_weights") or not hasattr(v, "shape"):
            continue
        owner = next((p for p in prefixes if k.startswith(p + "_")), None)
        if owner is None:
            foreign.append(k)
        elif tuple(v.shape) != shapes[owner] and int(np.prod(v.shape)) != 1:
            wrong.append(f"'{k}' is {tuple(v.shape)}, parameter '{owner}' is {shapes[owner]}")
    if foreign or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} mis-shaped entries ({'; '.join(wrong[:3])})")
        if foreign:
            parts.append(
                f"{len(foreign)} entries for parameters this model does not have "
                f"({', '.join(repr(k) for k in foreign[:3])})"
            )
        raise CheckpointError(
            f"{where}model.pdopt does not match the model ({', '.join(parts)}): an optimizer "
            "state from another model? Start without --resume_model, or use "
            "model.pretrained to load only the weights"
        )


def load_optimizer_state(
    optimizer: Any, model: Any, state: Dict[str, Any], source: str = ""
) -> None:
    """Inverse of :func:`optimizer_state`; refuses another model's state (see
    :func:`check_optimizer_state`)."""
    check_optimizer_state(model, state, source)
    inverse = {v: k for k, v in _param_name_map(model).items()}
    st = _remap_keys(
        {k: v for k, v in state.items() if k not in ("master_weights", "LR_Scheduler")}, inverse
    )
    if "LR_Scheduler" in state:
        st["LR_Scheduler"] = state["LR_Scheduler"]
    if "master_weights" in state:
        st["master_weights"] = _remap_keys(state["master_weights"], inverse)
    optimizer.set_state_dict(st)


# ------------------------------------------------------------------------- save / find
def save_checkpoint(
    save_dir: str,
    iteration: int,
    model: Any,
    optimizer: Any,
    train_state: Dict[str, Any],
    ema_state: Dict[str, Any] | None = None,
    name: str | None = None,
) -> str:
    """Atomically write ``save_dir/<name or iter_N>/``; returns its path."""
    name = name or f"iter_{iteration}"
    os.makedirs(save_dir, exist_ok=True)
    final = os.path.join(save_dir, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=save_dir)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a checkpoint folder should be shareable
        save_weights(model.state_dict(), os.path.join(tmp, "model.pdparams"))
        if ema_state is not None:
            save_weights(ema_state, os.path.join(tmp, "model_ema.pdparams"))
        if optimizer is not None:
            save_weights(optimizer_state(optimizer, model), os.path.join(tmp, "model.pdopt"))
        _write_json(
            os.path.join(tmp, "train_state.json"), dict(train_state, iteration=int(iteration))
        )
        _write_json(os.path.join(tmp, MARKER), {"iteration": int(iteration)})
        _fsync_dir(tmp)
        old = None
        if os.path.exists(final):  # e.g. best_model/ or a re-save after resume
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=save_dir)
            os.rmdir(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(save_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        where = getattr(e, "filename", None) or tmp
        err = CheckpointWriteError(
            f"cannot write checkpoint {final} ({e.strerror or e} at {where}); the earlier "
            "checkpoints are intact"
        )
        err.errno = e.errno  # one-line message, errno kept for callers
        raise err from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def is_complete(path: str) -> bool:
    """A checkpoint folder counts only if its marker and files are there."""
    return all(
        os.path.isfile(os.path.join(path, f))
        for f in (MARKER, "model.pdparams", "train_state.json")
    )


def list_checkpoints(save_dir: str) -> List[tuple]:
    """``[(iteration, path)]`` of complete ``iter_N`` folders, oldest first."""
    if not os.path.isdir(save_dir):
        return []
    out = []
    for d in os.listdir(save_dir):
        m = _ITER_RE.match(d)
        if m and is_complete(os.path.join(save_dir, d)):
            out.append((int(m.group(1)), os.path.join(save_dir, d)))
    return sorted(out)


def non_finite_params(state: Dict[str, Any]) -> str | None:
    """``"N of M tensors, first: NAME"`` when any weight is NaN/Inf, else None."""
    bad = []
    for k, v in state.items():
        a = v.numpy() if hasattr(v, "numpy") and not isinstance(v, np.ndarray) else v
        a = np.asarray(a)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad.append(k)
    return f"{len(bad)} of {len(state)} tensors are NaN/Inf, first: {bad[0]}" if bad else None


def find_latest_good(save_dir: str) -> str | None:
    """Newest complete checkpoint whose weights are all finite (older versions could
    save NaN weights), or None."""
    for _, path in reversed(list_checkpoints(save_dir)):
        try:
            if non_finite_params(load_weights(os.path.join(path, "model.pdparams"))) is None:
                return path
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is not a good one
            continue
    return None


def find_latest(save_dir: str) -> str | None:
    """Newest complete checkpoint folder in ``save_dir`` (None when there is none)."""
    cks = list_checkpoints(save_dir)
    return cks[-1][1] if cks else None


def clean_stale(save_dir: str) -> None:
    """Remove leftovers of interrupted saves (``.iter_N.tmp-*``, ``.*.old-*``)."""
    if not os.path.isdir(save_dir):
        return
    for d in os.listdir(save_dir):
        if d.startswith(".") and (".tmp-" in d or ".old-" in d):
            shutil.rmtree(os.path.join(save_dir, d), ignore_errors=True)


def prune(save_dir: str, keep: int) -> None:
    """Keep only the newest ``keep`` complete ``iter_N`` folders (``keep <= 0``: keep all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(save_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint folder: ``{"model", "optimizer", "ema", "train_state"}``."""
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint folder not found: {path}")
    if not is_complete(path):
        raise CheckpointError(
            f"{path} is incomplete (no {MARKER} marker): the save was interrupted"
        )
    state_file = os.path.join(path, "train_state.json")
    try:
        with open(state_file, encoding="utf-8") as f:
            train_state = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(
            f"{state_file}: corrupt or partial ({' '.join(str(e).split())}); resume from an "
            "earlier iter_N folder"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{state_file}: cannot read ({e.strerror or e})") from None
    # the weights first: a crafted model.pdparams is reported as such whatever the state
    out: Dict[str, Any] = {
        "model": load_weights(os.path.join(path, "model.pdparams")),
        "train_state": train_state,
    }
    missing = (
        [k for k in _STATE_KEYS if k not in train_state]
        if isinstance(train_state, dict)
        else list(_STATE_KEYS)
    )
    if missing:
        raise CheckpointError(
            f"{state_file}: corrupt or partial (missing {', '.join(missing)}); resume from "
            "an earlier iter_N folder"
        )
    opt = os.path.join(path, "model.pdopt")
    out["optimizer"] = load_weights(opt) if os.path.isfile(opt) else None
    ema = os.path.join(path, "model_ema.pdparams")
    out["ema"] = load_weights(ema) if os.path.isfile(ema) else None
    return out


def resolve_resume(resume: str | None, save_dir: str) -> str | None:
    """``auto`` -> newest complete checkpoint in ``save_dir`` (None: start fresh); else the path."""
    if not resume:
        return None
    if resume == "auto":
        return find_latest(save_dir)
    return resume
