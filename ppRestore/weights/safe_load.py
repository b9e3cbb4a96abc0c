"""The one safe way ppRestore reads weights.

``.pdparams`` files are pickles, and ``paddle.load`` (like ``pickle.load``) executes
whatever a crafted file tells it to. Here every pickle goes through
:class:`RestrictedUnpickler`, which admits only the globals a state dict needs (numpy
arrays and dtypes, ordered dicts) and refuses anything else by name, before it runs.

Loading into a model is strict by default (timm's rule): missing, unexpected or
mis-shaped keys are one error that lists them, never a silent partial load.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import os
import pickle
import tempfile
from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Union

import numpy as np

PathOrBytes = Union[str, os.PathLike, bytes]


class WeightsError(ValueError):
    """Weights do not fit the model (missing/unexpected/mis-shaped keys) or are unreadable."""


class UnsafeWeightsError(WeightsError, pickle.UnpicklingError):
    """A weights file asked to import something a state dict never contains.

    Also a :class:`WeightsError`, so a CLI that reports weights problems catches it too.
    """


def _codecs_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: pickle protocols 0-2 store ``bytes`` (here: the
    raw data of numpy arrays) as ``_codecs.encode(text, "latin1")``. Only that form is
    served; any other codec is refused (codecs can import modules by name)."""
    if isinstance(text, str) and encoding in ("latin1", "latin-1") and errors == "strict":
        return text.encode("latin1")
    raise UnsafeWeightsError(
        f"refused to call global '_codecs.encode' with codec {encoding!r}: only the "
        "latin1 text-to-bytes form pickle itself writes is allowed"
    )


def _paddle_dense_tensor(expr: Any, env: Any = None, *rest: Any) -> np.ndarray:
    """Stand-in for ``builtins.eval``: ``paddle.save`` pickles a ``DenseTensor`` as
    ``eval('data', {'data': array})``. Only exactly that form is served, and nothing is
    ever evaluated; any other use of ``eval`` is refused."""
    if (
        expr == "data"
        and not rest
        and isinstance(env, dict)
        and list(env) == ["data"]
        and isinstance(env["data"], np.ndarray)
    ):
        return env["data"]
    shown = repr(expr)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise UnsafeWeightsError(
        f"refused to call global 'builtins.eval' on {shown}: weights may only use it in "
        "Paddle's DenseTensor form eval('data', {'data': array})"
    )


# (module, name) -> the object served for it. This is everything ``paddle.save`` writes
# for a model/optimizer/LR-scheduler state dict or a nested dict of them (protocols 2-4),
# plus numpy's protocol-5 array form and plain containers/numbers. numpy moved ``core``
# to ``_core`` in 2.0, so both spellings are listed (numpy 1.26 ships a ``_core`` shim).
# ``None`` means "import it normally"; a function is a safe stand-in for a dangerous
# builtin that Paddle's format uses in one fixed, harmless way.
_ALLOWED_GLOBALS: Dict[tuple, Any] = {
    ("collections", "OrderedDict"): None,
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    ("numpy.core.multiarray", "_reconstruct"): None,
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy._core.multiarray", "_reconstruct"): None,
    ("numpy._core.multiarray", "scalar"): None,
    # protocol 5 pickles of arrays: frombuffer(bytes, dtype).reshape(shape) -- data only.
    ("numpy.core.numeric", "_frombuffer"): None,
    ("numpy._core.numeric", "_frombuffer"): None,
    # paddle.save turns a Tensor inside a nested container into tuple((name, array)).
    ("builtins", "tuple"): None,
    ("builtins", "set"): None,
    ("builtins", "frozenset"): None,
    ("builtins", "complex"): None,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "eval"): _paddle_dense_tensor,
}


def _refuse(module: str, name: str) -> UnsafeWeightsError:
    return UnsafeWeightsError(
        f"refused to load global '{module}.{name}': a weights file may only hold "
        "arrays, numbers, strings and containers (the file may be malicious or not a "
        "state dict)"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`.

    ``find_class`` is the only door through which a pickle reaches code (``GLOBAL``,
    ``STACK_GLOBAL``, ``INST``, ``OBJ`` and the copyreg ``EXT`` opcodes all go through
    it), so checking names here stops a crafted file before anything runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocols 0-2 write ``__builtin__`` for ``builtins``) are
        # mapped first so the allow-list sees the name that would really be imported.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ALLOWED_GLOBALS:
            stand_in = _ALLOWED_GLOBALS[key]
            return stand_in if stand_in is not None else super().find_class(module, name)
        # numpy dtype classes (numpy.dtypes.Float32DType, ...) are data, not code.
        if module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier():
            return super().find_class(module, name)
        raise _refuse(module, name)


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises:
        UnsafeWeightsError: the pickle names a global outside the allow-list.
        WeightsError: anything else that makes it unreadable (truncated, garbage, ...).
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafeWeightsError as e:
        raise UnsafeWeightsError(f"{source}: {e}") from None
    except RecursionError:
        raise WeightsError(f"{source}: not a readable weights pickle (nested too deeply)") from None
    except MemoryError:
        raise WeightsError(
            f"{source}: not a readable weights pickle (asks for too much memory)"
        ) from None
    except Exception as e:  # noqa: BLE001 - untrusted bytes: every failure is "unreadable"
        # A corrupt pickle can make the unpickler (or numpy's __setstate__) raise almost
        # anything: UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
        # AttributeError, struct.error, UnicodeDecodeError, ImportError, ...
        msg = str(e)
        msg = msg if len(msg) <= 200 else msg[:197] + "..."
        raise WeightsError(
            f"{source}: not a readable weights pickle ({type(e).__name__}: {msg})"
        ) from None


def _is_paddle_tensor_tuple(obj: Any) -> bool:
    return (
        type(obj) is tuple
        and len(obj) == 2
        and isinstance(obj[0], str)
        and isinstance(obj[1], np.ndarray)
    )


def _unwrap_tensors(obj: Any) -> Any:
    """Replace Paddle's ``(name, array)`` tensor tuples by the array everywhere inside
    dicts/lists/tuples, as Paddle's own loader does with ``return_numpy=True``.

    Shared sub-objects are converted once (a memo keyed by ``id``), so a crafted file
    that references one dict from many places cannot make this walk blow up.
    """
    memo: Dict[int, Any] = {}

    def walk(o: Any) -> Any:
        if _is_paddle_tensor_tuple(o):
            return o[1]
        if not isinstance(o, (dict, list, tuple)):
            return o
        key = id(o)
        if key in memo:
            return memo[key]
        if isinstance(o, dict):
            out: Any = type(o)() if type(o) in (dict, OrderedDict) else {}
            memo[key] = out
            for k, v in o.items():
                out[k] = walk(v)
            return out
        if isinstance(o, list):
            out = []
            memo[key] = out
            out.extend(walk(v) for v in o)
            return out
        out = tuple(walk(v) for v in o)
        memo[key] = out
        return out

    return walk(obj)


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Read a ``.safetensors`` file; bfloat16 tensors (which numpy cannot hold) come back
    as float32, exactly (bf16 is the top half of an fp32)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        # With ml_dtypes imported (Paddle may do so) numpy knows bfloat16 and safetensors
        # returns such arrays; give float32 either way, as documented.
        return {
            k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v
            for k, v in load_file(path).items()
        }
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    except TypeError as e:
        if "bfloat16" not in str(e):
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    # bfloat16 present: parse the (simple, documented) format ourselves.
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise WeightsError(f"{path}: not a readable safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise WeightsError(f"{path}: not a readable safetensors file (header: {e})") from None
        data = f.read()
    out: Dict[str, np.ndarray] = {}
    for k, info in header.items():
        if k == "__metadata__":
            continue
        try:
            dt = info["dtype"]
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
            if not 0 <= start <= end <= len(data) or min(shape, default=1) < 0:
                raise ValueError("offsets out of range")
            raw = data[start:end]
            if dt == "BF16":
                u16 = np.frombuffer(raw, dtype="<u2")
                arr = (u16.astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dt]).newbyteorder("<"))
            out[k] = arr.reshape(shape).copy()
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(
                f"{path}: not a readable safetensors file (tensor '{k}': {e})"
            ) from None
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
        return _read_safetensors(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise WeightsError(f"{path}: empty file (0 bytes)")
    if data[:2] == b"PK":
        raise WeightsError(
            f"{path}: this is a zip archive (a PyTorch checkpoint?); convert it first with "
            "tools/convert_weights.py"
        )
    obj = restricted_loads(data, source=path)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    try:
        return dict(_unwrap_tensors(obj))
    except RecursionError:
        raise WeightsError(f"{path}: not a readable weights pickle (nested too deeply)") from None


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


def _checked_array(value: Any, key: str, where: str) -> np.ndarray:
    """``value`` as a numeric array, or a :class:`WeightsError` naming ``key``: a string,
    an object array or a NaN/Inf weight would otherwise fail deep inside Paddle or,
    worse, load and produce a black image."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{where}'{key}' is not an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise WeightsError(f"{where}'{key}' holds {arr.dtype} data, not numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise WeightsError(f"{where}'{key}' contains NaN or Inf (a diverged training run?)")
    return arr


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
    arrays = {k: _checked_array(state[k], k, where) for k in model_state if k in state}
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
