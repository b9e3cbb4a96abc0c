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
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

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

# arch name -> (MODELS type, default constructor kwargs). The defaults are the ones the
# official checkpoints were trained with; ``model_kwargs`` overrides them for variants.
ARCHS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "cmfnet": ("CMFNet", {}),
    "pmrnet": ("PmrNet", {"in_channels": 4}),  # sources: torch, mge
    "srcnn": ("SRCNN", {}),  # key styles conv1/.. and features/map/reconstruction
    "dncnn": ("DnCNN", {}),  # sources: saoyan (with BatchNorm), kair (BN folded)
    "unet": ("UNet", {}),
    "dmcnn": ("DMCNN", {}),
}

# Model arguments a checkpoint source implies, applied under the user's overrides:
# KAIR's model_zoo DnCNNs have BatchNorm folded into conv biases.
SOURCE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "dncnn:kair": {"bn": False},
}

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
    obj = torch.load(path, map_location="cpu", weights_only=True)

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
        # Legacy torch files start with a pickled magic number.
        return unwrap_state_dict(_torch_load(path), key, path)
    return unwrap_state_dict(obj, key, path)


# --------------------------------------------------------------------------- conversion
def build_default_model(
    arch: str, model_kwargs: Mapping[str, Any] | None = None, source: str | None = None
) -> Any:
    """Build the model ``arch`` converts into: its :data:`ARCHS` defaults, then the
    source's :data:`SOURCE_DEFAULTS`, then ``model_kwargs``."""
    from ..registry import MODELS

    if arch not in ARCHS:
        import difflib

        close = difflib.get_close_matches(arch, ARCHS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise WeightsError(f"unknown arch '{arch}'.{hint} Known: {', '.join(sorted(ARCHS))}")
    model_type, defaults = ARCHS[arch]
    implied = SOURCE_DEFAULTS.get(f"{arch}:{source}", {}) if source else {}
    cfg = {"type": model_type, **defaults, **implied, **dict(model_kwargs or {})}
    return MODELS.build(cfg)


def get_converter(arch: str, source: str | None = None) -> Callable[..., Dict[str, np.ndarray]]:
    """The converter registered as ``"<arch>:<source>"`` (or ``"<arch>"``); identity if
    ``arch`` registers none (its keys already match)."""
    from ..registry import CONVERTERS

    if source:
        return CONVERTERS.get(f"{arch}:{source}")
    if arch in CONVERTERS:
        return CONVERTERS.get(arch)
    return lambda state, model: dict(state)


def convert_state_dict(
    arch: str,
    state: Mapping[str, np.ndarray],
    source: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    src_name: str = "",
) -> Any:
    """Convert an in-memory foreign state dict; returns the loaded Paddle model."""
    model = build_default_model(arch, model_kwargs, source)
    converted = get_converter(arch, source)(dict(state), model)
    load_state_dict(model, converted, strict=True, source=src_name)
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
    """Read ``src``, convert for ``arch``, load strictly, save to ``dst``.

    ``dst`` ending in ``.safetensors`` writes safetensors, anything else ``.pdparams``.

    Returns:
        A summary: ``{"arch", "src", "dst", "num_tensors", "num_params"}``.
    """
    state = read_foreign_checkpoint(src, key=key, backend=backend)
    model = convert_state_dict(arch, state, source=source, model_kwargs=model_kwargs, src_name=src)
    out_state = model.state_dict()
    save_weights(out_state, dst)
    num_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    return {
        "arch": arch,
        "src": src,
        "dst": dst,
        "num_tensors": len(out_state),
        "num_params": num_params,
    }
