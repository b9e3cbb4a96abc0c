"""The one safe way ppRestore reads weights.

``.pdparams`` files are pickles, and ``paddle.load`` (like ``pickle.load``) executes
whatever a crafted file tells it to. Here every pickle goes through
:class:`~ppRestore.weights.unpickler.RestrictedUnpickler`, which admits only the globals
a state dict needs (numpy arrays and dtypes, ordered dicts), serves each by an inert
stand-in that checks its arguments, controls every opcode that calls code, and caps the
file size, opcodes and array bytes (see :mod:`ppRestore.weights.unpickler` for the
review of each allowed global: :mod:`ppRestore.weights.allowlist`). ``.safetensors``
files are parsed by :mod:`ppRestore.weights.safetensors_reader`, with every header
offset checked against the file size before anything is read.

Loading into a model is strict by default (timm's rule): missing, unexpected or
mis-shaped keys are one error that lists them, never a silent partial load.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Union

import numpy as np

from ..files import atomic_write as _atomic_write
from .safetensors_reader import read_safetensors
from .unpickler import (
    ALLOWED_GLOBALS,
    RestrictedUnpickler,
    UnsafeWeightsError,
    WeightsError,
    check_file_size,
    codecs_encode,
    max_weights_bytes,
    paddle_dense_tensor,
    unpickle,
)
from .unpickler import loads as _loads

__all__ = [
    "RestrictedUnpickler", "UnsafeWeightsError", "WeightsError", "check_state_dict",
    "load_model_weights", "load_state_dict", "load_weights", "max_weights_bytes",
    "restricted_loads", "save_weights",
]  # fmt: skip

PathOrBytes = Union[str, os.PathLike, bytes]

# Kept under their old names: tests and docs refer to them.
_ALLOWED_GLOBALS = ALLOWED_GLOBALS
_codecs_encode = codecs_encode
_paddle_dense_tensor = paddle_dense_tensor


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; arrays come back as real
    ndarrays and Paddle's ``(name, array)`` tensor tuples as the array.

    Raises:
        UnsafeWeightsError: the pickle names a global outside the allow-list or uses an
            allowed one in a way a state dict never does.
        WeightsError: anything else that makes it unreadable (truncated, garbage, ...).
    """
    return _loads(data, source)


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
        return read_safetensors(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        check_file_size(path, size)  # before reading a byte: a sparse 5 GiB file stops here
        if size == 0:
            raise WeightsError(f"{path}: empty file (0 bytes)")
        if f.read(2) == b"PK":
            raise WeightsError(
                f"{path}: this is a zip archive (a PyTorch checkpoint?); convert it first "
                "with tools/convert_weights.py"
            )
        f.seek(0)
        obj = unpickle(f, size, path)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    return dict(obj)


def _as_numpy(v: Any) -> Any:
    """Paddle tensors -> numpy, recursively through dicts/lists/tuples, so the saved
    pickle never references a Paddle class (which :func:`load_weights` would refuse)."""
    if isinstance(v, dict):
        return (
            type(v)((k, _as_numpy(x)) for k, x in v.items())
            if type(v) in (dict, OrderedDict)
            else {k: _as_numpy(x) for k, x in v.items()}
        )
    if isinstance(v, (list, tuple)):
        return type(v)(_as_numpy(x) for x in v)
    if hasattr(v, "numpy") and not isinstance(v, (np.ndarray, np.generic)):
        return v.numpy()
    return v


def save_weights(state: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Atomically save a state dict (paddle tensors or numpy arrays) as ``.pdparams``
    (a plain pickle of numpy arrays, which ``paddle.load`` also reads) or ``.safetensors``
    (flat dict of arrays only)."""
    path = os.fspath(path)
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save

        bad = [
            k
            for k, v in arrays.items()
            if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf"
        ]
        if bad:
            raise WeightsError(
                f"{path}: .safetensors holds only numeric arrays; these entries are not: "
                f"{', '.join(repr(k) for k in bad[:10])} (save them as .pdparams instead)"
            )
        # safetensors' numpy writer dumps the raw buffer, so a non-contiguous (e.g.
        # transposed) array would be written scrambled: make every array C-contiguous
        # (np.require, not np.ascontiguousarray, which turns 0-d arrays into 1-d).
        blob = save({k: np.require(v, requirements="C") for k, v in arrays.items()})
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
            try:
                got = tuple(np.shape(state[k]))
            except (ValueError, TypeError):  # ragged nested lists have no shape
                got = ("?",)
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


def _model_dtype(t: Any) -> str:
    """numpy-style name of a model tensor's dtype (``paddle.float32`` -> ``float32``)."""
    return str(getattr(t, "dtype", "float32")).rsplit(".", 1)[-1]


def _checked_array(value: Any, key: str, where: str, want: str = "") -> np.ndarray:
    """``value`` as a numeric array of the model's dtype ``want``, or a one-line
    :class:`WeightsError` naming ``key``: a string, an object array or a NaN/Inf weight
    would otherwise fail deep inside Paddle or, worse, load and produce a black image.

    Dtype rule for a float parameter: float16/bfloat16/float32 weights are cast (exact
    for a float32 layer; a float16 layer rounds float32 as Paddle's AMP does); float64
    weights are cast only if every value is exactly representable (a float64 copy of
    float32 weights is common; rounding real float64 values would silently change the
    model); uint16 weights are read as bfloat16 bit patterns (that is how Paddle's
    ``.numpy()`` and ``paddle.save`` give bfloat16 tensors, e.g. from a bf16 O2 training
    run; no layer has uint16 weights); other int, uint and bool weights are refused (an
    integer tensor is never what a float layer was trained with). An integer parameter
    takes integer weights whose values fit.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{where}'{key}' is not an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise WeightsError(f"{where}'{key}' holds {arr.dtype} data, not numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise WeightsError(f"{where}'{key}' contains NaN or Inf (a diverged training run?)")
    if not want or want == arr.dtype.name or want not in _CASTABLE:
        return arr
    kind = np.dtype(want).kind if want != "bfloat16" else "f"
    if kind == "f":
        return _cast_float(arr, key, where, want)
    if kind in "iu" and arr.dtype.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise WeightsError(f"{where}'{key}' holds {arr.dtype} values outside {want}")
        return arr.astype(want)
    if kind == "b" and arr.dtype.kind == "b":
        return arr
    raise WeightsError(f"{where}'{key}' holds {arr.dtype} data; the model's parameter is {want}")


def _cast_float(arr: np.ndarray, key: str, where: str, want: str) -> np.ndarray:
    """``arr`` for a float parameter of dtype ``want`` (the rule in :func:`_checked_array`)."""
    if arr.dtype == np.uint16:
        # Paddle's .numpy() (and so paddle.save / a bf16 O2 training checkpoint) gives
        # bfloat16 tensors as their uint16 bit patterns; no layer has uint16 weights.
        if want == "bfloat16":
            return arr
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.kind != "f":
        raise WeightsError(
            f"{where}'{key}' holds {arr.dtype} data; the model's parameter is "
            f"{want}: refusing to load integer or bool weights into a float layer"
        )
    if not np.isfinite(arr).all():
        raise WeightsError(f"{where}'{key}' contains NaN or Inf (a diverged training run?)")
    if want == "bfloat16":
        return arr.astype(np.float32)  # Paddle rounds float32 to its bfloat16
    out = arr.astype(want)
    # Only float64 is checked: float32 -> float16 is the ordinary mixed-precision
    # cast Paddle itself makes; float64 -> float32 rounding is a silent model change.
    if not np.isfinite(out).all():
        raise WeightsError(f"{where}'{key}' holds {arr.dtype} values that overflow {want}")
    if arr.dtype == np.float64 and want != "float64" and not np.array_equal(out, arr):
        raise WeightsError(
            f"{where}'{key}' holds {arr.dtype} values that {want} cannot represent "
            f"exactly; cast the checkpoint to {want} yourself if the rounding is intended"
        )
    return out


_CASTABLE = {"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32",
             "int64", "uint8", "bool"}  # fmt: skip


def load_state_dict(
    model: Any, state: Mapping[str, Any], strict: bool = True, source: str = ""
) -> Dict[str, list]:
    """Load ``state`` into a ``paddle.nn.Layer``; strict unless told otherwise.

    A parameter shared between several sublayers appears under several keys in
    ``model.state_dict()``; every such key must carry the same value (a checkpoint that
    disagrees with itself is an error, not a last-write-wins).
    """
    where = f"{source}: " if source else ""
    model_state = model.state_dict()
    report = check_state_dict(model_state, state)
    bad = report["missing"] or report["unexpected"] or report["mismatched"]
    if bad and (strict or report["mismatched"]):
        raise WeightsError(
            f"{where}weights do not match {type(model).__name__}: {_format_report(report)}"
        )
    arrays = {
        k: _checked_array(state[k], k, where, _model_dtype(model_state[k]))
        for k in model_state
        if k in state
    }
    # Shared parameters: group keys by the tensor object they point to.
    groups: Dict[int, list] = {}
    for k, t in model_state.items():
        groups.setdefault(id(t), []).append(k)
    for keys in groups.values():
        present = [k for k in keys if k in state]
        for k in present[1:]:
            if not np.array_equal(arrays[present[0]], arrays[k]):
                raise WeightsError(
                    f"{where}'{present[0]}' and '{k}' name one shared "
                    "parameter but carry different values"
                )
    model.set_state_dict(arrays)
    return report


def load_model_weights(
    model: Any, spec: str, strict: bool = True, cache_dir: str | None = None
) -> Dict[str, list]:
    """Resolve ``spec`` (local file, https URL or zoo name), read it safely, load strictly;
    a foreign checkpoint is converted through the model's architecture first."""
    from .foreign import load_weights_into
    from .zoo import resolve_weights

    # A foreign checkpoint (official .pth, MegEngine .ckp) is converted for the model's
    # architecture and cached (weights/foreign.py); a zoo URL honours the config's mirror.
    path = resolve_weights(spec, cache_dir=cache_dir, mirror=getattr(model, "weights_mirror", None))
    return load_weights_into(model, path, strict=strict)
