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
* No real numpy object is built from attacker-chosen state while unpickling: the numpy
  globals are served by inert placeholders, and arrays are made at the very end from
  checked bytes (:mod:`ppRestore.weights.placeholders`).
* Resources: the pickle may be at most :func:`max_weights_bytes` long (2 GiB unless
  ``PPRESTORE_MAX_WEIGHTS_BYTES`` says otherwise; the largest file ppRestore ships or
  reads is ~198 MB), it may run at most :data:`MAX_OPCODES` opcodes, a list/tuple
  argument of a stand-in (the container stand-ins' items) holds at most
  :data:`MAX_CONTAINER_LEN` items, a shape at most 32 dims of at
  most 2**40 each; reads never ask for more bytes than the file has left. Arrays are
  made only of bytes that are really in the pickle, so memory is at most ~2x the file.

The allow-list itself, with the review of every allowed global (what it does with
hostile arguments), is :mod:`ppRestore.weights.allowlist`. This module is the
opcode-checked core; it re-exports the public names of ``errors``, ``placeholders``
and ``allowlist`` (the readers, tests and docs import them from here or from
``safe_load``).
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Callable, Dict, Tuple

from .allowlist import (  # noqa: F401 - re-exported
    ALLOWED_GLOBALS,
    check_key,
    codecs_encode,
    paddle_dense_tensor,
    refused_global,
)
from .errors import (  # noqa: F401 - re-exported
    DEFAULT_MAX_WEIGHTS_BYTES,
    UnsafeWeightsError,
    WeightsError,
    check_file_size,
    max_weights_bytes,
)
from .errors import refuse as _refuse
from .errors import short as _short
from .placeholders import (  # noqa: F401 - re-exported
    DTYPE_CODES,
    MAX_DIM,
    MAX_NDIM,
    ArraySpec,
    DTypeSpec,
    Placeholder,
    numeric_dtype,
    resolve,
)

# ------------------------------------------------------------------------------ limits

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


# ------------------------------------------------------------------------------ reader


def _ignorable_dict_state(state: Any) -> bool:
    """Whether a BUILD state on a plain dict may be dropped unapplied.

    ``torch.save(model.state_dict())`` pickles the OrderedDict's one attribute,
    ``_metadata`` (module name -> ``{'version': n}``, used by torch's own
    ``_load_from_state_dict`` hooks and meaningless here), as a BUILD state: every real
    torch state dict carries it (the official PMRID and CMFNet files among them). It is
    validated and dropped, never set: any other state stays refused.
    """
    if state is None or (type(state) is dict and not state):
        return True
    if type(state) is not dict or set(state) != {"_metadata"}:
        return False
    meta = state["_metadata"]
    return type(meta) in (dict, OrderedDict) and all(
        type(k) is str and type(v) is dict for k, v in meta.items()
    )


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
        # id of each stand-in REDUCE may call -> the name it is served for (messages).
        self._callables: Dict[int, str] = {}
        for table in (self.extra_globals, ALLOWED_GLOBALS):
            for (module, name), v in table.items():
                if callable(v):
                    self._callables.setdefault(id(v), f"{module}.{name}")

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
        for a in args:  # the container cap, for every stand-in at this one choke point
            if type(a) in (list, tuple) and len(a) > MAX_CONTAINER_LEN:
                what = self._callables[id(func)]
                raise _refuse(f"{what}() of {len(a):,} items (limit {MAX_CONTAINER_LEN:,})")
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
        if isinstance(inst, Placeholder):
            inst._setstate(state)
            if type(inst) is ArraySpec:
                self._spend_array(inst)
        elif type(inst) in (dict, OrderedDict) and _ignorable_dict_state(state):
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
            d[check_key(items[i])] = items[i + 1]
        self.append(d)

    def _target(self, types: tuple, what: str) -> Any:
        obj = self.stack[-1]
        if type(obj) not in types:
            raise _refuse(f"{what} on {type(obj).__name__}")
        return obj

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, OrderedDict), "SETITEM")[check_key(key)] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        d = self._target((dict, OrderedDict), "SETITEMS")
        for i in range(0, len(items) - 1, 2):
            d[check_key(items[i])] = items[i + 1]

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "APPEND").append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "APPENDS").extend(items)

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._target((set,), "ADDITEMS").update(check_key(x) for x in items)

    def _load_frozenset(self) -> None:
        items = self.pop_mark()
        self.append(frozenset(check_key(x) for x in items))

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
