"""One Predictor for every inference path (dynamic graph, Paddle Inference, ONNX Runtime).

The pre/post-processing lives here once, whatever engine runs the network:

1. an :class:`ppRestore.data.io.Image` (uint8/uint16, grey/RGB, alpha kept aside), an
   array or a path comes in and becomes float32 ``H x W x C`` in [0, 1];
2. colour handling per the config's ``infer.color`` (see :class:`InferOptions`; the
   colour stage is :mod:`.color_stage`, the raw one :mod:`.raw_stage`):

   * ``rgb`` — 3-channel model; a grey image is replicated to RGB and the output is
     averaged back to one channel;
   * ``gray`` — 1-channel model (DnCNN); a colour image is restored channel by channel
     (``gray_mode: per_channel``, default: noise and blur act on each channel alike) or
     on its Y channel only with Cb/Cr kept (``gray_mode: y``: 3x faster, leaves chroma
     noise);
   * ``y`` — super-resolution on MATLAB's Y (SRCNN): Y goes through the model, Cb/Cr are
     bicubic-upscaled (:mod:`ppRestore.data.color`, :mod:`ppRestore.data.resize`);
   * ``upsample_input`` (SRCNN classic): the model input is first bicubic-upscaled by
     ``scale`` and the network itself keeps the size;

3. reflect padding to the model's ``pad_multiple`` (as the official CMFNet demo does), so
   any ``H x W`` works; optional tiling (:mod:`.tiling`) and x8 self-ensemble;
4. crop back, clip to [0, 1], and return the input's dtype, channel count and alpha at
   exactly ``scale`` times the input size.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Union

import numpy as np

from ..data.io import Image, read_image
from . import tiling
from .backends import Backend, DynamicBackend, openvino_available
from .color_stage import imresize as _imresize
from .color_stage import predict_color
from .exported import exported_attributes, load_deploy_yaml, open_exported_backend
from .memory import resolve_tile
from .options import (  # noqa: F401 - re-exported: the old import paths keep working
    COLOR_MODES,
    GRAY_MODES,
    MIN_TILE,
    InferOptions,
    model_attributes,
)

__all__ = [
    "InferOptions", "Predictor", "load_deploy_yaml", "NonFiniteOutputError", "MIN_TILE",
    "resolve_backend", "BACKENDS",
]  # fmt: skip

BACKENDS = ("auto", "paddle", "onnx", "openvino")


class NonFiniteOutputError(ValueError):
    """The network returned NaN/Inf (finite weights that overflow on this input)."""


def resolve_backend(
    info: Dict[str, Any],
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    use_trt: bool = False,
) -> str:
    """The engine ``Predictor.from_exported`` uses: ``backend`` itself, or for ``auto``
    the fastest one available for this export, device and precision.

    ``auto`` on CPU (measured on full CMFNet at 256 x 256, 2 threads, AVX512-BF16/VNNI
    EPYC; docs/benchmarks.md): OpenVINO on the ONNX export is the fastest engine for fp32
    and bf16 and runs the int8 ONNX file, so it wins when ``openvino`` is installed and
    the export has the ONNX file; otherwise Paddle Inference (fp32/bf16) or ONNX Runtime
    (int8). GPU, TensorRT and fp16 always use Paddle Inference.
    """
    aliases = {"onnxruntime": "onnx", "ort": "onnx", "paddle_inference": "paddle", "ov": "openvino"}
    backend = aliases.get(str(backend).lower(), str(backend).lower())
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if backend != "auto":
        return backend
    if not str(device or "cpu").startswith("cpu") or use_trt or precision == "fp16":
        return "paddle"
    d = info.get("_dir", "")
    if precision == "int8":
        if not info.get("int8_onnx_file"):
            return "onnx"  # its error names the missing --quantize int8 export
        return "openvino" if openvino_available() else "onnx"
    has_onnx = bool(info.get("onnx_file")) or os.path.isfile(os.path.join(d, "model.onnx"))
    if has_onnx and openvino_available():
        return "openvino"
    return "paddle"


# --- self-ensemble: the 8 elements of the dihedral group on the two spatial axes --------


def _geo(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    y = np.rot90(x, k, axes=(2, 3))
    return np.ascontiguousarray(y[..., ::-1] if flip else y)


def _geo_inv(y: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        y = y[..., ::-1]
    return np.ascontiguousarray(np.rot90(y, -k, axes=(2, 3)))


class Predictor:
    """Restore images with any backend and the shared pre/post-processing.

    Build it with :meth:`from_config` (dynamic graph: config + weights),
    :meth:`from_model` (a Layer you already have), or :meth:`from_exported` (an
    exported folder with ``deploy.yaml``: Paddle Inference or ONNX Runtime).

    Args:
        backend: the engine (:mod:`.backends`).
        options: :class:`InferOptions`.
        meta: free-form information (model type, source) for messages.
    """

    def __init__(
        self, backend: Backend, options: InferOptions, meta: Dict[str, Any] | None = None
    ) -> None:
        self.backend = backend
        self.options = options
        self.meta = dict(meta or {})
        self.progress: Callable[[int, int], None] | None = None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_model(
        cls,
        model: Any,
        device: str | None = None,
        infer_cfg: Dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Predictor:
        """Wrap a ``paddle.nn.Layer`` (weights already loaded) in a dynamic-graph predictor."""
        opts = InferOptions.merge(model_attributes(model), infer_cfg, overrides)
        return cls(
            DynamicBackend(model, device),
            opts,
            {
                "model_type": type(model).__name__,
                "backend": "dynamic",
                # PmrNet multiplies its input by inp_scale itself; denoise_raw must know.
                "inp_scale": float(getattr(model, "inp_scale", 1.0) or 1.0),
            },
        )

    @classmethod
    def from_config(
        cls,
        config: Union[str, Dict[str, Any]],
        model_path: str | None,
        device: str | None = None,
        opts: list | None = None,
        **overrides: Any,
    ) -> Predictor:
        """Build the config's model, load ``model_path`` strictly and wrap it.

        Args:
            config: a YAML path or an already loaded config dict.
            model_path: weights: local file, https URL or zoo name (required: results
                from random weights are never produced).
            device: ``cpu`` / ``gpu``.
            opts: ``-o key=value`` overrides for the config.
            **overrides: :class:`InferOptions` fields (e.g. ``tile=512``).
        """
        from ..builder import build_model_with_weights
        from ..config import apply_overrides, load_config, validate

        if isinstance(config, str):
            cfg = load_config(config, opts or [])
        else:
            cfg = validate(apply_overrides(config, opts or []), source="config")
        if "model" not in cfg:
            raise ValueError("the config has no 'model:' section")
        if device:
            import paddle

            paddle.set_device(device)
        model = build_model_with_weights(cfg["model"], model_path)
        pred = cls.from_model(model, device=None, infer_cfg=cfg.get("infer"), **overrides)
        pred.meta.update({"model_type": cfg["model"]["type"], "weights": str(model_path)})
        return pred

    @classmethod
    def from_exported(
        cls,
        path: str,
        backend: str = "auto",
        device: str = "cpu",
        cpu_threads: int | None = None,
        enable_mkldnn: bool = True,
        precision: str = "fp32",
        use_trt: bool = False,
        **overrides: Any,
    ) -> Predictor:
        """Load an exported model folder (or its ``deploy.yaml``).

        Args:
            backend: ``auto`` (the fastest engine installed for this device and
                precision, see :func:`resolve_backend`), ``paddle`` (Paddle
                Inference), ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO, on the
                ONNX export).
            precision: ``fp32``; ``bf16`` (CPU: OpenVINO or Paddle oneDNN); ``int8``
                (CPU: the ``--quantize int8`` ONNX file on ONNX Runtime/OpenVINO; GPU:
                TensorRT); ``fp16`` (GPU).
        """
        if cpu_threads is not None and (isinstance(cpu_threads, bool) or int(cpu_threads) < 0):
            raise ValueError(f"--cpu_threads must be at least 1 (0: all cores), got {cpu_threads}")
        info = load_deploy_yaml(path)
        backend = resolve_backend(info, backend, device, precision, use_trt)
        be, model_dir = open_exported_backend(
            info, backend, device, cpu_threads, enable_mkldnn, precision, use_trt
        )
        opts = InferOptions.merge(exported_attributes(info), info.get("infer"), overrides)
        meta = {
            "model_type": info.get("model_type", "?"),
            "backend": be.name,
            "precision": precision,
            "model_dir": model_dir,
            # the exported graph contains the model's own inp_scale factor
            "inp_scale": float((info.get("model") or {}).get("inp_scale", 1.0) or 1.0),
        }
        return cls(be, opts, meta)

    # --- the float pipeline ---------------------------------------------------------

    def _resolve_tile(self, h: int, w: int) -> int | None:
        """The tile side for an ``h x w`` padded input, or None for the whole image
        (:func:`ppRestore.inference.memory.resolve_tile`)."""
        return resolve_tile(self.options, h, w, self.backend.run)

    def _forward_once(self, x: np.ndarray) -> np.ndarray:
        """Pad to the multiple, run whole or tiled, crop back (``N x C x H x W``)."""
        o = self.options
        s = o.net_scale
        xp, h, w = tiling.pad_to_multiple(x, o.pad_multiple, o.pad_mode)
        tile = self._resolve_tile(*xp.shape[-2:])
        if tile is not None and tile < max(xp.shape[-2:]):
            y = tiling.tiled_forward(
                self.backend.run,
                xp,
                tile,
                o.tile_overlap,
                s,
                o.pad_multiple,
                progress=self.progress,
            )
        else:
            y = self.backend.run(xp)
        if not np.isfinite(y).all():
            bad = int(y.size - np.count_nonzero(np.isfinite(y)))
            raise NonFiniteOutputError(
                f"the network produced {bad} non-finite value(s) (NaN/Inf) on this input: "
                "its weights overflow here; nothing was written"
            )
        if y.shape[-2:] != (xp.shape[-2] * s, xp.shape[-1] * s):
            raise RuntimeError(
                f"the network returned {tuple(y.shape[-2:])} for input {tuple(xp.shape[-2:])}; "
                f"expected scale {s} (check the model's 'scale' attribute / deploy.yaml)"
            )
        return y[:, :, : h * s, : w * s]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Network input ``N x C x H x W`` float32 -> output, with padding, tiling and
        self-ensemble; no colour handling, no clipping."""
        if not self.options.self_ensemble:
            return self._forward_once(x)
        acc = None
        for k in range(4):
            for flip in (False, True):
                y = _geo_inv(self._forward_once(_geo(x, k, flip)), k, flip)
                acc = y if acc is None else acc + y
        return acc / 8.0

    def predict(self, img: np.ndarray) -> np.ndarray:
        """Restore a float ``H x W x C`` (C = 1 or 3) image in [0, 1].

        The colour stage (:func:`ppRestore.inference.color_stage.predict_color`) turns
        the image into network planes per ``infer.color`` around :meth:`forward`.

        Returns:
            float32 ``H*scale x W*scale x C`` in [0, 1], same channel count as the input
            (with ``color: none``: the network's output channels, not clipped).
        """
        return predict_color(self, img)

    def restore_raw(
        self,
        bayer: np.ndarray,
        iso: float,
        pattern: str = "RGGB",
        black_level: float | None = None,
        white_level: float | None = None,
    ) -> np.ndarray:
        """Denoise a Bayer frame with a packed-raw model (PmrNet, ``infer.color: raw``).

        The raw stage (:func:`ppRestore.inference.raw_stage.restore_raw`): normalisation,
        pattern flip, packing and k-sigma at ``iso`` around this predictor's
        :meth:`forward`, which pads once, tiles and self-ensembles, so exported models
        (Paddle Inference, ONNX) run raw frames too.

        Args:
            bayer: ``H x W`` float in ``[0, 1]``, or integer raw values with levels.
            iso: capture ISO.
            pattern: CFA pattern of ``bayer``.
            black_level, white_level: see :func:`ppRestore.data.bayer.normalize_bayer`.

        Returns:
            The denoised ``H x W`` float32 Bayer frame in ``[0, 1]``.
        """
        from .raw_stage import restore_raw

        return restore_raw(self, bayer, iso, pattern, black_level, white_level)

    # --- images in, images out ------------------------------------------------------

    def restore_image(self, image: Image) -> Image:
        """Restore an :class:`~ppRestore.data.io.Image`: same dtype, channels and alpha,
        ``scale`` times the size."""
        out = self.predict(image.to_float())
        maxv = image.max_value
        data = np.clip(np.rint(out * maxv), 0, maxv).astype(image.data.dtype)
        alpha = image.alpha
        s = self.options.scale
        if alpha is not None and s > 1:
            a = _imresize(alpha.astype(np.float32) / maxv, s, output_shape=data.shape[:2])
            alpha = np.clip(np.rint(a * maxv), 0, maxv).astype(image.alpha.dtype)
        return Image(data, alpha, image.path, icc_profile=image.icc_profile)

    def restore(self, img: Union[str, os.PathLike, Image, np.ndarray]) -> Union[Image, np.ndarray]:
        """Restore a path, an :class:`Image` or an array.

        Arrays: uint8/uint16 ``H x W``, ``H x W x 1/3/4`` (4 = RGBA, alpha kept) come back
        with the same dtype and layout; float arrays are taken as [0, 1] and come back as
        float32. Paths and Images come back as :class:`Image`.
        """
        if isinstance(img, (str, os.PathLike)):
            return self.restore_image(read_image(os.fspath(img)))
        if isinstance(img, Image):
            return self.restore_image(img)
        arr = np.asarray(img)
        squeeze = arr.ndim == 2
        if squeeze:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise ValueError(
                f"expected H x W or H x W x C (C in 1..4), got shape {np.asarray(img).shape}"
            )
        if np.issubdtype(arr.dtype, np.floating):
            out = self.predict(arr[..., : 3 if arr.shape[2] >= 3 else 1])
            return out[..., 0] if squeeze else out
        if arr.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"integer images must be uint8 or uint16, got {arr.dtype}")
        nc = 3 if arr.shape[2] >= 3 else 1
        alpha = arr[..., nc] if arr.shape[2] in (2, 4) else None
        res = self.restore_image(Image(np.ascontiguousarray(arr[..., :nc]), alpha))
        data = res.data if res.alpha is None else np.dstack([res.data, res.alpha])
        return data[..., 0] if squeeze else data

    __call__ = restore

    def describe(self) -> str:
        o = self.options
        prec = f" {self.meta['precision']}" if self.meta.get("precision") else ""
        return (
            f"{self.meta.get('model_type', '?')} on {self.backend.name}{prec} "
            f"(pad_multiple {o.pad_multiple}, scale {o.scale}, color {o.resolved_color}, "
            f"tile {o.tile if o.tile is not None else 'when needed'}, "
            f"self_ensemble {o.self_ensemble})"
        )
