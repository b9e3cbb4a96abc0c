"""A torch-free, numpy-only ``.safetensors`` reader with every offset checked.

Split out of :mod:`ppRestore.weights.safe_load` (which re-exports
:func:`read_safetensors` and uses it for ``.safetensors`` weights).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, BinaryIO, Dict, List, Tuple

import numpy as np

from .errors import WeightsError, check_file_size

__all__ = ["read_safetensors"]

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
        plan = _tensor_plan(path, header, size - 8 - n)
        return _read_tensors(f, path, plan, base=8 + n)


def _tensor_plan(path: str, header: Dict[str, Any], avail: int) -> List[Tuple[Any, ...]]:
    """``(start, end, name, dtype, shape, bf16)`` of every tensor in a safetensors
    ``header``, each checked against the ``avail`` data bytes; no two may overlap."""
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
        plan.append((start, end, k, dt, shape, info["dtype"] == "BF16"))
    by_offset = sorted(plan, key=lambda t: (t[0], t[1]))
    for a, b in zip(by_offset, by_offset[1:]):
        if b[0] < a[1]:
            raise _safetensors_error(path, f"tensors '{a[2]:.60}' and '{b[2]:.60}' overlap")
    return plan


def _read_tensors(
    f: BinaryIO, path: str, plan: List[Tuple[Any, ...]], base: int
) -> Dict[str, np.ndarray]:
    """The planned tensors of an open safetensors file whose data starts at ``base``."""
    out: Dict[str, np.ndarray] = {}
    # Each tensor is read on its own with seek + readinto (no mmap: a file truncated
    # while mapped would kill the process with SIGBUS).
    for start, end, k, dt, shape, bf16 in plan:
        buf = bytearray(end - start)
        f.seek(base + start)
        if f.readinto(buf) != len(buf):
            raise _safetensors_error(path, f"tensor '{k:.80}': the file ended early")
        arr = np.frombuffer(buf, dtype=dt)
        if bf16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        out[k] = arr.reshape(shape)
    return out
