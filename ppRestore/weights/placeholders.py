"""The inert placeholders a weights pickle's numpy globals are served by.

No real numpy object is built from attacker-chosen state while unpickling. The numpy
globals are served by inert placeholders (:class:`DTypeSpec`, :class:`ArraySpec`); a
dtype placeholder accepts only the plain numeric type codes in :data:`DTYPE_CODES` and
validates, but never applies, numpy's pickled dtype state (flags, field names,
sub-arrays, element size). Arrays are made at the very end by :func:`resolve`, through
``np.frombuffer(raw, whitelisted_dtype).reshape(shape)`` (then copied, native byte
order), after ``prod(shape) * itemsize == len(raw)`` is checked. A shape has at most
:data:`MAX_NDIM` dims of at most :data:`MAX_DIM` each.

Split out of :mod:`ppRestore.weights.unpickler` (the opcode-checked core, which
re-exports these names); the review of each allowed global is in
:mod:`ppRestore.weights.allowlist`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, Tuple

import numpy as np

from .errors import WeightsError
from .errors import refuse as _refuse
from .errors import short as _short

MAX_NDIM = 32
MAX_DIM = 1 << 40

# ------------------------------------------------------------------------------ dtypes

#: numpy type codes (as ``np.dtype.__reduce__`` writes them) that may occur in weights.
DTYPE_CODES: Dict[str, str] = {
    "b1": "bool", "?": "bool",
    "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
    "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
    "f2": "float16", "f4": "float32", "f8": "float64",
    "c8": "complex64", "c16": "complex128",
}  # fmt: skip


def numeric_dtype(code: Any, order: str = "=") -> np.dtype:
    """A real ``np.dtype`` for a whitelisted type code, with an explicit byte order."""
    if not isinstance(code, str) or not isinstance(order, str):
        raise _refuse(f"dtype {_short(code)}")
    if code[:1] in "<>|=" and code[:1]:
        order, code = code[0], code[1:]
    if code not in DTYPE_CODES or order not in ("<", ">", "|", "="):
        raise _refuse(f"dtype {_short(code)}: only plain numeric dtypes may occur in weights")
    dt = np.dtype(DTYPE_CODES[code])
    return dt if order in ("|", "=") or dt.itemsize == 1 else dt.newbyteorder(order)


class Placeholder:
    """Base of the inert stand-ins; unhashable so it can never be a dict key."""

    __hash__ = None  # type: ignore[assignment]

    def _setstate(self, state: Any) -> None:  # pragma: no cover - overridden
        raise _refuse(f"BUILD on {type(self).__name__}")


class DTypeSpec(Placeholder):
    """Stands in for ``numpy.dtype(code, align, copy)``; BUILD only validates."""

    def __init__(self, code: Any = None, align: Any = False, copy: Any = True) -> None:
        if type(align) is not bool or type(copy) is not bool:
            raise _refuse("numpy.dtype with non-bool align/copy")
        self.code, self.order, self.built = code, "=", False
        numeric_dtype(code)  # validate now: the error names the code

    def _setstate(self, state: Any) -> None:
        if self.built:
            raise _refuse("a second BUILD on a dtype")
        if type(state) is not tuple or len(state) not in (8, 9):
            raise _refuse(f"dtype state {_short(state)}")
        version, order, subarray, names, fields, elsize, alignment, flags = state[:8]
        extra = state[8:]
        if (
            version not in (3, 4)
            or order not in ("<", ">", "|", "=")
            or subarray is not None
            or names is not None
            or fields is not None
            or elsize != -1
            or alignment != -1
            or type(flags) is not int
            or any(x is not None for x in extra)
        ):
            raise _refuse(
                "dtype state with fields, sub-arrays, sizes or metadata: only plain numeric "
                "dtypes may occur in weights"
            )
        # ``flags`` is deliberately ignored: the real dtype comes from the code alone.
        self.order, self.built = order, True

    def dtype(self) -> np.dtype:
        return numeric_dtype(self.code, self.order)


#: Served for ``numpy.ndarray``: only accepted as ``_reconstruct``'s first argument.
NDARRAY_MARKER = object.__new__(type("ndarray_marker", (), {"__repr__": lambda s: "numpy.ndarray"}))


def _shape(shape: Any) -> Tuple[int, ...]:
    if type(shape) not in (tuple, list) or len(shape) > MAX_NDIM:
        raise _refuse(f"array shape {_short(shape)}")
    if not all(type(n) is int and 0 <= n <= MAX_DIM for n in shape):
        raise _refuse(f"array shape {tuple(shape)!r:.80}: dims must be ints in [0, 2**40]")
    return tuple(shape)


def raw_bytes(data: Any) -> bytes | bytearray:
    if isinstance(data, str):  # Python 2 pickles loaded with encoding='latin1'
        return data.encode("latin1")
    if type(data) in (bytes, bytearray):
        return data
    raise _refuse(f"array data of type {type(data).__name__}")


class ArraySpec(Placeholder):
    """Stands in for an ndarray being unpickled; :meth:`array` makes the real one."""

    def __init__(self) -> None:
        self.shape: Tuple[int, ...] | None = None
        self.dt: np.dtype | None = None
        self.raw: bytes | bytearray = b""
        self.fortran = False
        self._array: np.ndarray | None = None

    def fill(self, shape: Any, dtype: Any, fortran: Any, raw: Any) -> ArraySpec:
        if not isinstance(dtype, DTypeSpec):
            raise _refuse(f"array dtype {_short(dtype)}")
        if type(fortran) is not bool:
            raise _refuse("array order flag that is not a bool")
        shape, dt, raw = _shape(shape), dtype.dtype(), raw_bytes(raw)
        need = math.prod(shape) * dt.itemsize
        if need != len(raw):
            shown = f"{shape}" if len(str(shape)) <= 80 else f"{str(shape)[:77]}...)"
            needs = f"{need:,}" if need < 1 << 63 else "more than 2**63"
            raise WeightsError(
                f"array of shape {shown} {dt} needs {needs} bytes, the file holds {len(raw):,}"
            )
        self.shape, self.dt, self.raw, self.fortran = shape, dt, raw, fortran
        return self

    def _setstate(self, state: Any) -> None:
        if self.shape is not None:
            raise _refuse("a second BUILD on an array")
        if type(state) is not tuple or len(state) not in (4, 5):
            raise _refuse(f"array state {_short(state)}")
        if len(state) == 5:
            if state[0] != 1 or type(state[0]) is not int:
                raise _refuse(f"array state version {_short(state[0])}")
            state = state[1:]
        self.fill(*state)

    def array(self) -> np.ndarray:
        """The real array: a native-byte-order copy of the checked bytes."""
        if self.shape is None or self.dt is None:
            raise _refuse("an array without data (no BUILD)")
        if self._array is None:
            flat = np.frombuffer(self.raw, dtype=self.dt)
            arr = flat.reshape(self.shape, order="F" if self.fortran else "C")
            self._array = arr.astype(self.dt.newbyteorder("="), order="K", copy=True)
            self.raw = b""
        return self._array


# ------------------------------------------------------------------------------ resolve


def resolve(obj: Any, unwrap_paddle_tuples: bool = True) -> Any:
    """Turn placeholders into real arrays/dtypes everywhere in ``obj`` and (optionally)
    replace Paddle's ``(name, array)`` tensor tuples by the array, as ``paddle.load(...,
    return_numpy=True)`` does. Shared sub-objects are converted once (memo by ``id``), so
    a 'billion laughs' DAG stays linear; nesting beyond Python's recursion limit is an
    error (a state dict is a few levels deep)."""
    memo: Dict[int, Any] = {}

    def walk(o: Any) -> Any:
        t = type(o)
        if t is ArraySpec:
            return o.array()
        if t is DTypeSpec:
            return o.dtype()
        if t not in (dict, OrderedDict, list, tuple):
            if isinstance(o, Placeholder) or o is NDARRAY_MARKER:
                raise _refuse(f"a stray {type(o).__name__} in the data")
            return o
        key = id(o)
        if key in memo:
            return memo[key]
        if t is tuple:
            if (
                unwrap_paddle_tuples
                and len(o) == 2
                and type(o[0]) is str
                and type(o[1]) is ArraySpec
            ):
                out: Any = o[1].array()
            else:
                out = tuple(walk(v) for v in o)
        elif t is list:
            out = []
            memo[key] = out
            out.extend(walk(v) for v in o)
        else:
            out = t()
            memo[key] = out
            for k, v in o.items():
                out[k] = walk(v)
        memo[key] = out
        return out

    return walk(obj)
