"""Load any supported checkpoint into a built model, converting foreign ones once.

``--model_path deblur_GoPro_CMFNet.pth`` (or SaoYan's ``net.pth``, a MegEngine ``.ckp``,
a zoo name that downloads one) works in every tool: the file's container is sniffed
(:func:`~.convert.checkpoint_container`), a foreign one is read by the same safe readers
as ``tools/convert_weights.py``, converted through the model's architecture with the
source detected from its keys, loaded strictly, and the result is cached as
``.pdparams`` keyed by the file's content hash, so the next run loads the cached file
and gives exactly what an explicit conversion gives.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, Dict

from .safe_load import WeightsError, check_state_dict, load_state_dict, load_weights

#: Containers that are never ppRestore's own format.
FOREIGN_CONTAINERS = ("torch-zip", "torch-legacy", "npz")


def converted_cache_dir() -> str:
    from .zoo import cache_dir

    return os.path.join(cache_dir(), "converted")


def _model_signature(model: Any) -> str:
    """A short hash of the model's parameter names and shapes: a conversion cached for
    one width/depth is never loaded into another."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(f"{k}:{tuple(v.shape)};".encode())
    return h.hexdigest()[:8]


def _arch_of(model: Any, path: str) -> str:
    from ..registry import arch_for_model

    arch = arch_for_model(type(model).__name__)
    if arch is None or not arch.sources:
        raise WeightsError(
            f"{path}: a foreign checkpoint, and {type(model).__name__} declares no converter "
            "for one; pass a .pdparams/.safetensors file"
        )
    return arch.name


def _matches(model: Any, state: Dict[str, Any]) -> bool:
    report = check_state_dict(model.state_dict(), state)
    return not (report["missing"] or report["unexpected"] or report["mismatched"])


def load_weights_into(
    model: Any, path: str, strict: bool = True, source: str | None = None, quiet: bool = False
) -> Dict[str, list]:
    """Load the local file ``path`` into ``model``; convert it first if it is foreign.

    Args:
        model: the built model (its config decides the architecture and sizes).
        path: a ``.pdparams``/``.safetensors`` file, or a foreign checkpoint (torch zip,
            legacy torch, MegEngine pickle, ``.npz``).
        strict: missing/unexpected keys are errors (always so for foreign files).
        source: force a converter source (``--source``); detected when None.
        quiet: no "converted once" note on stderr.

    Returns:
        The key report of the final strict load.
    """
    from .convert import checkpoint_container

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    container = checkpoint_container(path)
    if container in FOREIGN_CONTAINERS:
        return _load_foreign(model, path, container, source, None, quiet)
    state = load_weights(path)
    # .pdparams/.safetensors are ppRestore's own formats: a mismatch there is reported by
    # the strict loader, never "converted" (MegEngine's .ckp is the foreign pickle).
    native = (
        container == "safetensors"
        or path.endswith((".pdparams", ".pdopt"))
        or _matches(model, state)
    )
    if not native and (source is not None or _foreign_pickle(model, state, path)):
        return _load_foreign(model, path, container, source, state, quiet)
    return load_state_dict(model, state, strict=strict, source=path)


def _foreign_pickle(model: Any, state: Dict[str, Any], path: str) -> bool:
    """Is this plain pickle (e.g. MegEngine's ``.ckp``) one of the model's foreign
    sources? Only asked when its keys do not already match the model."""
    from ..registry import arch_for_model
    from .convert import unwrap_state_dict

    arch = arch_for_model(type(model).__name__)
    if arch is None or not arch.sources:
        return False
    try:
        flat = unwrap_state_dict(state, source=path)
    except WeightsError:
        return False
    return any(s.detect is not None and s.detect(flat, "pickle") for s in arch.sources)


def _load_foreign(
    model: Any,
    path: str,
    container: str,
    source: str | None,
    state: Dict[str, Any] | None,
    quiet: bool,
) -> Dict[str, list]:
    from .convert import convert_into, read_foreign_checkpoint, unwrap_state_dict
    from .safe_load import save_weights
    from .zoo import sha256_of

    arch = _arch_of(model, path)
    digest = sha256_of(path)[:16]
    name = f"{digest}-{arch}-{source or 'auto'}-{_model_signature(model)}.pdparams"
    cached = os.path.join(converted_cache_dir(), name)
    if os.path.isfile(cached):
        try:
            return load_state_dict(model, load_weights(cached), strict=True, source=cached)
        except WeightsError:
            pass  # a damaged cache entry: convert again below and overwrite it
    flat = (
        unwrap_state_dict(state, source=path)
        if state is not None
        else read_foreign_checkpoint(path)
    )
    used = convert_into(model, flat, arch, source, path, container)
    report = {"missing": [], "unexpected": [], "mismatched": []}  # convert_into is strict
    try:
        save_weights(model.state_dict(), cached)
        where = f"cached as {cached}"
    except OSError as e:  # a read-only cache must not stop inference
        where = f"not cached ({e.strerror or e}; set PPRESTORE_HOME to a writable folder)"
    if not quiet:
        how = "given" if source else "detected"
        print(
            f"converted {os.path.basename(path)} as {arch} (source '{used}' {how}); {where}",
            file=sys.stderr,
        )
    return report
