"""A torch-free reader for ``torch.save`` zip checkpoints (PyTorch >= 1.6).

``data.pkl`` is unpickled by :class:`~ppRestore.weights.unpickler.RestrictedUnpickler`
widened by exactly the two tensor-rebuild functions and the typed-storage names a state
dict needs, so nothing in the file can run code. Storages come from the zip's
``data/<key>`` members and are read under caps, because a zip is a compressed container
an attacker controls:

* every member is read through ``ZipFile.open(...).read(declared_size)`` (never more than
  it declares) and must then be exactly the declared size, with a CRC that matches;
* a member may not declare more than :func:`~ppRestore.weights.unpickler.max_weights_bytes`,
  all storages together neither, and a compressed member above 1 MiB may not expand more
  than :data:`MAX_RATIO` times (``torch.save`` stores members uncompressed; a 6 MB zip
  that inflates to 6 GiB is refused before anything is inflated);
* a storage must be exactly ``numel * itemsize`` bytes, as its persistent id says;
* a tensor view must have strides >= 1 on every dimension longer than 1 (a stride-0
  tensor turns a 4-byte storage into any number of elements), no more elements than its
  storage, and must stay inside it; the tensors rebuilt from one file may not add up to
  more than the byte ceiling either (many views of one storage would multiply it).
"""

from __future__ import annotations

import math
import os
import re
import zipfile
import zlib
from typing import Any, Dict, Tuple

import numpy as np

from .unpickler import (
    RestrictedUnpickler,
    UnsafeWeightsError,
    WeightsError,
    check_file_size,
    max_weights_bytes,
    unpickle,
)

#: Largest expansion accepted for a compressed zip member above 1 MiB.
MAX_RATIO = 100
#: Most members a checkpoint zip may list (one per storage; zipfile keeps a ~0.5 KB
#: object per entry, so a crafted central directory of 46-byte entries would multiply).
MAX_ZIP_ENTRIES = 100_000
_SMALL_MEMBER = 1 << 20


class TorchStorage:
    """Stands in for ``torch.<Type>Storage`` classes: only carries the numpy dtype."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


# Typed storages a state dict can reference. BFloat16 has no numpy dtype: its raw
# 16 bits are widened to float32 below.
STORAGES: Dict[str, TorchStorage] = {
    name: TorchStorage(name, dt)
    for name, dt in {
        "FloatStorage": "float32",
        "DoubleStorage": "float64",
        "HalfStorage": "float16",
        "BFloat16Storage": "bfloat16",
        "LongStorage": "int64",
        "IntStorage": "int32",
        "ShortStorage": "int16",
        "CharStorage": "int8",
        "ByteStorage": "uint8",
        "BoolStorage": "bool",
    }.items()
}


def open_zip(path: str) -> zipfile.ZipFile:
    """``ZipFile(path)`` after checking the file size and the number of entries the
    end-of-central-directory record declares (before zipfile parses them all)."""

    try:
        check_file_size(path, os.stat(path).st_size)
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # noqa: SLF001 - the stdlib's own EOCD parser
        if end is None:
            raise zipfile.BadZipFile("File is not a zip file")
        entries = end[zipfile._ECD_ENTRIES_TOTAL]  # noqa: SLF001
        if entries > MAX_ZIP_ENTRIES:
            raise WeightsError(
                f"{path}: the zip lists {entries:,} members (limit {MAX_ZIP_ENTRIES:,})"
            )
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{path}: not a zip archive ({e})") from None


def zip_member_bytes(zf: zipfile.ZipFile, name: str, path: str, limit: int) -> bytes:
    """Read one member without trusting its header: at most ``limit`` bytes declared, a
    sane compression ratio, exactly the declared size read, CRC checked by zipfile.
    Errors start with ``path: `` unless ``path`` is empty."""
    path = f"{path}: " if path else ""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsError(f"{path}'{name}' missing from the archive") from None
    declared = info.file_size
    if declared > limit:
        raise WeightsError(
            f"{path}zip member '{name}' declares {declared:,} bytes, above the "
            f"{limit:,}-byte limit (a zip bomb? set PPRESTORE_MAX_WEIGHTS_BYTES to raise it)"
        )
    if (
        info.compress_type != zipfile.ZIP_STORED
        and declared > _SMALL_MEMBER
        and declared > MAX_RATIO * max(info.compress_size, 1)
    ):
        raise WeightsError(
            f"{path}zip member '{name}' would expand {declared / max(info.compress_size, 1):,.0f}"
            f" times ({info.compress_size:,} -> {declared:,} bytes): refused as a zip bomb"
        )
    try:
        with zf.open(info) as f:
            data = f.read(declared)
            extra = f.read(1)  # reaching EOF makes zipfile check the CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise WeightsError(f"{path}corrupt zip member '{name}' ({e})") from None
    if len(data) != declared or extra:
        raise WeightsError(
            f"{path}corrupt zip member '{name}' (declares {declared:,} bytes, holds "
            f"{len(data) + len(extra):,}{'+' if extra else ''})"
        )
    return data


class TorchZipUnpickler(RestrictedUnpickler):
    """Restricted unpickler for a torch zip's ``data.pkl``; storages come from the zip."""

    def __init__(
        self, file: Any, size: int, zf: zipfile.ZipFile, prefix: str, byteorder: str, path: str
    ) -> None:
        self._zf, self._prefix, self._path = zf, prefix, path
        self._order = "<" if byteorder == "little" else ">"
        self._cache: Dict[str, np.ndarray] = {}
        self._budget = max_weights_bytes()  # storage bytes read + tensor bytes rebuilt
        # Bound methods made once, so the REDUCE check (by identity) recognises them.
        self.extra_globals = {
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
            **{("torch", n): s for n, s in STORAGES.items()},
        }
        super().__init__(file, size)

    def _spend(self, nbytes: int, what: str) -> None:
        self._budget -= nbytes
        if self._budget < 0:
            raise WeightsError(
                f"{what} takes the checkpoint above the {max_weights_bytes():,}-byte limit "
                "(set PPRESTORE_MAX_WEIGHTS_BYTES to raise it)"
            )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (type(pid) is tuple and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, TorchStorage):
            raise UnsafeWeightsError(f"unsupported storage type {storage_type!r:.80}")
        if type(key) is not str or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", key):
            raise UnsafeWeightsError(f"bad storage key {key!r:.80}")
        if type(numel) is not int or numel < 0:
            raise WeightsError(f"storage '{key}' has a bad element count {numel!r:.40}")
        if key not in self._cache:
            itemsize = (
                2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize
            )
            need = numel * itemsize
            self._spend(need, f"storage '{key}' ({need:,} bytes)")
            raw = zip_member_bytes(self._zf, f"{self._prefix}/data/{key}", "", max_weights_bytes())
            if len(raw) != need:
                raise WeightsError(
                    f"storage '{key}' holds {len(raw):,} bytes, its {numel:,} "
                    f"{storage_type.dtype} elements need {need:,}"
                )
            if storage_type.dtype == "bfloat16":
                bits = np.frombuffer(raw, dtype=self._order + "u2").astype(np.uint32) << 16
                arr = bits.view(np.float32)
            else:
                dt = np.dtype(storage_type.dtype).newbyteorder(self._order)
                arr = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
            self._cache[key] = arr
        return self._cache[key]

    def rebuild_tensor(
        self,
        storage: Any = None,
        storage_offset: Any = None,
        size: Any = None,
        stride: Any = None,
        *_ignored: Any,
    ) -> np.ndarray:
        """numpy twin of ``torch._utils._rebuild_tensor_v2``, with the geometry checked."""
        return rebuild_tensor(storage, storage_offset, size, stride, spend=self._spend)


def rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, spend: Any = None
) -> np.ndarray:
    """A copy of the view ``storage[offset + sum(i_k * stride_k)]`` of shape ``size``."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise UnsafeWeightsError("tensor rebuild without a storage")
    if type(size) not in (tuple, list) or type(stride) not in (tuple, list):
        raise WeightsError("bad tensor geometry (size/stride are not tuples)")
    size, stride = tuple(size), tuple(stride)
    ints = all(type(v) is int for v in size + stride) and type(storage_offset) is int
    if (
        not ints
        or len(size) != len(stride)
        or len(size) > 32
        or any(not 0 <= n <= 1 << 40 for n in size)
        or any(s < 0 or (s == 0 and n > 1) for n, s in zip(size, stride))
        or storage_offset < 0
    ):
        raise WeightsError(
            f"bad tensor geometry size={size!r:.60} stride={stride!r:.60} "
            f"offset={storage_offset!r:.20} (sizes and offset must be >= 0, strides >= 1)"
        )
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    # as_strided does no bounds checking: a crafted file could read arbitrary memory.
    if last >= storage.size or numel > storage.size:
        raise WeightsError(
            f"tensor of size {size} stride {stride} offset {storage_offset} overruns its "
            f"storage of {storage.size} elements"
        )
    if spend is not None:
        spend(numel * storage.itemsize, f"tensor of size {size}")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=[s * item for s in stride], writeable=False
    )
    return np.ascontiguousarray(view)


def rebuild_parameter(data: Any = None, *_ignored: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise UnsafeWeightsError("parameter rebuild without a tensor")
    return data


def read_torch_zip(path: str) -> Any:
    """Read a ``torch.save`` zip checkpoint into nested dicts of numpy arrays, torch-free."""
    with open_zip(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise WeightsError(f"{path}: not a PyTorch zip checkpoint (no single */data.pkl)")
        prefix = pkls[0][: -len("/data.pkl")]
        order = "little"
        if f"{prefix}/byteorder" in names:
            raw = zip_member_bytes(zf, f"{prefix}/byteorder", path, 16)
            order = raw.decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise WeightsError(f"{path}: unknown byte order {order!r:.20}")
        pkl = zip_member_bytes(zf, pkls[0], path, max_weights_bytes())
        import io

        return unpickle(
            io.BytesIO(pkl),
            len(pkl),
            path,
            unpickler=TorchZipUnpickler,
            zf=zf,
            prefix=prefix,
            byteorder=order,
            path=path,
        )


def _bytes_of(zf: zipfile.ZipFile) -> Tuple[int, int]:
    """(declared uncompressed bytes, compressed bytes) of all members."""
    return sum(i.file_size for i in zf.infolist()), sum(i.compress_size for i in zf.infolist())


def check_npz(path: str) -> None:
    """Refuse an ``.npz`` whose members declare more than the byte ceiling or expand like
    a zip bomb, before ``np.load`` inflates any of them."""
    try:
        with open_zip(path) as zf:
            total, _ = _bytes_of(zf)
            limit = max_weights_bytes()
            if total > limit:
                raise WeightsError(
                    f"{path}: members declare {total:,} bytes, above the {limit:,}-byte limit "
                    "(set PPRESTORE_MAX_WEIGHTS_BYTES to raise it)"
                )
            for info in zf.infolist():
                if (
                    info.compress_type != zipfile.ZIP_STORED
                    and info.file_size > _SMALL_MEMBER
                    and info.file_size > MAX_RATIO * max(info.compress_size, 1)
                ):
                    raise WeightsError(
                        f"{path}: member '{info.filename}' would expand "
                        f"{info.compress_size:,} -> {info.file_size:,} bytes: refused as a zip bomb"
                    )
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{path}: not a readable .npz ({e})") from None


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """Read an ``.npz`` (no pickles) after :func:`check_npz`; a corrupt member (bad CRC,
    truncated, not an array) is a one-line :class:`WeightsError`."""
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        if isinstance(e, WeightsError):
            raise
        msg = " ".join(str(e).split())[:200]
        raise WeightsError(f"{path}: not a readable .npz ({type(e).__name__}: {msg})") from None
