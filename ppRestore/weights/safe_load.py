"""The one safe way ppRestore reads weights.

``.pdparams`` files are pickles, and ``paddle.load`` (like ``pickle.load``) executes
whatever a crafted file tells it to. Here every pickle goes through
:class:`~ppRestore.weights.unpickler.RestrictedUnpickler`, which admits only the globals
a state dict needs (numpy arrays and dtypes, ordered dicts), serves each by an inert
stand-in that checks its arguments, controls every opcode that calls code, and caps the
file size, opcodes and array bytes (see :mod:`ppRestore.weights.unpickler` for the
review of each allowed global). ``.safetensors`` files are parsed here, with every
header offset checked against the file size before anything is read.

Loading into a model is strict by default (timm's rule): missing, unexpected or
mis-shaped keys are one error that lists them, never a silent partial load.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Union

import numpy as np

from ..files import atomic_write as _atomic_write
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


_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
    "BF16": "<u2",  # widened to float32 below
}  # fmt: skip
# The safetensors library allows 100 MB; JSON of tiny objects costs ~30x its size in
# Python objects, and a real header needs ~150 bytes per tensor (16 MB: ~100k tensors).
_SAFETENSORS_MAX_HEADER = 16 << 20


def _safetensors_error(path: str, why: str) -> WeightsError:
    return WeightsError(f"{path}: not a readable safetensors file ({why})")


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Read a ``.safetensors`` file with every offset checked against the file size.

    Each tensor is read on its own (seek + readinto), so nothing is read
    that the header does not point at, tensors may not overlap (which would multiply the
    memory a small file costs) and the file must be under :func:`max_weights_bytes`.
    bfloat16 tensors (which numpy cannot hold) come back as float32, exactly (bf16 is the
    top half of an fp32).
    """
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    check_file_size(path, size)
    if size < 8:
        raise _safetensors_error(path, f"{size} bytes is too short")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 1 or n > min(size - 8, _SAFETENSORS_MAX_HEADER):
            raise _safetensors_error(path, f"header length {n:,} in a {size:,}-byte file")
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError) as e:
            raise _safetensors_error(path, f"header: {type(e).__name__}") from None
        if not isinstance(header, dict):
            raise _safetensors_error(path, "header is not a JSON object")
        base, avail = 8 + n, size - 8 - n
        plan = []
        for k, info in header.items():
            if k == "__metadata__":
                continue
            try:
                dt = _SAFETENSORS_DTYPES[info["dtype"]]
                shape = tuple(info["shape"])
                if not all(type(s) is int and 0 <= s <= 1 << 40 for s in shape) or len(shape) > 32:
                    raise ValueError(f"bad shape {shape!r:.60}")
                start, end = info["data_offsets"]
                if type(start) is not int or type(end) is not int or not 0 <= start <= end <= avail:
                    raise ValueError(f"offsets {start!r:.20}..{end!r:.20} outside the data")
                need = math.prod(shape) * np.dtype(dt).itemsize
                if need != end - start:
                    raise ValueError(
                        f"shape {shape} needs {need:,} bytes, offsets give {end - start:,}"
                    )
            except (KeyError, TypeError, ValueError) as e:
                raise _safetensors_error(path, f"tensor '{k:.80}': {e}") from None
            plan.append((start, end, k, dt, shape))
        by_offset = sorted(plan, key=lambda t: (t[0], t[1]))
        for a, b in zip(by_offset, by_offset[1:]):
            if b[0] < a[1]:
                raise _safetensors_error(path, f"tensors '{a[2]:.60}' and '{b[2]:.60}' overlap")
        out: Dict[str, np.ndarray] = {}
        # Each tensor is read on its own with seek + readinto (no mmap: a file truncated
        # while mapped would kill the process with SIGBUS).
        for start, end, k, dt, shape in plan:
            buf = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buf) != len(buf):
                raise _safetensors_error(path, f"tensor '{k:.80}': the file ended early")
            arr = np.frombuffer(buf, dtype=dt)
            if header[k]["dtype"] == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            elif not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))
            out[k] = arr.reshape(shape)
    return out


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
    if kind in "iu" and arr.dtype.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise WeightsError(f"{where}'{key}' holds {arr.dtype} values outside {want}")
        return arr.astype(want)
    if kind == "b" and arr.dtype.kind == "b":
        return arr
    raise WeightsError(f"{where}'{key}' holds {arr.dtype} data; the model's parameter is {want}")


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
