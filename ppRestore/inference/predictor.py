"""One Predictor for every inference path (dynamic graph, Paddle Inference, ONNX Runtime).

The pre/post-processing lives here once, whatever engine runs the network:

1. an :class:`ppRestore.data.io.Image` (uint8/uint16, grey/RGB, alpha kept aside), an
   array or a path comes in and becomes float32 ``H x W x C`` in [0, 1];
2. colour handling per the config's ``infer.color`` (see :class:`InferOptions`):

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
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Union

import numpy as np

from ..data.io import Image, read_image
from . import tiling
from .backends import (
    Backend,
    DynamicBackend,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    PaddleInferenceBackend,
    openvino_available,
)

__all__ = [
    "InferOptions", "Predictor", "load_deploy_yaml", "NonFiniteOutputError", "MIN_TILE",
    "resolve_backend", "BACKENDS",
]  # fmt: skip

BACKENDS = ("auto", "paddle", "onnx", "openvino")

COLOR_MODES = ("auto", "rgb", "gray", "y", "none", "raw")
GRAY_MODES = ("per_channel", "y")

# Smallest tile side accepted: below it the overlap dominates (a 1-pixel tile would run
# the network once per pixel); the GUI uses the same floor.
MIN_TILE = 16
# Without ``tile`` the image runs whole when it fits the memory budget. To know that
# without measuring the network (seconds to minutes), images small enough to fit even at
# this many bytes per input pixel skip the measurement: the heaviest model measured here,
# CMFNet, needs 16.4 KB (DnCNN-S 3.1 KB, U-Net demo 1.7 KB; docs/reliability.md).
SAFE_MEM_PER_PIXEL = 32 << 10
# Bytes per input pixel the pipeline holds outside the network and outside tiles (float
# copies of input and output, blend weights, the clipped/rounded result); measured 60 B
# with an identity network, kept free of the tile budget.
PIPELINE_BYTES_PER_PIXEL = 64


class NonFiniteOutputError(ValueError):
    """The network returned NaN/Inf (finite weights that overflow on this input)."""


@dataclass
class InferOptions:
    """What the predictor needs to know about a model (from the model class, the
    config's ``infer:`` section or ``deploy.yaml``; later sources win).

    Attributes:
        color: ``auto`` (``rgb`` for 3-channel models, ``gray`` for 1-channel), ``rgb``,
            ``gray``, ``y`` (see the module docstring) or ``none`` (arrays with exactly
            ``in_channels`` channels go through unchanged, e.g. PmrNet's packed raw) or
            ``raw`` (Bayer frames through :meth:`Predictor.restore_raw`, the mode of
            ``configs/pmrnet/pmrnet_raw.yml``).
        gray_mode: how a 1-channel ``gray`` model treats a colour image:
            ``per_channel`` or ``y``.
        upsample_input: bicubic-upscale the input by ``scale`` before the network, which
            then keeps the size (SRCNN classic).
        pad_multiple: the network needs H and W to be multiples of this.
        scale: output size / input size of the whole pipeline.
        in_channels: network input channels.
        out_channels: network output channels.
        pad_mode: numpy pad mode used to reach ``pad_multiple`` (``reflect``).
        tile: tile side in pixels (at least :data:`MIN_TILE`), ``"auto"`` (from the
            memory budget), ``"off"`` (always the whole image) or None (the default:
            whole image when it fits the memory budget, ``auto`` tiles when not).
        tile_overlap: minimum tile overlap in pixels.
        self_ensemble: average the 8 flips/rotations (x8 slower, ~+0.1 dB typically).
        mem_per_pixel: bytes per input pixel (for ``tile: auto``; measured when None).
        max_memory: byte budget of one forward pass for tiling (default: half the free
            memory, at most 4 GiB).
    """

    color: str = "auto"
    gray_mode: str = "per_channel"
    upsample_input: bool = False
    pad_multiple: int = 1
    scale: int = 1
    in_channels: int = 3
    out_channels: int = 3
    pad_mode: str = "reflect"
    tile: Union[int, str] | None = None
    tile_overlap: int = 32
    self_ensemble: bool = False
    mem_per_pixel: float | None = None
    max_memory: float | None = None

    @classmethod
    def merge(cls, *sources: Dict[str, Any] | None) -> InferOptions:
        """Build from dicts; later non-None values override earlier ones; unknown keys
        are ignored here (the config section may hold keys for other tools)."""
        names = {f.name for f in fields(cls)}
        vals: Dict[str, Any] = {}
        for src in sources:
            for k, v in (src or {}).items():
                if k in names and v is not None:
                    vals[k] = v
        opts = cls(**vals)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.color not in COLOR_MODES:
            raise ValueError(f"infer.color must be one of {COLOR_MODES}, got '{self.color}'")
        if self.gray_mode not in GRAY_MODES:
            raise ValueError(f"infer.gray_mode must be one of {GRAY_MODES}, got '{self.gray_mode}'")
        if isinstance(self.tile, str):
            t = self.tile.strip().lower()
            if t in ("off", "none", "0"):
                self.tile = "off"
            elif t == "auto":
                self.tile = "auto"
            else:
                try:
                    self.tile = int(t)
                except ValueError:
                    raise ValueError(
                        f"tile must be a number of pixels, 'auto' or 'off', got '{self.tile}'"
                    ) from None
        if isinstance(self.tile, bool) or (
            self.tile is not None and not isinstance(self.tile, (int, float, str))
        ):
            raise ValueError(f"tile must be a number of pixels, 'auto' or 'off', got {self.tile!r}")
        if isinstance(self.tile, (int, float)):
            if self.tile == 0:
                self.tile = "off"  # explicit: always the whole image
            elif self.tile < MIN_TILE or self.tile != int(self.tile):
                # a negative tile used to turn tiling off silently
                raise ValueError(
                    f"tile must be at least {MIN_TILE} pixels (or 'auto', or 'off'/0 for the "
                    f"whole image), got {self.tile:g}"
                )
            else:
                self.tile = int(self.tile)
        if self.max_memory is not None and not (
            isinstance(self.max_memory, (int, float)) and self.max_memory > 0
        ):
            raise ValueError(
                f"max_memory must be a positive number of bytes, got {self.max_memory}"
            )
        for k in ("pad_multiple", "scale", "in_channels", "out_channels"):
            setattr(self, k, int(getattr(self, k)))
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.color == "y" and self.in_channels != 1:
            raise ValueError("infer.color 'y' needs a 1-channel model (in_channels: 1)")

    @property
    def resolved_color(self) -> str:
        if self.color != "auto":
            return self.color
        return {1: "gray", 3: "rgb"}.get(self.in_channels, "none")

    @property
    def net_scale(self) -> int:
        """Scale of the network itself (1 when the input is upsampled beforehand)."""
        return 1 if self.upsample_input else self.scale


def model_attributes(model: Any) -> Dict[str, Any]:
    """The predictor-relevant class attributes of a model (design contract)."""
    out = {}
    for k in ("pad_multiple", "scale", "in_channels", "out_channels", "upsample_input"):
        v = getattr(model, k, None)
        if v is not None:
            out[k] = v
    return out


def load_deploy_yaml(path: str) -> Dict[str, Any]:
    """Read ``deploy.yaml`` (``path`` is the file or the export folder)."""
    import yaml

    if os.path.isdir(path):
        path = os.path.join(path, "deploy.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found; export a model with tools/export.py first")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid deploy.yaml ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict) or "pad_multiple" not in data:
        raise ValueError(f"{path}: not a ppRestore deploy.yaml (no pad_multiple)")
    data["_dir"] = os.path.dirname(os.path.abspath(path))
    return data


def _onnx_path(info: Dict[str, Any], precision: str, backend: str) -> str:
    """The ONNX file an ONNX engine runs at ``precision`` (the int8 copy for int8)."""
    d = info["_dir"]
    if precision == "int8":
        if not info.get("int8_onnx_file"):
            raise ValueError(
                f"{d}: no int8 model; export with tools/export.py ... --quantize int8 "
                "--calib_dir DIR"
            )
        return os.path.join(d, info["int8_onnx_file"])
    if not info.get("onnx_file") and not os.path.isfile(os.path.join(d, "model.onnx")):
        raise ValueError(
            f"{d}: no model.onnx for --backend {backend}; export with tools/export.py --format onnx"
        )
    return os.path.join(d, info.get("onnx_file", "model.onnx"))


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
        model_dir = info["_dir"]
        backend = resolve_backend(info, backend, device, precision, use_trt)
        if backend in ("onnx", "openvino"):
            onnx_path = _onnx_path(info, precision, backend)
            if backend == "onnx":
                if precision not in ("fp32", "int8"):
                    raise ValueError(
                        f"ONNX Runtime runs fp32 or int8 here, not {precision}; "
                        "for bf16 use --backend openvino or paddle"
                    )
                be: Backend = OnnxRuntimeBackend(onnx_path, cpu_threads, device)
            else:
                be = OpenVinoBackend(onnx_path, cpu_threads, precision, device)
        elif backend == "paddle":
            if precision == "int8" and device.startswith("cpu") and not use_trt:
                # oneDNN int8 needs a quantised graph (quantize/dequantize ops); on an fp32
                # graph enable_mkldnn_int8 silently runs fp32, so refuse instead.
                if not info.get("int8_dir"):
                    raise ValueError(
                        "Paddle Inference has no working CPU int8 on Paddle 3.3.1 (see "
                        "docs/deploy.md); export with --quantize int8 and run int8 with "
                        "--backend onnx, openvino or auto"
                    )
                model_dir = os.path.join(model_dir, info["int8_dir"])
            be = PaddleInferenceBackend(
                model_dir,
                device=device,
                cpu_threads=cpu_threads,
                enable_mkldnn=enable_mkldnn,
                precision=precision,
                use_trt=use_trt,
                in_channels=int(info.get("in_channels", 3)),
                **{f"trt_{k}_shape": v for k, v in (info.get("trt_shapes") or {}).items()},
            )
        else:  # resolve_backend has refused anything else
            raise AssertionError(backend)
        base = {
            k: info[k]
            for k in (
                "pad_multiple",
                "scale",
                "in_channels",
                "out_channels",
                "upsample_input",
                "mem_per_pixel",
            )
            if k in info
        }
        opts = InferOptions.merge(base, info.get("infer"), overrides)
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

    def _memory_budget(self, h: int, w: int) -> int:
        """Bytes one forward pass may use: ``max_memory``, else half of what is still
        available once the pipeline's own whole-image arrays are set aside, at most
        4 GiB (bigger tiles are not faster on CPU)."""
        o = self.options
        if o.max_memory:
            return int(o.max_memory)
        s = o.net_scale
        reserve = PIPELINE_BYTES_PER_PIXEL * h * w * s * s
        return int(max(min((tiling.available_memory() - reserve) // 2, 4 << 30), 64 << 20))

    def _resolve_tile(self, h: int, w: int) -> int | None:
        o = self.options
        if o.tile == "off":
            return None
        if o.tile is None or o.tile == "auto":
            budget = self._memory_budget(h, w)
            if o.tile is None and o.mem_per_pixel is None and h * w * SAFE_MEM_PER_PIXEL <= budget:
                return None  # fits whatever the model: no need to measure it
            if o.mem_per_pixel is None:
                from .memory import measure_mem_per_pixel

                o.mem_per_pixel = measure_mem_per_pixel(
                    self.backend.run, o.in_channels, multiple=o.pad_multiple
                )
            # the network sees net_scale-times larger feature maps for SR models; the
            # measured number already includes that.
            return tiling.choose_tile_size(
                h, w, o.mem_per_pixel, o.pad_multiple, o.tile_overlap, budget
            )
        return int(o.tile)

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

    def _run_planes(self, img: np.ndarray, clip: bool = True) -> np.ndarray:
        """``H x W x C`` (C = network in_channels) float -> network output ``H' x W' x C'``."""
        o = self.options
        if o.upsample_input and o.scale > 1:
            img = _imresize(img, o.scale)
        x = img.transpose(2, 0, 1)[None].astype(np.float32)
        y = self.forward(x)
        # Clip each network output to the valid range before any channel recombination.
        y = y[0].transpose(1, 2, 0)
        return np.clip(y, 0.0, 1.0) if clip else y

    def predict(self, img: np.ndarray) -> np.ndarray:
        """Restore a float ``H x W x C`` (C = 1 or 3) image in [0, 1].

        Returns:
            float32 ``H*scale x W*scale x C`` in [0, 1], same channel count as the input
            (with ``color: none``: the network's output channels, not clipped).
        """
        img = np.asarray(img, dtype=np.float32)
        if img.ndim == 2:
            img = img[..., None]
        o = self.options
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
            return self._run_planes(img, clip=False).astype(np.float32, copy=False)
        if img.ndim != 3 or img.shape[2] not in (1, 3):
            raise ValueError(f"expected an H x W x C image with C = 1 or 3, got shape {img.shape}")
        c = img.shape[2]
        if color == "rgb":
            if o.in_channels != 3:
                raise ValueError(
                    f"infer.color 'rgb' needs a 3-channel model, this one has {o.in_channels}"
                )
            out = self._run_planes(np.repeat(img, 3, axis=2) if c == 1 else img)
            if c == 1:
                out = out.mean(axis=2, keepdims=True)
        elif color == "gray":
            if c == 1:
                out = self._run_planes(img)
            elif o.gray_mode == "per_channel":
                out = np.concatenate(
                    [self._run_planes(img[..., i : i + 1]) for i in range(3)], axis=2
                )
            else:
                out = self._run_on_y(img)
        else:  # "y"
            if c == 1:
                out = self._run_on_y(np.repeat(img, 3, axis=2)).mean(axis=2, keepdims=True)
            else:
                out = self._run_on_y(img)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    def _run_on_y(self, rgb: np.ndarray) -> np.ndarray:
        """Y through the network, Cb/Cr bicubic-resized to the output size (MATLAB
        BT.601 YCbCr, as SR papers evaluate)."""
        from ..data.color import rgb2ycbcr, ycbcr2rgb

        ycc = rgb2ycbcr(rgb.astype(np.float64)).astype(np.float32)
        y = self._run_planes(ycc[..., :1])
        s = self.options.scale
        cbcr = ycc[..., 1:]
        if s > 1:
            cbcr = _imresize(cbcr, s, output_shape=y.shape[:2])
        return ycbcr2rgb(
            np.concatenate([y, cbcr.astype(np.float32)], axis=2).astype(np.float64)
        ).astype(np.float32)

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


def _imresize(img: np.ndarray, scale: int, output_shape: tuple | None = None) -> np.ndarray:
    """MATLAB-compatible bicubic resize of a float ``H x W [x C]`` image."""
    from ..data.resize import imresize

    out = imresize(
        img.astype(np.float32), scale=None if output_shape else scale, output_shape=output_shape
    )
    return out.astype(np.float32, copy=False)
