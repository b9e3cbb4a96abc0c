"""The restricted unpickler every ppRestore weights pickle goes through.

``.pdparams``/``.pdopt`` files are pickles; ``pickle.load``/``paddle.load`` run whatever a
crafted file asks for. Refusing unknown *names* (``find_class``) is not enough: an
allowed name given hostile arguments or a hostile ``BUILD`` state is just as dangerous
(issue 15: ``numpy.dtype`` + ``BUILD`` gave an object dtype with its flags cleared, and
``scalar`` then read 8 chosen bytes as a ``PyObject*``; ``tuple()`` over a zero-stride
2**62-element array never ends). So here:

* The pure-Python ``pickle._Unpickler`` runs with its own copy of the opcode table, so
  every opcode that calls code or mutates an object is ours: ``REDUCE`` calls only our
  stand-ins, ``BUILD`` runs only on our placeholders (or is a no-op on a plain dict),
  ``NEWOBJ``/``NEWOBJ_EX``/``OBJ``/``INST`` are refused, ``SETITEM(S)``/``DICT`` only fill
  a real ``dict``/``OrderedDict``, ``APPEND(S)`` only a ``list``, ``ADDITEMS`` only a
  ``set``, and dict keys / set members are limited to ``str``, ``bytes``, ``None``,
  ``bool`` and ints below 2**60 (no crafted hash collisions: a ``dict`` of 10**5 int
  keys equal modulo 2**61-1 costs O(n**2)).
* No real numpy object is built from attacker-chosen state while unpickling. The numpy
  globals are served by inert placeholders (:class:`DTypeSpec`, :class:`ArraySpec`); a
  dtype placeholder accepts only the plain numeric type codes in :data:`DTYPE_CODES`
  and validates, but never applies, numpy's pickled dtype state (flags, field names,
  sub-arrays, element size). Arrays are made at the very end by
  ``np.frombuffer(raw, whitelisted_dtype).reshape(shape)`` (then copied, native byte
  order), after ``prod(shape) * itemsize == len(raw)`` is checked.
* Resources: the pickle may be at most :func:`max_weights_bytes` long (2 GiB unless
  ``PPRESTORE_MAX_WEIGHTS_BYTES`` says otherwise; the largest file ppRestore ships or
  reads is ~198 MB), it may run at most :data:`MAX_OPCODES` opcodes, a container
  stand-in takes at most :data:`MAX_CONTAINER_LEN` items, a shape at most 32 dims of at
  most 2**40 each; reads never ask for more bytes than the file has left. Arrays are
  made only of bytes that are really in the pickle, so memory is at most ~2x the file.

Review of every allowed global (what it does with hostile arguments):

======================================  =================================================
``numpy.dtype``                         :class:`DTypeSpec`: only a type code from
                                        :data:`DTYPE_CODES` (``b1 i1..i8 u1..u8 f2 f4
                                        f8 c8 c16``, optional ``<>|=`` prefix); align and
                                        copy must be bools. BUILD state: version 3/4,
                                        byte order ``<>|=``, names/fields/subarray/metadata
                                        ``None``, elsize/alignment ``-1``, flags an int
                                        that is checked and ignored. Anything else refused.
``numpy.ndarray``                       an inert marker, only accepted as
                                        ``_reconstruct``'s first argument; not callable.
``numpy[._]core.multiarray._reconstruct``  :class:`ArraySpec`: only ``(ndarray, (0,),
                                        b'b')``; BUILD state ``(1, shape, DTypeSpec,
                                        bool, bytes)`` checked as above. Object, void,
                                        structured and sub-array dtypes cannot occur.
``numpy[._]core.multiarray.scalar``     ``np.frombuffer(raw, dtype)[0]`` for a
                                        whitelisted dtype and exactly ``itemsize`` bytes.
``numpy[._]core.numeric._frombuffer``   protocol 5: bytes/bytearray + DTypeSpec +
                                        shape + ``'C'``/``'F'`` -> ArraySpec, same checks.
``builtins.tuple`` / ``set`` /          one optional list/tuple argument (never an
``frozenset``                           array, placeholder or other iterable), at most
                                        MAX_CONTAINER_LEN items; set members as dict keys.
``builtins.complex``                    only int/float arguments (no ``__complex__``
                                        call on an object, no string parsing).
``collections.OrderedDict``             a function returning a real OrderedDict, from
                                        nothing or a list/tuple of 2-item lists/tuples.
``_codecs.encode``                      only ``(str, 'latin1')`` of at most the file size.
``builtins.eval``                       never evaluates: only Paddle's DenseTensor form
                                        ``eval('data', {'data': array})``.
======================================  =================================================

The old ``numpy.dtypes.*DType`` rule is gone: numpy pickles dtypes through
``numpy.dtype`` (1.x and 2.x), and a dtype class called with hostile arguments is a
dtype constructor again.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Callable, Dict, Tuple

import numpy as np

# ------------------------------------------------------------------------------ errors


class WeightsError(ValueError):
    """Weights do not fit the model (missing/unexpected/mis-shaped keys) or are unreadable."""


class UnsafeWeightsError(WeightsError, pickle.UnpicklingError):
    """A weights file asked for something a state dict never contains.

    Also a :class:`WeightsError`, so a CLI that reports weights problems catches it too.
    """


# ------------------------------------------------------------------------------ limits

#: Default ceiling for any weights file (bytes); ``PPRESTORE_MAX_WEIGHTS_BYTES`` overrides.
DEFAULT_MAX_WEIGHTS_BYTES = 2 << 30
#: Opcodes one pickle may run (a real state dict needs ~25-30 per tensor, so this is
#: ~35k tensors). The pure-Python unpickler needs ~3 us and at worst ~250 bytes per
#: opcode (a 1 MB run of EMPTY_SET), so the cap bounds a crafted file to ~3 s and
#: ~250 MB. ``PPRESTORE_MAX_PICKLE_OPS`` raises it for an unusual but trusted file.
MAX_OPCODES = 1_000_000


def max_opcodes() -> int:
    raw = os.environ.get("PPRESTORE_MAX_PICKLE_OPS", "").strip()
    if not raw:
        return MAX_OPCODES
    if not raw.isdigit() or int(raw) <= 0:
        raise WeightsError(f"PPRESTORE_MAX_PICKLE_OPS must be a positive whole number, got {raw!r}")
    return int(raw)


#: Items a container stand-in (tuple/set/frozenset/OrderedDict) accepts.
MAX_CONTAINER_LEN = 1 << 20
MAX_NDIM = 32
MAX_DIM = 1 << 40
_MAX_INT_KEY = 1 << 60


def max_weights_bytes() -> int:
    """The documented ceiling for a weights file (and all array bytes read from one)."""
    raw = os.environ.get("PPRESTORE_MAX_WEIGHTS_BYTES", "")
    try:
        val = int(raw) if raw.strip() else DEFAULT_MAX_WEIGHTS_BYTES
    except ValueError:
        raise WeightsError(
            f"PPRESTORE_MAX_WEIGHTS_BYTES must be a whole number of bytes, got {raw!r}"
        ) from None
    if val <= 0:
        raise WeightsError(f"PPRESTORE_MAX_WEIGHTS_BYTES must be positive, got {raw!r}")
    return val


def check_file_size(path: str, size: int) -> None:
    """Refuse a weights file above :func:`max_weights_bytes` before reading any of it."""
    cap = max_weights_bytes()
    if size > cap:
        raise WeightsError(
            f"{path}: {size:,} bytes is above the {cap:,}-byte limit for a weights file "
            "(set PPRESTORE_MAX_WEIGHTS_BYTES to raise it)"
        )


# ------------------------------------------------------------------------------ dtypes

#: numpy type codes (as ``np.dtype.__reduce__`` writes them) that may occur in weights.
DTYPE_CODES: Dict[str, str] = {
    "b1": "bool", "?": "bool",
    "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
    "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
    "f2": "float16", "f4": "float32", "f8": "float64",
    "c8": "complex64", "c16": "complex128",
}  # fmt: skip


def _refuse(what: str) -> UnsafeWeightsError:
    return UnsafeWeightsError(f"refused {what} (the file may be malicious or not a state dict)")


def _short(obj: Any, n: int = 60) -> str:
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        s = repr(obj)
    else:
        s = f"<{type(obj).__name__}>"
    return s if len(s) <= n else s[: n - 3] + "..."


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


class _Placeholder:
    """Base of the inert stand-ins; unhashable so it can never be a dict key."""

    __hash__ = None  # type: ignore[assignment]

    def _setstate(self, state: Any) -> None:  # pragma: no cover - overridden
        raise _refuse(f"BUILD on {type(self).__name__}")


class DTypeSpec(_Placeholder):
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


_NDARRAY = object.__new__(type("ndarray_marker", (), {"__repr__": lambda s: "numpy.ndarray"}))


def _shape(shape: Any) -> Tuple[int, ...]:
    if type(shape) not in (tuple, list) or len(shape) > MAX_NDIM:
        raise _refuse(f"array shape {_short(shape)}")
    if not all(type(n) is int and 0 <= n <= MAX_DIM for n in shape):
        raise _refuse(f"array shape {tuple(shape)!r:.80}: dims must be ints in [0, 2**40]")
    return tuple(shape)


def _raw(data: Any) -> bytes | bytearray:
    if isinstance(data, str):  # Python 2 pickles loaded with encoding='latin1'
        return data.encode("latin1")
    if type(data) in (bytes, bytearray):
        return data
    raise _refuse(f"array data of type {type(data).__name__}")


class ArraySpec(_Placeholder):
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
        shape, dt, raw = _shape(shape), dtype.dtype(), _raw(raw)
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


# ------------------------------------------------------------------------------ stand-ins


def _reconstruct(subtype: Any = None, shape: Any = None, typecode: Any = None) -> ArraySpec:
    if subtype is not _NDARRAY or shape not in ((0,), [0]) or typecode not in (b"b", "b"):
        raise _refuse(f"numpy _reconstruct({_short(subtype)}, {_short(shape)}, {_short(typecode)})")
    return ArraySpec()


def _frombuffer(
    buf: Any = None, dtype: Any = None, shape: Any = None, order: Any = "C"
) -> ArraySpec:
    if order not in ("C", "F"):
        raise _refuse(f"numpy _frombuffer order {_short(order)}")
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    return ArraySpec().fill(shape, dtype, order == "F", buf)


def _scalar(dtype: Any = None, data: Any = None) -> Any:
    if not isinstance(dtype, DTypeSpec):
        raise _refuse(f"numpy scalar of dtype {_short(dtype)}")
    dt, raw = dtype.dtype(), _raw(data)
    if len(raw) != dt.itemsize:
        raise _refuse(f"numpy scalar of {len(raw)} bytes for a {dt.itemsize}-byte {dt}")
    return np.frombuffer(raw, dtype=dt)[0]


def _check_key(k: Any) -> Any:
    t = type(k)
    if t in (str, bytes, bool) or k is None:
        return k
    if t is int and -_MAX_INT_KEY < k < _MAX_INT_KEY:
        return k
    raise _refuse(
        f"dict key / set member of type {t.__name__}: only str, bytes, None, bool and "
        "ints below 2**60 are allowed"
    )


def _sequence(arg: Any, what: str) -> list | tuple:
    if type(arg) not in (list, tuple):
        raise _refuse(f"{what}({_short(arg)}): only a list or tuple argument is allowed")
    if len(arg) > MAX_CONTAINER_LEN:
        raise _refuse(f"{what}() of {len(arg):,} items (limit {MAX_CONTAINER_LEN:,})")
    return arg


def _tuple(*args: Any) -> tuple:
    if len(args) > 1:
        raise _refuse("builtins.tuple with several arguments")
    return tuple(_sequence(args[0], "builtins.tuple")) if args else ()


def _set(*args: Any) -> set:
    if len(args) > 1:
        raise _refuse("builtins.set with several arguments")
    return {_check_key(x) for x in _sequence(args[0], "builtins.set")} if args else set()


def _frozenset(*args: Any) -> frozenset:
    return frozenset(_set(*args))


def _complex(real: Any = 0, imag: Any = 0) -> complex:
    if type(real) not in (int, float, bool) or type(imag) not in (int, float, bool):
        raise _refuse("builtins.complex with arguments that are not numbers")
    return complex(real, imag)


def _ordered_dict(*args: Any) -> OrderedDict:
    if not args:
        return OrderedDict()
    if len(args) > 1:
        raise _refuse("collections.OrderedDict with several arguments")
    out: OrderedDict = OrderedDict()
    for item in _sequence(args[0], "collections.OrderedDict"):
        if type(item) not in (list, tuple) or len(item) != 2:
            raise _refuse("collections.OrderedDict item that is not a (key, value) pair")
        out[_check_key(item[0])] = item[1]
    return out


def codecs_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: pickle protocols 0-2 store ``bytes`` (here: the
    raw data of numpy arrays) as ``_codecs.encode(text, "latin1")``. Only that form is
    served; any other codec is refused (codecs can import modules by name)."""
    if type(text) is str and encoding in ("latin1", "latin-1") and errors == "strict":
        return text.encode("latin1")
    raise UnsafeWeightsError(
        f"refused to call global '_codecs.encode' on {_short(text)} with codec "
        f"{_short(encoding)}: only the "
        "latin1 text-to-bytes form pickle itself writes is allowed"
    )


def paddle_dense_tensor(expr: Any, env: Any = None, *rest: Any) -> Any:
    """Stand-in for ``builtins.eval``: ``paddle.save`` pickles a ``DenseTensor`` as
    ``eval('data', {'data': array})``. Only exactly that form is served, and nothing is
    ever evaluated; any other use of ``eval`` is refused."""
    if (
        expr == "data"
        and not rest
        and type(env) is dict
        and list(env) == ["data"]
        and isinstance(env["data"], (ArraySpec, np.ndarray))
    ):
        return env["data"]
    raise UnsafeWeightsError(
        f"refused to call global 'builtins.eval' on {_short(expr)}: weights may only use it "
        "in Paddle's DenseTensor form eval('data', {'data': array})"
    )


# (module, name) -> the stand-in served for it. This is everything ``paddle.save`` writes
# for a model/optimizer/LR-scheduler state dict or a nested dict of them (protocols 2-4),
# plus numpy's protocol-5 array form and plain containers/numbers. numpy moved ``core``
# to ``_core`` in 2.0, so both spellings are listed. Every entry is our own code; no
# real class or function is ever handed to the pickle (see the review above).
ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): DTypeSpec,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    # paddle.save turns a Tensor inside a nested container into tuple((name, array)).
    ("builtins", "tuple"): _tuple,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "complex"): _complex,
    ("_codecs", "encode"): codecs_encode,
    ("builtins", "eval"): paddle_dense_tensor,
}


def refused_global(module: str, name: str) -> UnsafeWeightsError:
    return UnsafeWeightsError(
        f"refused to load global '{module}.{name}': a weights file may only hold "
        "arrays, numbers, strings and containers (the file may be malicious or not a "
        "state dict)"
    )


# ------------------------------------------------------------------------------ reader


class _BoundedReader:
    """File wrapper whose ``read(n)`` never asks the OS for more than what is left, so a
    crafted FRAME/BINBYTES8 length cannot make Python allocate gigabytes up front."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self._f.read(n)
        self.left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self.left)
        got = self._f.readinto(view[:n])
        self.left -= got or 0
        return got or 0

    def readline(self) -> bytes:
        # Protocol 0 stores array data as one text line: bounded by the file, not less.
        line = self._f.readline(self.left)
        self.left -= len(line)
        return line


_D = pickle._Unpickler.dispatch
_op = {name: getattr(pickle, name)[0] for name in (
    "BUILD", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "DICT", "SETITEM", "SETITEMS",
    "APPEND", "APPENDS", "ADDITEMS", "FROZENSET", "BYTEARRAY8", "FRAME",
)}  # fmt: skip


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with a checked opcode table (see the module docstring).

    ``find_class`` refuses every name outside :data:`ALLOWED_GLOBALS` before anything
    runs; the overridden opcodes make sure the stand-ins are the only code reached.
    Subclasses extend :attr:`extra_globals` (the torch-zip reader does).
    """

    dispatch = dict(_D)
    extra_globals: Dict[Tuple[str, str], Any] = {}

    def __init__(self, file: BinaryIO, size: int, encoding: str = "latin1") -> None:
        self._reader = _BoundedReader(file, size)
        super().__init__(self._reader, encoding=encoding)
        self._size = size
        # Copies made by the stand-ins (items of list/tuple arguments, characters of
        # str/bytes arguments) and bytes turned into arrays are budgeted against the file
        # size: one BINGET of a big list or string fed to tuple()/_codecs.encode() again
        # and again, or many arrays sharing one raw buffer, would otherwise multiply it.
        self._work_left = size + max_opcodes()
        self._array_bytes_left = size
        self._callables = {id(v) for v in ALLOWED_GLOBALS.values() if callable(v)}
        self._callables |= {id(v) for v in self.extra_globals.values() if callable(v)}

    # -- names
    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocols 0-2 write ``__builtin__`` for ``builtins``) are
        # mapped first so the allow-list sees the name that would really be imported.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in self.extra_globals:
            return self.extra_globals[key]
        if key in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[key]
        raise refused_global(module, name)

    # -- the load loop, with an opcode budget
    def load(self) -> Any:
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        budget = limit = max_opcodes()
        try:
            while budget:
                budget -= 1
                key = read(1)
                if not key:
                    raise EOFError("pickle data was truncated")
                fn = dispatch.get(key[0])
                if fn is None:
                    raise pickle.UnpicklingError(f"invalid opcode {key!r}")
                fn(self)
        except pickle._Stop as stop:
            return stop.value
        raise UnsafeWeightsError(
            f"refused a pickle of more than {limit:,} opcodes (not a state dict; set "
            "PPRESTORE_MAX_PICKLE_OPS to raise the limit for a trusted file)"
        )

    # -- opcodes that call code
    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callables or type(args) is not tuple:
            raise _refuse(f"a call of {_short(func)}")
        self._work_left -= 1 + sum(
            len(a) for a in args if type(a) in (list, tuple, str, bytes, bytearray)
        )
        if self._work_left < 0:
            raise _refuse("a pickle whose calls copy more data than the file holds")
        out = func(*args)
        if type(out) is ArraySpec:  # _frombuffer
            self._spend_array(out)
        self.stack[-1] = out

    def _spend_array(self, spec: ArraySpec) -> None:
        self._array_bytes_left -= len(spec.raw)
        if self._array_bytes_left < 0:
            raise _refuse("arrays holding more bytes than the file (shared data)")

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, _Placeholder):
            inst._setstate(state)
            if type(inst) is ArraySpec:
                self._spend_array(inst)
        elif type(inst) in (dict, OrderedDict) and (
            state is None or (type(state) is dict and not state)
        ):
            pass
        else:
            raise _refuse(f"BUILD (__setstate__) on {type(inst).__name__}")

    def _refuse_newobj(self) -> None:
        raise _refuse("object creation (NEWOBJ/OBJ/INST): a state dict needs none")

    def _instantiate(self, klass: Any, args: Any) -> None:
        self._refuse_newobj()

    # -- opcodes that fill containers
    def _load_dict(self) -> None:
        items = self.pop_mark()
        d = {}
        for i in range(0, len(items) - 1, 2):
            d[_check_key(items[i])] = items[i + 1]
        self.append(d)

    def _target(self, types: tuple, what: str) -> Any:
        obj = self.stack[-1]
        if type(obj) not in types:
            raise _refuse(f"{what} on {type(obj).__name__}")
        return obj

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, OrderedDict), "SETITEM")[_check_key(key)] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        d = self._target((dict, OrderedDict), "SETITEMS")
        for i in range(0, len(items) - 1, 2):
            d[_check_key(items[i])] = items[i + 1]

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "APPEND").append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "APPENDS").extend(items)

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._target((set,), "ADDITEMS").update(_check_key(x) for x in items)

    def _load_frozenset(self) -> None:
        items = self.pop_mark()
        self.append(frozenset(_check_key(x) for x in items))

    def _load_bytearray8(self) -> None:
        # pickle's own version allocates the declared size before reading anything.
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._size:
            raise WeightsError(
                f"not a readable weights pickle (a {n:,}-byte buffer in a {self._size:,}-byte file)"
            )
        data = self.read(n)
        if len(data) != n:
            raise EOFError("pickle data was truncated")
        self.append(bytearray(data))

    dispatch[_op["REDUCE"]] = _load_reduce
    dispatch[_op["BUILD"]] = _load_build
    dispatch[_op["NEWOBJ"]] = _refuse_newobj
    dispatch[_op["NEWOBJ_EX"]] = _refuse_newobj
    dispatch[_op["OBJ"]] = _refuse_newobj
    dispatch[_op["DICT"]] = _load_dict
    dispatch[_op["SETITEM"]] = _load_setitem
    dispatch[_op["SETITEMS"]] = _load_setitems
    dispatch[_op["APPEND"]] = _load_append
    dispatch[_op["APPENDS"]] = _load_appends
    dispatch[_op["ADDITEMS"]] = _load_additems
    dispatch[_op["FROZENSET"]] = _load_frozenset
    dispatch[_op["BYTEARRAY8"]] = _load_bytearray8

    def _load_frame(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._reader.left:
            raise WeightsError(
                "not a readable weights pickle (pickle data was truncated: a "
                f"{n:,}-byte frame with {self._reader.left:,} bytes left)"
            )
        self._unframer.load_frame(n)

    dispatch[_op["FRAME"]] = _load_frame
    # INST (protocol 0) goes through find_class (refusing unknown names first), then
    # _instantiate, which refuses.


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
            if isinstance(o, _Placeholder) or o is _NDARRAY:
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


def unpickle(
    file: BinaryIO,
    size: int,
    source: str,
    unpickler: Callable[..., RestrictedUnpickler] = RestrictedUnpickler,
    **kw: Any,
) -> Any:
    """Unpickle ``size`` bytes from ``file`` with ``unpickler``; every failure becomes a
    one-line :class:`WeightsError` (or :class:`UnsafeWeightsError`) naming ``source``."""
    try:
        obj = unpickler(file, size, **kw).load()
        return resolve(obj)
    except UnsafeWeightsError as e:
        raise UnsafeWeightsError(f"{source}: {e}") from None
    except WeightsError as e:
        raise WeightsError(f"{source}: {e}") from None
    except RecursionError:
        raise WeightsError(f"{source}: not a readable weights pickle (nested too deeply)") from None
    except MemoryError:
        raise WeightsError(
            f"{source}: not a readable weights pickle (asks for too much memory)"
        ) from None
    except Exception as e:  # noqa: BLE001 - untrusted bytes: every failure is "unreadable"
        # A corrupt pickle makes the unpickler raise almost anything: UnpicklingError,
        # EOFError, ValueError, TypeError, KeyError, IndexError, struct.error, ...
        msg = " ".join(str(e).split())
        msg = msg if len(msg) <= 200 else msg[:197] + "..."
        raise WeightsError(
            f"{source}: not a readable weights pickle ({type(e).__name__}: {msg})"
        ) from None


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle in-memory ``data`` (see :func:`unpickle`)."""
    check_file_size(source, len(data))
    return unpickle(io.BytesIO(data), len(data), source)
