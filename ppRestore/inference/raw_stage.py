"""The Predictor's raw stage: Bayer frames through any backend (``infer.color: raw``).

:func:`restore_raw` is :meth:`Predictor.restore_raw
<ppRestore.inference.predictor.Predictor.restore_raw>`: the raw pre/post-processing of
:mod:`ppRestore.data.raw_denoise` around the predictor's own ``forward``, which pads the
packed frame once to the model's ``pad_multiple`` (as for every model), tiles and
self-ensembles; so dynamic graphs, Paddle Inference and ONNX exports run raw frames the
same way (tools/infer.py, deploy/python/infer.py, notebooks).
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

__all__ = ["restore_raw"]


def restore_raw(
    predictor: Any,
    bayer: np.ndarray,
    iso: float,
    pattern: str = "RGGB",
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
) -> np.ndarray:
    """Denoise a Bayer frame with ``predictor`` (a raw model: ``infer.color: raw``).

    Args:
        bayer: ``H x W`` float in ``[0, 1]``, or integer raw values with levels.
        iso: capture ISO.
        pattern: CFA pattern of ``bayer``.
        black_level, white_level: see :func:`ppRestore.data.bayer.normalize_bayer`.

    Returns:
        The denoised ``H x W`` float32 Bayer frame in ``[0, 1]``.
    """
    from ..data.bayer import INP_SCALE
    from ..data.raw_denoise import from_network, to_network

    color = predictor.options.resolved_color
    if color != "raw":
        raise ValueError(f"restore_raw needs a raw model (infer.color: raw), this one is '{color}'")
    # PmrNet multiplies its input by its own inp_scale (kept in the predictor's meta,
    # also for exported graphs); the rest of the official factor is applied here.
    scale = INP_SCALE / float(predictor.meta.get("inp_scale", 1.0) or 1.0)
    inp, ctx = to_network(bayer, iso, pattern, black_level, white_level, scale=scale)
    return from_network(predictor.forward(inp), ctx)
