"""The one safe way ppRestore reads weights.

``.pdparams`` files are pickles, and ``paddle.load`` (like ``pickle.load``) executes
whatever a crafted file tells it to. Here every pickle goes through
:class:`RestrictedUnpickler`, which admits only the globals a state dict needs (numpy
arrays and dtypes, ordered dicts) and refuses anything else by name, before it runs.

Loading into a model is strict by default (timm's rule): missing, unexpected or
mis-shaped keys are one error that lists them, never a silent partial load.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import numpy as np

PathOrBytes = Union[str, os.PathLike, bytes]


class UnsafeWeightsError(pickle.UnpicklingError):
    """A weights file asked to import something a state dict never contains."""


class WeightsError(ValueError):
    """Weights do not fit the model (missing/unexpected/mis-shaped keys) or are unreadable."""


# (module, name) pairs a numpy/paddle state dict legitimately references. numpy moved
# ``core`` to ``_core`` in 2.0, so both spellings are listed.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        # numpy dtype classes (numpy.dtypes.Float32DType, ...) are data, not code.
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        raise UnsafeWeightsError(
            f"refused to load global '{module}.{name}': a weights file may only hold "
            "arrays, numbers, strings and containers (the file may be malicious or not a "
            "state dict)"
        )


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafeWeightsError as e:
        raise UnsafeWeightsError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{source}: not a readable weights pickle ({type(e).__name__}: {e})") from None


def _to_numpy_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_numpy_tree(v) for k, v in obj.items()}
    return obj


def load_weights(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read a state dict from ``.pdparams``/``.pdopt``/pickle or ``.safetensors``.

    Returns:
        A dict of parameter name -> ``np.ndarray`` (plus whatever plain values the file
        holds, e.g. Paddle's ``StructuredToParameterName@@`` table).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":
        raise WeightsError(
            f"{path}: this is a zip archive (a PyTorch checkpoint?); convert it first with "
            "tools/convert_weights.py"
        )
    obj = restricted_loads(data, source=path)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    return _to_numpy_tree(obj)


def _atomic_write(path: str, write_fn) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a crash or a
    full disk never leaves a half-written file under ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes 0600 files; use what open() would give
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _as_numpy(v: Any) -> Any:
    if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        return v.numpy()
    return v


def save_weights(state: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Atomically save a state dict (paddle tensors or numpy arrays) as ``.pdparams``
    (a plain pickle of numpy arrays, which ``paddle.load`` also reads) or ``.safetensors``."""
    path = os.fspath(path)
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save

        blob = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
        _atomic_write(path, lambda f: f.write(blob))
    else:
        _atomic_write(path, lambda f: pickle.dump(arrays, f, protocol=4))


def check_state_dict(
    model_state: Mapping[str, Any],
    state: Mapping[str, Any],
    ignore: Iterable[str] = ("StructuredToParameterName@@",),
) -> Dict[str, list]:
    """Compare a checkpoint against a model's ``state_dict()``.

    Returns:
        ``{"missing": [...], "unexpected": [...], "mismatched": [(key, ckpt, model)]}``.
    """
    ignore = set(ignore)
    keys = [k for k in state if k not in ignore]
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in keys if k not in model_state]
    mismatched = []
    for k in keys:
        if k in model_state:
            want = tuple(model_state[k].shape)
            got = tuple(np.shape(state[k]))
            if want != got:
                mismatched.append((k, got, want))
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _format_report(report: Dict[str, list], limit: int = 20) -> str:
    parts = []
    for kind in ("missing", "unexpected", "mismatched"):
        items = report[kind]
        if not items:
            continue
        if kind == "mismatched":
            names = [f"{k} (checkpoint {a}, model {b})" for k, a, b in items[:limit]]
        else:
            names = [str(k) for k in items[:limit]]
        more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
        parts.append(f"{len(items)} {kind} key(s): {', '.join(names)}{more}")
    return "; ".join(parts)


def load_state_dict(model: Any, state: Mapping[str, Any], strict: bool = True, source: str = "") -> Dict[str, list]:
    """Load ``state`` into a ``paddle.nn.Layer``; strict unless told otherwise.

    A parameter shared between several sublayers appears under several keys in
    ``model.state_dict()``; every such key must carry the same value (a checkpoint that
    disagrees with itself is an error, not a last-write-wins).
    """
    model_state = model.state_dict()
    report = check_state_dict(model_state, state)
    bad = report["missing"] or report["unexpected"] or report["mismatched"]
    if bad and (strict or report["mismatched"]):
        where = f"{source}: " if source else ""
        raise WeightsError(f"{where}weights do not match {type(model).__name__}: {_format_report(report)}")
    # Shared parameters: group keys by the tensor object they point to.
    groups: Dict[int, list] = {}
    for k, t in model_state.items():
        groups.setdefault(id(t), []).append(k)
    for keys in groups.values():
        present = [k for k in keys if k in state]
        for k in present[1:]:
            if not np.array_equal(np.asarray(state[present[0]]), np.asarray(state[k])):
                raise WeightsError(
                    f"{source + ': ' if source else ''}'{present[0]}' and '{k}' name one shared "
                    "parameter but carry different values"
                )
    to_load = {k: np.asarray(state[k]) for k in model_state if k in state}
    model.set_state_dict(to_load)
    return report


def load_model_weights(model: Any, spec: str, strict: bool = True, cache_dir: Optional[str] = None) -> Dict[str, list]:
    """Resolve ``spec`` (local file, https URL or zoo name), read it safely, load strictly."""
    from .zoo import resolve_weights

    path = resolve_weights(spec, cache_dir=cache_dir)
    state = load_weights(path)
    return load_state_dict(model, state, strict=strict, source=path)
