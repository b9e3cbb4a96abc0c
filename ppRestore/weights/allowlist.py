"""Every global a weights pickle may name, and the stand-in served for it.

:class:`~ppRestore.weights.unpickler.RestrictedUnpickler` hands a pickle nothing but
:data:`ALLOWED_GLOBALS`: each entry is our own code (a stand-in function or an inert
placeholder from :mod:`ppRestore.weights.placeholders`); no real class or function is
ever handed to the pickle. The unpickler core calls these only through ``REDUCE``, after
checking that every list/tuple argument holds at most
:data:`~ppRestore.weights.unpickler.MAX_CONTAINER_LEN` items.

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

import pickle
from collections import OrderedDict
from typing import Any, Dict, Tuple

import numpy as np

from .errors import UnsafeWeightsError
from .errors import refuse as _refuse
from .errors import short as _short
from .placeholders import NDARRAY_MARKER, ArraySpec, DTypeSpec, raw_bytes

#: Int dict keys / set members stay below this: no crafted hash collisions (a dict of
#: 10**5 int keys equal modulo 2**61-1 costs O(n**2)).
_MAX_INT_KEY = 1 << 60


def _reconstruct(subtype: Any = None, shape: Any = None, typecode: Any = None) -> ArraySpec:
    if subtype is not NDARRAY_MARKER or shape not in ((0,), [0]) or typecode not in (b"b", "b"):
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
    dt, raw = dtype.dtype(), raw_bytes(data)
    if len(raw) != dt.itemsize:
        raise _refuse(f"numpy scalar of {len(raw)} bytes for a {dt.itemsize}-byte {dt}")
    return np.frombuffer(raw, dtype=dt)[0]


def check_key(k: Any) -> Any:
    """``k`` if it may be a dict key or set member (str, bytes, None, bool, small int)."""
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
    # Its length was already capped by the unpickler core (MAX_CONTAINER_LEN) before
    # the call, as for every list/tuple argument of every stand-in.
    if type(arg) not in (list, tuple):
        raise _refuse(f"{what}({_short(arg)}): only a list or tuple argument is allowed")
    return arg


def _tuple(*args: Any) -> tuple:
    if len(args) > 1:
        raise _refuse("builtins.tuple with several arguments")
    return tuple(_sequence(args[0], "builtins.tuple")) if args else ()


def _set(*args: Any) -> set:
    if len(args) > 1:
        raise _refuse("builtins.set with several arguments")
    return {check_key(x) for x in _sequence(args[0], "builtins.set")} if args else set()


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
        out[check_key(item[0])] = item[1]
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
    ("numpy", "ndarray"): NDARRAY_MARKER,
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
