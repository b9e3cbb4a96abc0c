"""Inference: one :class:`Predictor` for dynamic graph, Paddle Inference and ONNX Runtime,
tiling, export, and batch running.

Notebook use::

    from ppRestore.inference import restore
    out = restore("photo.jpg", config="configs/cmfnet/cmfnet_deblur.yml", model_path="W.pdparams")
    out = restore(array_uint8, model_dir="output/export")  # an exported model

Importing this package does not import Paddle; the first call does.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

__all__ = ["Predictor", "InferOptions", "restore", "get_predictor"]

_CACHE: Dict[Tuple, Any] = {}


def __getattr__(name: str) -> Any:
    # Lazy re-exports so `import ppRestore.inference` stays cheap.
    if name in ("Predictor", "InferOptions"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(name)


def get_predictor(
    config: str | None = None,
    model_path: str | None = None,
    model_dir: str | None = None,
    device: str | None = None,
    **kwargs: Any,
):
    """Build (and cache) a Predictor: ``config`` + ``model_path`` for the dynamic graph,
    or ``model_dir`` (an export folder) for Paddle Inference. ``kwargs`` are
    :class:`InferOptions` fields (``tile``, ``self_ensemble``...) or, with ``model_dir``,
    ``backend``/``precision``/``cpu_threads``/``enable_mkldnn``."""
    from .predictor import Predictor

    key = (
        config,
        model_path,
        model_dir,
        device,
        tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
    )
    if key not in _CACHE:
        if model_dir is not None:
            _CACHE[key] = Predictor.from_exported(model_dir, device=device or "cpu", **kwargs)
        elif config is not None:
            _CACHE[key] = Predictor.from_config(config, model_path, device=device, **kwargs)
        else:
            raise ValueError(
                "restore() needs config= and model_path=, or model_dir= (an exported model)"
            )
    return _CACHE[key]


def restore(
    img: Any,
    config: str | None = None,
    model_path: str | None = None,
    model_dir: str | None = None,
    device: str | None = None,
    **kwargs: Any,
):
    """Restore one image (path, :class:`ppRestore.data.io.Image` or array).

    Returns an :class:`~ppRestore.data.io.Image` for paths/Images and an array of the
    input's dtype and layout for arrays. The predictor is cached per arguments, so
    calling this in a loop loads the model once.
    """
    if isinstance(img, os.PathLike):
        img = os.fspath(img)
    return get_predictor(config, model_path, model_dir, device, **kwargs).restore(img)
