"""An exported model folder: its ``deploy.yaml`` and the engine that runs it.

:meth:`Predictor.from_exported <ppRestore.inference.predictor.Predictor.from_exported>`
reads the folder with :func:`load_deploy_yaml`, picks the engine with
:func:`~ppRestore.inference.predictor.resolve_backend` and opens it with
:func:`open_exported_backend`. Split out of :mod:`ppRestore.inference.predictor`, which
re-exports :func:`load_deploy_yaml`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from .backends import Backend, OnnxRuntimeBackend, OpenVinoBackend, PaddleInferenceBackend

__all__ = ["load_deploy_yaml", "open_exported_backend", "exported_attributes"]

# deploy.yaml keys that are model facts for :class:`~.options.InferOptions`.
_MODEL_KEYS = (
    "pad_multiple",
    "scale",
    "in_channels",
    "out_channels",
    "upsample_input",
    "mem_per_pixel",
)


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


def exported_attributes(info: Dict[str, Any]) -> Dict[str, Any]:
    """The model facts ``deploy.yaml`` records (the first source of the options)."""
    return {k: info[k] for k in _MODEL_KEYS if k in info}


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


def _open_onnx_backend(
    info: Dict[str, Any], backend: str, device: str, cpu_threads: int | None, precision: str
) -> Backend:
    """ONNX Runtime or OpenVINO on the export's ONNX file (the int8 one for int8)."""
    onnx_path = _onnx_path(info, precision, backend)
    if backend == "openvino":
        return OpenVinoBackend(onnx_path, cpu_threads, precision, device)
    if precision not in ("fp32", "int8"):
        raise ValueError(
            f"ONNX Runtime runs fp32 or int8 here, not {precision}; "
            "for bf16 use --backend openvino or paddle"
        )
    return OnnxRuntimeBackend(onnx_path, cpu_threads, device)


def _paddle_model_dir(info: Dict[str, Any], device: str, precision: str, use_trt: bool) -> str:
    """The Paddle Inference graph folder: the export itself, or its int8 copy for CPU int8."""
    model_dir = info["_dir"]
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
    return model_dir


def open_exported_backend(
    info: Dict[str, Any],
    backend: str,
    device: str = "cpu",
    cpu_threads: int | None = None,
    enable_mkldnn: bool = True,
    precision: str = "fp32",
    use_trt: bool = False,
) -> Tuple[Backend, str]:
    """Open the resolved ``backend`` (``paddle``, ``onnx`` or ``openvino``) on the export
    ``info`` describes; returns the engine and the folder it runs from."""
    if backend in ("onnx", "openvino"):
        return _open_onnx_backend(info, backend, device, cpu_threads, precision), info["_dir"]
    if backend != "paddle":  # resolve_backend has refused anything else
        raise AssertionError(backend)
    model_dir = _paddle_model_dir(info, device, precision, use_trt)
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
    return be, model_dir
