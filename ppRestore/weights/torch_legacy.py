"""Read a legacy (pre-1.6, non-zip) ``torch.save`` checkpoint without torch.

SaoYan/DnCNN-PyTorch's ``logs/*/net.pth`` are in this format, so without this reader
every DnCNN zoo name would need torch. The layout (torch ``serialization._legacy_load``)
is five consecutive pickles and raw data::

    magic number (int) | protocol version (1001) | sys_info (dict)
    | the object, tensors as persistent ids ('storage', StorageType, key, location,
      numel, view_metadata) | the list of storage keys
    | for each key: int64 element count, then count * itemsize bytes

The object pickle goes through :class:`~.unpickler.RestrictedUnpickler` widened by the
tensor-rebuild functions and typed-storage names (as :mod:`.torch_reader` does for zips) and every storage is
bounds-checked against the file, so nothing in the file runs code or asks for memory
the file does not hold.
"""

from __future__ import annotations

import io
from typing import Any, Dict, Tuple

import numpy as np

from .torch_reader import STORAGES, TorchStorage, rebuild_tensor
from .unpickler import (
    RestrictedUnpickler,
    UnsafeWeightsError,
    WeightsError,
    check_file_size,
    unpickle,
)

MAGIC = 0x1950A86A20F9469CFC6C
#: The bytes a legacy torch file starts with: ``pickle.dumps(MAGIC, protocol=2)``.
MAGIC_PREFIX = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def is_legacy_torch(head: bytes) -> bool:
    """Does a file starting with ``head`` (>= 14 bytes) look like a legacy torch save?"""
    return head.startswith(MAGIC_PREFIX)


class _Pending:
    """A tensor whose storage bytes come later in the file."""

    def __init__(self, key: str, offset: int, size: tuple, stride: tuple) -> None:
        self.key, self.offset, self.size, self.stride = key, offset, size, stride


class _StorageRef:
    def __init__(self, key: str, dtype: str, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class _LegacyUnpickler(RestrictedUnpickler):
    """The object pickle: tensors become :class:`_Pending` until their storages are read."""

    def __init__(self, file: Any, size: int) -> None:
        self.storages: Dict[str, _StorageRef] = {}
        # Bound methods made once, so the REDUCE check (by identity) recognises them.
        self.extra_globals = {
            # torch < 0.4 wrote _rebuild_tensor (4 args); later _rebuild_tensor_v2.
            ("torch._utils", "_rebuild_tensor"): self.pending_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self.pending_tensor,
            ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter,
            **{("torch", n): st for n, st in STORAGES.items()},
        }
        super().__init__(file, size)

    def pending_tensor(
        self, storage: Any = None, offset: Any = 0, size: Any = (), stride: Any = (), *_: Any
    ) -> _Pending:
        if not isinstance(storage, _StorageRef):
            raise UnsafeWeightsError("tensor rebuild without a storage")
        if type(offset) is not int or type(size) not in (tuple, list):
            raise WeightsError("bad tensor geometry")
        if type(stride) not in (tuple, list):
            raise WeightsError("bad tensor geometry")
        return _Pending(storage.key, offset, tuple(size), tuple(stride))

    def rebuild_parameter(self, data: Any = None, *_: Any) -> _Pending:
        if not isinstance(data, _Pending):
            raise UnsafeWeightsError("parameter rebuild without a tensor")
        return data

    def persistent_load(self, pid: Any) -> Any:
        if not (type(pid) is tuple and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"unsupported persistent id {pid!r:.80}")
        stype, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(stype, TorchStorage) or type(numel) is not int or numel < 0:
            raise UnsafeWeightsError(f"unsupported storage {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError("storage views (pre-0.4 checkpoints) are not supported")
        return self.storages.setdefault(key, _StorageRef(key, stype.dtype, numel))


def _plain(f: io.BytesIO, path: str) -> Any:
    return unpickle(f, len(f.getbuffer()) - f.tell(), path)


def read_torch_legacy(path: str) -> Any:
    """Read a legacy torch checkpoint into nested dicts of numpy arrays (torch-free).

    Raises:
        WeightsError: one line naming ``path`` when the file is not such a checkpoint,
            is truncated, or its tensors overrun their storages.
    """
    import os

    check_file_size(path, os.path.getsize(path))  # before reading a byte of it
    with open(path, "rb") as fh:
        data = fh.read()
    f = io.BytesIO(data)
    obj, keys, storages, little = _read_pickles(f, path)
    arrays = _read_storages(f, path, keys, storages, "<" if little else ">")
    return _build(obj, arrays, path)


def _read_pickles(f: io.BytesIO, path: str) -> Tuple[Any, Any, Dict[str, _StorageRef], bool]:
    """The header pickles, the object pickle (tensors still :class:`_Pending`) and the
    storage key list; returns ``(object, keys, storages by key, little-endian?)``."""
    try:
        if _plain(f, path) != MAGIC:
            raise WeightsError(f"{path}: not a legacy PyTorch checkpoint (bad magic number)")
        _plain(f, path)  # protocol version
        info = _plain(f, path)
        little = not isinstance(info, dict) or info.get("little_endian", True)
        up = _LegacyUnpickler(f, len(f.getbuffer()) - f.tell())
        obj = up.load()
        keys = _plain(f, path)
    except UnsafeWeightsError as e:
        msg = str(e)
        raise UnsafeWeightsError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    except WeightsError as e:
        msg = str(e)
        if "legacy PyTorch checkpoint" in msg:
            raise
        msg = msg[len(path) + 2 :] if msg.startswith(f"{path}: ") else msg
        raise WeightsError(f"{path}: not a readable legacy PyTorch checkpoint ({msg})") from None
    except Exception as e:  # noqa: BLE001 - untrusted bytes: every failure is "unreadable"
        raise WeightsError(
            f"{path}: not a readable legacy PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from None
    return obj, keys, up.storages, little


def _read_storages(
    f: io.BytesIO, path: str, keys: Any, storages: Dict[str, _StorageRef], order: str
) -> Dict[str, np.ndarray]:
    """The raw storages after the pickles, in ``keys`` order, each checked against the
    size its pickle declared and the bytes left; native-byte-order flat arrays."""
    arrays: Dict[str, np.ndarray] = {}
    if not isinstance(keys, list):
        raise WeightsError(f"{path}: legacy checkpoint without a storage key list")
    total = len(f.getbuffer())
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise WeightsError(f"{path}: storage '{key}' is listed but never used")
        head = f.read(8)
        if len(head) != 8:
            raise WeightsError(f"{path}: truncated (storage '{key}' missing)")
        numel = int(np.frombuffer(head, dtype=order + "i8")[0])
        width = 2 if ref.dtype == "bfloat16" else np.dtype(ref.dtype).itemsize
        if numel != ref.numel or numel < 0 or numel * width > total - f.tell():
            raise WeightsError(f"{path}: storage '{key}' is truncated or mis-sized")
        raw = f.read(numel * width)
        if ref.dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder(order))
            arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        arrays[ref.key] = arr
    return arrays


def _build(obj: Any, arrays: Dict[str, np.ndarray], path: str, depth: int = 0) -> Any:
    """``obj`` with every :class:`_Pending` tensor made from its storage in ``arrays``."""
    if depth > 100:
        raise WeightsError(f"{path}: nested too deeply")
    if isinstance(obj, _Pending):
        if obj.key not in arrays:
            raise WeightsError(f"{path}: tensor refers to missing storage '{obj.key}'")
        return rebuild_tensor(arrays[obj.key], obj.offset, obj.size, obj.stride)
    if isinstance(obj, dict):
        return type(obj)((k, _build(v, arrays, path, depth + 1)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_build(v, arrays, path, depth + 1) for v in obj)
    return obj
