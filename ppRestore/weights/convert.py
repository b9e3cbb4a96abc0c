"""Convert foreign (PyTorch, ...) checkpoints into ppRestore ``.pdparams``/``.safetensors``.

Pipeline: :func:`read_foreign_checkpoint` (file -> flat ``{name: np.ndarray}``) ->
the architecture's registered converter from ``registry.CONVERTERS`` (key renames /
layout changes, living next to the model like timm's ``checkpoint_filter_fn``) -> strict
:func:`safe_load.load_state_dict` into the default model -> :func:`safe_load.save_weights`.

PyTorch zip checkpoints (``torch.save`` since 1.6) are read with ``torch.load(...,
weights_only=True)`` when torch is installed, and otherwise by :func:`read_torch_zip`, a
torch-free reader that unpickles ``data.pkl`` with the restricted unpickler widened by
exactly the two tensor-rebuild functions and the typed-storage classes a state dict
needs, so users without torch can convert too and nothing in the file can run code.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping

import numpy as np

from ..registry import ARCHS
from .safe_load import (
    UnsafeWeightsError,
    WeightsError,
    load_state_dict,
    read_safetensors,
    restricted_loads,
    save_weights,
)
from .torch_reader import read_npz
from .unpickler import check_file_size

# Architectures, their constructor defaults and foreign sources are declared in each
# model file (registry.register_arch); ARCHS (imported above) is that registry.

# Wrapper keys under which training scripts store the weights, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "params")

_TORCH_HINT = "pip install ppRestore[convert]"


# --------------------------------------------------------------------------- torch zip
# The torch-free zip reader (and its caps) lives in torch_reader.py.
from .torch_reader import TorchZipUnpickler, read_torch_zip  # noqa: E402,F401


def _torch_load(path: str) -> Any:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"{path}: reading this legacy (pre-1.6, non-zip) PyTorch checkpoint needs torch: "
            f"{_TORCH_HINT}"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/UnpicklingError/...
        msg = " ".join(str(e).split())
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {msg[:160]})"
        ) from None

    def to_np(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        if isinstance(o, dict):
            return {k: to_np(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return type(o)(to_np(v) for v in o)
        return o

    return to_np(obj)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def unwrap_state_dict(obj: Any, key: str | None = None, source: str = "") -> Dict[str, np.ndarray]:
    """Find the weights in a loaded checkpoint: ``obj[key]`` or the first of
    :data:`WRAPPER_KEYS` holding a dict, else ``obj`` itself; strip DataParallel's
    ``module.`` prefixes and keep only arrays (optimizer state, epochs are dropped)."""
    where = f"{source}: " if source else ""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{where}expected a dict checkpoint, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise WeightsError(
                f"{where}no '{key}' entry; top-level keys: {sorted(map(str, obj))[:10]}"
            )
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if isinstance(obj.get(k), Mapping):
                obj = obj[k]
                break
    out: Dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            continue
        k = str(k)
        if k.startswith("module."):
            k = k[len("module.") :]
        if k in out:
            raise WeightsError(f"{where}key '{k}' appears both with and without 'module.'")
        out[k] = v
    if not out:
        raise WeightsError(f"{where}no arrays found in the checkpoint")
    return out


def read_foreign_checkpoint(
    path: str, key: str | None = None, backend: str = "auto"
) -> Dict[str, np.ndarray]:
    """Read a foreign checkpoint into a flat ``{name: np.ndarray}`` state dict.

    Args:
        path: ``.pth``/``.pt``/``.ckpt`` (torch), ``.npz``, ``.safetensors`` or a plain pickle.
        key: wrapper entry holding the weights; default tries ``state_dict``, ``model``,
            ``params`` and then the bare dict.
        backend: for torch zips, ``"torch"`` (``torch.load(weights_only=True)``),
            ``"zip"`` (the torch-free :func:`read_torch_zip`) or ``"auto"`` (torch if
            installed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        return unwrap_state_dict(read_safetensors(path), key, path)
    check_file_size(path, os.path.getsize(path))  # before reading: a sparse 5 GiB file stops here
    with open(path, "rb") as f:
        head = f.read(4)
    if path.endswith(".npz"):
        return unwrap_state_dict(read_npz(path), key, path)  # size, bomb and CRC checked
    if head[:2] == b"PK":
        if backend not in ("auto", "torch", "zip"):
            raise ValueError(f"backend must be auto, torch or zip, got {backend!r}")
        use_torch = backend == "torch" or (backend == "auto" and _torch_available())
        obj = _torch_load(path) if use_torch else read_torch_zip(path)
        return unwrap_state_dict(obj, key, path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = restricted_loads(data, source=path)
    except UnsafeWeightsError as e:
        # A legacy torch file references torch globals in its first pickle; only torch
        # itself (weights_only) can read that format safely.
        if _torch_available():
            return unwrap_state_dict(_torch_load(path), key, path)
        # Keep the refused global in the message: it may be an attack, not a torch file.
        raise UnsafeWeightsError(
            f"{e}; if it is a legacy PyTorch checkpoint, {_TORCH_HINT}"
        ) from None
    if isinstance(obj, int) and not isinstance(obj, bool):
        # Legacy torch files start with a pickled magic number: torch reads them when it
        # is installed (and asked for), else the torch-free reader.
        from .torch_legacy import read_torch_legacy

        use_torch = backend == "torch" or (backend == "auto" and _torch_available())
        obj = _torch_load(path) if use_torch else read_torch_legacy(path)
    return unwrap_state_dict(obj, key, path)


def checkpoint_container(path: str) -> str:
    """What kind of file ``path`` is, from its name and first bytes: ``"safetensors"``,
    ``"npz"``, ``"torch-zip"``, ``"torch-legacy"`` or ``"pickle"`` (a ``.pdparams``, a
    MegEngine ``.ckp`` or any other plain pickle)."""
    from .torch_legacy import is_legacy_torch

    if path.endswith(".safetensors"):
        return "safetensors"
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".npz") or head[:2] == b"PK":
        return "npz" if path.endswith(".npz") else "torch-zip"
    return "torch-legacy" if is_legacy_torch(head) else "pickle"


# --------------------------------------------------------------------------- conversion
def get_arch(arch: str) -> Any:
    """The :class:`~ppRestore.registry.Arch` named ``arch`` or a one-line error."""
    from ..registry import RegistryError

    try:
        return ARCHS.get(arch)
    except RegistryError:
        import difflib

        names = ARCHS.keys()
        close = difflib.get_close_matches(arch, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise WeightsError(f"unknown arch '{arch}'.{hint} Known: {', '.join(names)}") from None


def describe_sources(arch: Any) -> str:
    """``"saoyan (https://...) or kair (...)"`` for messages."""
    parts = [f"{s.name}" + (f" ({s.url})" if s.url else "") for s in arch.sources]
    return " or ".join(parts) if parts else "a checkpoint with ppRestore's own key names"


def detect_source(
    arch: str, state: Mapping[str, np.ndarray], container: str = "", src_name: str = ""
) -> str | None:
    """Which of ``arch``'s declared sources ``state`` comes from (its detectors decide,
    first match wins); None if ``arch`` declares no sources (keys already ours).

    Raises:
        WeightsError: one line naming the file, the sources expected and the keys seen.
    """
    a = get_arch(arch)
    if not a.sources:
        return None
    for s in a.sources:
        if s.detect is not None and s.detect(state, container):
            return s.name
    where = f"{src_name}: " if src_name else ""
    keys = sorted(state)[:6]
    raise WeightsError(
        f"{where}not a recognised {arch} checkpoint: expected {describe_sources(a)}; "
        f"found keys {keys}{' ...' if len(state) > 6 else ''} (pass --source to force one)"
    )


def build_default_model(
    arch: str, model_kwargs: Mapping[str, Any] | None = None, source: str | None = None
) -> Any:
    """Build the model ``arch`` converts into: its declared defaults, then what the
    source implies (KAIR DnCNN: ``bn: False``), then ``model_kwargs``."""
    from ..registry import MODELS

    a = get_arch(arch)
    implied = dict(a.source(source).implies) if source and a.sources else {}
    cfg = {"type": a.model, **dict(a.defaults), **implied, **dict(model_kwargs or {})}
    return MODELS.build(cfg)


def get_converter(arch: str, source: str | None = None) -> Callable[..., Dict[str, np.ndarray]]:
    """The converter ``arch`` declares for ``source`` (default: its first source);
    identity if ``arch`` declares none (its keys already match)."""
    a = get_arch(arch)
    if not a.sources:
        return lambda state, model: dict(state)
    try:
        return a.source(source).convert if source else a.sources[0].convert
    except Exception as e:  # RegistryError: unknown source, one line
        raise WeightsError(str(e)) from None


def convert_into(
    model: Any,
    state: Mapping[str, np.ndarray],
    arch: str,
    source: str | None = None,
    src_name: str = "",
    container: str = "",
) -> str | None:
    """Convert ``state`` with ``arch``'s converter (``source`` detected when None) and
    load it strictly into ``model``. Returns the source used.

    Every failure is a :class:`WeightsError` naming ``src_name`` and what was expected:
    converters signal a wrong layout with KeyError/ValueError/AssertionError, which must
    not reach the user as a traceback.
    """
    a = get_arch(arch)
    if source is None:
        source = detect_source(arch, state, container, src_name)
    elif a.sources:
        get_converter(arch, source)  # unknown --source: one line
    where = f"{src_name}: " if src_name else ""
    try:
        converted = get_converter(arch, source)(dict(state), model)
    except (KeyError, ValueError, AssertionError, IndexError, TypeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise WeightsError(
            f"{where}cannot convert as {arch}" + (f" ({source})" if source else "") + f": {msg}"
        ) from None
    try:
        load_state_dict(model, converted, strict=True, source=src_name)
    except WeightsError as e:
        hint = ""
        if "mismatched" in str(e):
            hint = (
                " (a reduced-width or different-depth checkpoint? pass its constructor"
                " args, e.g. -o model.n_feat=16)"
            )
        raise WeightsError(f"{e} [read as {arch}:{source or 'native'}]{hint}") from None
    return source


def convert_state_dict(
    arch: str,
    state: Mapping[str, np.ndarray],
    source: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    src_name: str = "",
    container: str = "",
) -> Any:
    """Convert an in-memory foreign state dict; returns the loaded Paddle model."""
    if source is None:
        source = detect_source(arch, state, container, src_name)
    model = build_default_model(arch, model_kwargs, source)
    convert_into(model, state, arch, source, src_name, container)
    return model


def convert_checkpoint(
    arch: str,
    src: str,
    dst: str,
    source: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    key: str | None = None,
    backend: str = "auto",
) -> Dict[str, Any]:
    """Read ``src``, convert for ``arch`` (source detected unless given), load strictly,
    save to ``dst``.

    ``dst`` ending in ``.safetensors`` writes safetensors, anything else ``.pdparams``.

    Returns:
        A summary: ``{"arch", "source", "src", "dst", "num_tensors", "num_params"}``.
    """
    get_arch(arch)  # an unknown arch is reported before the file is read
    state = read_foreign_checkpoint(src, key=key, backend=backend)
    container = checkpoint_container(src)
    if source is None:
        source = detect_source(arch, state, container, src)
    model = convert_state_dict(
        arch, state, source=source, model_kwargs=model_kwargs, src_name=src, container=container
    )
    out_state = model.state_dict()
    save_weights(out_state, dst)
    num_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    return {
        "arch": arch,
        "source": source,
        "src": src,
        "dst": dst,
        "num_tensors": len(out_state),
        "num_params": num_params,
    }
