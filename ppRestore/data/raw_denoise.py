"""The pre/post-processing around a packed-raw network (PmrNet), as the official
PMRID benchmark (``run_benchmark.py``) does it.

:func:`to_network` turns a Bayer frame into the network's input (normalise -> flip to
RGGB -> pack -> clip -> optional padding -> k-sigma at the ISO -> times the input scale)
and :func:`from_network` undoes it on the output. :func:`denoise_raw` runs a bare model
between them with its own padding (``official`` reproduces the reference bit for bit);
the :class:`~ppRestore.inference.predictor.Predictor` runs its backend between them
instead (:mod:`ppRestore.inference.raw_stage`), padding once, as for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Tuple, Union

import numpy as np

from .bayer import (
    DEFAULT_KSIGMA,
    INP_SCALE,
    KSigma,
    PadMode,
    RawError,
    _check_2d,
    check_pattern,
    crop_padding,
    from_rggb,
    normalize_bayer,
    pack_bayer,
    pad_to_even,
    pad_to_multiple,
    to_rggb,
    unpack_bayer,
)

__all__ = ["NetworkInput", "to_network", "from_network", "denoise_raw"]


@dataclass(frozen=True)
class NetworkInput:
    """What :func:`from_network` needs to undo :func:`to_network`."""

    shape: Tuple[int, int]  # the Bayer frame's H, W
    pattern: str
    iso: float
    scale: float  # the factor on the k-sigma image outside the network
    pads: Tuple[int, int, int, int] = (0, 0, 0, 0)
    noise_model: KSigma = DEFAULT_KSIGMA


def to_network(
    bayer: np.ndarray,
    iso: float,
    pattern: str = "RGGB",
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
    scale: float = INP_SCALE,
    pad: PadMode | None = None,
    multiple: int = 32,
    noise_model: KSigma = DEFAULT_KSIGMA,
) -> Tuple[np.ndarray, NetworkInput]:
    """A Bayer frame -> the network input ``1 x 4 x h x w`` float32 and the context.

    Args:
        bayer: ``H x W`` float in ``[0, 1]``, or integer raw values with levels.
        iso: the capture ISO (selects the noise level through the k-sigma transform).
        pattern: the CFA pattern of ``bayer``.
        black_level, white_level: see :func:`~.bayer.normalize_bayer`; for float input
            they are applied only when given.
        scale: the factor applied to the k-sigma image here (the official network sees
            it times 256; a PmrNet with ``inp_scale`` applies that part itself).
        pad: pad the packed frame to ``multiple`` before the k-sigma transform (see
            :func:`~.bayer.pad_to_multiple`), or None when the caller pads.
    """
    pattern = check_pattern(pattern)
    bayer = _check_2d(bayer)
    if np.issubdtype(bayer.dtype, np.integer) or black_level is not None or white_level is not None:
        bayer = normalize_bayer(
            bayer, 0.0 if black_level is None else black_level, white_level, pattern
        )
    bayer = np.asarray(bayer, np.float32)
    if not np.all(np.isfinite(bayer)):
        raise RawError("the Bayer image contains NaN or infinite values")
    rggb = to_rggb(pad_to_even(bayer), pattern)
    packed = np.clip(pack_bayer(rggb, "RGGB"), 0, 1)
    pads = (0, 0, 0, 0)
    if pad is not None:
        packed, pads = pad_to_multiple(packed, multiple, pad)
    inp = (noise_model.forward(packed, iso) * scale).astype(np.float32)[None]
    ctx = NetworkInput(bayer.shape, pattern, float(iso), float(scale), pads, noise_model)
    return np.ascontiguousarray(inp), ctx


def from_network(out: np.ndarray, ctx: NetworkInput, clip: bool = True) -> np.ndarray:
    """The network output ``1 x 4 x h x w`` -> the denoised ``H x W`` float32 Bayer frame
    in the input's pattern (``clip``: to ``[0, 1]``; the official code does not)."""
    out = np.asarray(out, np.float32)
    H, W = ctx.shape
    t, b, left, r = ctx.pads
    want = (1, 4, (H + H % 2) // 2 + t + b, (W + W % 2) // 2 + left + r)
    if out.shape != want:
        raise RawError(
            f"the model returned shape {out.shape} for input {want}; is it a 4-channel PmrNet?"
        )
    pred = ctx.noise_model.inverse(out[0] / ctx.scale, ctx.iso)
    pred = unpack_bayer(crop_padding(pred, ctx.pads), "RGGB")
    pred = from_rggb(pred, ctx.pattern)[:H, :W].astype(np.float32)
    return np.clip(pred, 0, 1) if clip else pred


def _as_callable(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A paddle Layer or any callable ``NCHW float32 -> NCHW`` array."""
    try:
        import paddle
    except ImportError:  # a numpy callable (e.g. an inference predictor) still works
        paddle = None
    if paddle is not None and isinstance(model, paddle.nn.Layer):

        def run(x: np.ndarray) -> np.ndarray:
            with paddle.no_grad():
                return model(paddle.to_tensor(x)).numpy()

        return run
    if not callable(model):
        raise TypeError(
            f"model must be a paddle.nn.Layer or a callable, got {type(model).__name__}"
        )
    return lambda x: np.asarray(model(x))


def denoise_raw(
    bayer: np.ndarray,
    iso: float,
    model: Any,
    pattern: str = "RGGB",
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
    pad: PadMode = "reflect",
    noise_model: KSigma = DEFAULT_KSIGMA,
    inp_scale: float = INP_SCALE,
    clip: bool = True,
) -> np.ndarray:
    """Denoise a Bayer image with a packed-raw PmrNet, as the official benchmark does.

    Steps: :func:`to_network` (normalise, flip to RGGB, pack, clip, pad to 32, k-sigma
    at ``iso``, times ``inp_scale``) -> network -> :func:`from_network` (divide,
    inverse k-sigma, crop, unpack, flip back).

    Args:
        bayer: ``H x W`` float in ``[0, 1]``, or integer raw values with levels.
        iso: the capture ISO (selects the noise level through the k-sigma transform).
        model: a ``PmrNet(in_channels=4)`` in eval mode, or a callable on NCHW arrays.
        pattern: the CFA pattern of ``bayer``.
        black_level, white_level: see :func:`~.bayer.normalize_bayer`; for float input
            they are applied only when given.
        pad: ``reflect`` (default), ``constant``, ``official`` (bit-for-bit the
            reference pipeline) or ``end`` (as the Predictor pads); see
            :func:`~.bayer.pad_to_multiple`.
        noise_model: the ISO noise model behind the k-sigma transform.
        inp_scale: the factor on the k-sigma image the network was trained with
            (official: 256); a model's own ``inp_scale`` attribute counts towards it.
        clip: clip the result to ``[0, 1]`` (the official code does not).

    Returns:
        The denoised ``H x W`` float32 Bayer image, same pattern as the input.
    """
    # A PmrNet built with inp_scale applies that part of the factor itself.
    scale = inp_scale / float(getattr(model, "inp_scale", 1.0) or 1.0)
    inp, ctx = to_network(
        bayer, iso, pattern, black_level, white_level, scale, pad, 32, noise_model
    )
    return from_network(_as_callable(model)(inp), ctx, clip)
