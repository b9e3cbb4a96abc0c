"""Weights errors and the file-size ceiling every weights reader checks.

Split out of :mod:`ppRestore.weights.unpickler` (which re-exports every name here) so
the placeholders, the allow-list and the unpickler core can all raise the same errors.
"""

from __future__ import annotations

import os
import pickle
from typing import Any


class WeightsError(ValueError):
    """Weights do not fit the model (missing/unexpected/mis-shaped keys) or are unreadable."""


class UnsafeWeightsError(WeightsError, pickle.UnpicklingError):
    """A weights file asked for something a state dict never contains.

    Also a :class:`WeightsError`, so a CLI that reports weights problems catches it too.
    """


def refuse(what: str) -> UnsafeWeightsError:
    """The one-line refusal every check in the restricted unpickler raises."""
    return UnsafeWeightsError(f"refused {what} (the file may be malicious or not a state dict)")


def short(obj: Any, n: int = 60) -> str:
    """A bounded repr for error messages (never calls ``repr`` on an unknown object)."""
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        s = repr(obj)
    else:
        s = f"<{type(obj).__name__}>"
    return s if len(s) <= n else s[: n - 3] + "..."


#: Default ceiling for any weights file (bytes); ``PPRESTORE_MAX_WEIGHTS_BYTES`` overrides.
DEFAULT_MAX_WEIGHTS_BYTES = 2 << 30


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
