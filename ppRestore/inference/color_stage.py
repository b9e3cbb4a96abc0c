"""The Predictor's colour stage: ``infer.color`` between the image and the network.

:func:`predict_color` is :meth:`Predictor.predict
<ppRestore.inference.predictor.Predictor.predict>`: it turns a float ``H x W x C`` image
into the planes the network takes (``rgb``, ``gray`` per channel or on Y, ``y`` with
bicubic Cb/Cr, ``none`` unchanged), runs them through the predictor's own ``forward``
(padding, tiling, self-ensemble) and recombines the channels. The raw mode is the raw
stage (:mod:`.raw_stage`). Split out of :mod:`ppRestore.inference.predictor`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["predict_color", "imresize"]


def imresize(img: np.ndarray, scale: int, output_shape: tuple | None = None) -> np.ndarray:
    """MATLAB-compatible bicubic resize of a float ``H x W [x C]`` image."""
    from ..data.resize import imresize as _matlab_imresize

    out = _matlab_imresize(
        img.astype(np.float32), scale=None if output_shape else scale, output_shape=output_shape
    )
    return out.astype(np.float32, copy=False)


def run_planes(predictor: Any, img: np.ndarray, clip: bool = True) -> np.ndarray:
    """``H x W x C`` (C = network in_channels) float -> network output ``H' x W' x C'``."""
    o = predictor.options
    if o.upsample_input and o.scale > 1:
        img = imresize(img, o.scale)
    x = img.transpose(2, 0, 1)[None].astype(np.float32)
    y = predictor.forward(x)
    # Clip each network output to the valid range before any channel recombination.
    y = y[0].transpose(1, 2, 0)
    return np.clip(y, 0.0, 1.0) if clip else y


def run_on_y(predictor: Any, rgb: np.ndarray) -> np.ndarray:
    """Y through the network, Cb/Cr bicubic-resized to the output size (MATLAB
    BT.601 YCbCr, as SR papers evaluate)."""
    from ..data.color import rgb2ycbcr, ycbcr2rgb

    ycc = rgb2ycbcr(rgb.astype(np.float64)).astype(np.float32)
    y = run_planes(predictor, ycc[..., :1])
    s = predictor.options.scale
    cbcr = ycc[..., 1:]
    if s > 1:
        cbcr = imresize(cbcr, s, output_shape=y.shape[:2])
    return ycbcr2rgb(
        np.concatenate([y, cbcr.astype(np.float32)], axis=2).astype(np.float64)
    ).astype(np.float32)


def _run_color(predictor: Any, img: np.ndarray, color: str) -> np.ndarray:
    """An ``H x W x 1/3`` image through the network in colour mode ``rgb``, ``gray`` or
    ``y``; the same channel count comes back (not yet clipped as a whole)."""
    o = predictor.options
    c = img.shape[2]
    if color == "rgb":
        if o.in_channels != 3:
            raise ValueError(
                f"infer.color 'rgb' needs a 3-channel model, this one has {o.in_channels}"
            )
        out = run_planes(predictor, np.repeat(img, 3, axis=2) if c == 1 else img)
        return out.mean(axis=2, keepdims=True) if c == 1 else out
    if color == "gray":
        if c == 1:
            return run_planes(predictor, img)
        if o.gray_mode == "per_channel":
            return np.concatenate(
                [run_planes(predictor, img[..., i : i + 1]) for i in range(3)], axis=2
            )
        return run_on_y(predictor, img)
    # "y"
    if c == 1:
        return run_on_y(predictor, np.repeat(img, 3, axis=2)).mean(axis=2, keepdims=True)
    return run_on_y(predictor, img)


def predict_color(predictor: Any, img: np.ndarray) -> np.ndarray:
    """Restore a float ``H x W x C`` (C = 1 or 3) image in [0, 1] with ``predictor``
    (see :meth:`Predictor.predict <ppRestore.inference.predictor.Predictor.predict>`)."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    o = predictor.options
    color = o.resolved_color
    if color == "raw":
        raise ValueError(
            "this is a raw (Bayer) model (infer.color: raw): use restore_raw on a Bayer "
            "frame (.npy/.dng), not an RGB image"
        )
    if color == "none":
        if img.ndim != 3 or img.shape[2] != o.in_channels:
            raise ValueError(
                f"expected H x W x {o.in_channels} (color: none), got shape {img.shape}"
            )
        # no clipping: such models may work outside [0, 1] (PmrNet's k-sigma space)
        return run_planes(predictor, img, clip=False).astype(np.float32, copy=False)
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"expected an H x W x C image with C = 1 or 3, got shape {img.shape}")
    out = _run_color(predictor, img, color)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
