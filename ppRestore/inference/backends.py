"""Engines that run a restoration network on an ``N x C x H x W`` float32 array.

The :class:`~ppRestore.inference.predictor.Predictor` does all pre/post-processing and
calls one of these; each backend only maps an array to an array:

* :class:`DynamicBackend` — a ``paddle.nn.Layer`` in dynamic graph mode (training code,
  notebooks, checking an export);
* :class:`PaddleInferenceBackend` — an exported model (``model.json``/``model.pdmodel`` +
  ``model.pdiparams``) on ``paddle.inference``: oneDNN on CPU (fp32/bf16), CUDA or
  TensorRT with dynamic shapes on GPU;
* :class:`OnnxRuntimeBackend` — an exported ``model.onnx`` (or its int8 copy
  ``model_int8.onnx``) on ONNX Runtime with full graph optimisation (optional);
* :class:`OpenVinoBackend` — the same ONNX files on OpenVINO (optional, ``[openvino]``):
  fp32, bf16 through its inference-precision hint (AVX512-BF16/AMX CPUs), int8 from
  the quantised ONNX file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..builder import ensure_dynamic_mode, restored_output

__all__ = [
    "Backend",
    "DynamicBackend",
    "PaddleInferenceBackend",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "find_model_files",
    "openvino_available",
    "PRECISIONS",
]

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class Backend:
    """Maps ``N x C x H x W`` float32 to the network's output (same layout)."""

    name = "base"

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class DynamicBackend(Backend):
    """A ``paddle.nn.Layer`` run eagerly under ``no_grad``.

    Args:
        model: the network (put into eval mode here).
        device: ``"cpu"`` or ``"gpu"`` (``"gpu:1"`` too); None keeps Paddle's current one.
    """

    name = "dynamic"

    def __init__(self, model: Any, device: str | None = None) -> None:
        import paddle

        if device:
            paddle.set_device(device)
        self.model = model
        self.model.eval()

    def run(self, x: np.ndarray) -> np.ndarray:
        import paddle

        ensure_dynamic_mode()  # this thread may not be the one that imported paddle
        with paddle.no_grad():
            out = restored_output(
                self.model(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))
            )
        return out.numpy().astype(np.float32, copy=False)


def find_model_files(model_dir: str, prefix: str = "model") -> tuple:
    """Return ``(program_file, params_file)`` for an exported model folder.

    Paddle >= 3 (PIR) writes ``model.json``; Paddle 2.x writes ``model.pdmodel``. Both
    are accepted, the PIR file first.
    """
    params = os.path.join(model_dir, prefix + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        prog = os.path.join(model_dir, prefix + ext)
        if os.path.isfile(prog):
            if not os.path.isfile(params):
                raise FileNotFoundError(
                    f"{model_dir}: {prefix}{ext} found but {prefix}.pdiparams is missing"
                )
            return prog, params
    raise FileNotFoundError(
        f"{model_dir}: no exported model ({prefix}.json or {prefix}.pdmodel); run tools/export.py first"
    )


def _program_has_op(prog_path: str, op: str) -> bool:
    """Whether an exported program (``model.json`` text or ``.pdmodel`` protobuf) has an
    operator of type ``op``.

    Matched as an op *type*, not any substring: Paddle 2.x programs also store each op's
    Python call stack, where a source line such as ``n_prelu = ...`` would read as a
    ``prelu`` op. PIR JSON names ops ``"#":"<dialect>.<op>"``; the protobuf ``OpDesc``
    stores its type as field 3 (tag ``0x1a``, then the length byte)."""
    import re

    try:
        with open(prog_path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    name = op.encode()
    if re.search(rb'"#":"\d+\.' + re.escape(name) + rb'"', data):
        return True
    return len(name) < 128 and (b"\x1a" + bytes([len(name)]) + name) in data


class PaddleInferenceBackend(Backend):
    """An exported model on ``paddle.inference``.

    Args:
        model_dir: folder with ``model.json`` (or ``model.pdmodel``) and ``model.pdiparams``.
        device: ``"cpu"`` or ``"gpu"``.
        cpu_threads: math-library threads on CPU.
        enable_mkldnn: use oneDNN kernels on CPU (much faster than the plain CPU kernels).
        precision: ``fp32``; ``bf16`` (CPU oneDNN, needs AVX512-BF16/AMX to be fast);
            ``fp16`` (GPU); ``int8`` (TensorRT on GPU, or a quantised export on CPU).
        use_trt: TensorRT subgraphs on GPU with dynamic shapes ``trt_min/opt/max_shape``.
        gpu_mem_mb: initial GPU memory pool.
        ir_optim: graph optimisation passes (fusions); on by default.
    """

    name = "paddle_inference"

    def __init__(
        self,
        model_dir: str,
        device: str = "cpu",
        cpu_threads: int | None = None,
        enable_mkldnn: bool = True,
        precision: str = "fp32",
        use_trt: bool = False,
        in_channels: int = 3,
        trt_min_shape: Sequence[int] = (1, 3, 32, 32),
        trt_opt_shape: Sequence[int] = (1, 3, 512, 512),
        trt_max_shape: Sequence[int] = (1, 3, 2048, 2048),
        gpu_mem_mb: int = 500,
        ir_optim: bool = True,
    ) -> None:
        from paddle import inference as pi

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
        prog, params = find_model_files(model_dir)
        config = pi.Config(prog, params)
        config.disable_glog_info()
        config.switch_ir_optim(ir_optim)
        if prog.endswith(".pdmodel"):
            # Paddle 3.3 PIR predictors fail with memory_optimize_pass ("Not find
            # predictor_id 0 and pass_name memory_optimize_pass"); old-IR models use it.
            config.enable_memory_optim()
        dev = (device or "cpu").split(":")[0]
        if dev == "gpu":
            trt_shapes = (trt_min_shape, trt_opt_shape, trt_max_shape)
            _configure_gpu(
                config, model_dir, device, precision, use_trt, gpu_mem_mb, trt_shapes, in_channels
            )
        else:
            _configure_cpu(config, prog, cpu_threads, enable_mkldnn, precision)
        self.config = config
        self.predictor = pi.create_predictor(config)
        self.input_names: List[str] = list(self.predictor.get_input_names())
        self.output_names: List[str] = list(self.predictor.get_output_names())
        self.device, self.precision = dev, precision

    def run(self, x: np.ndarray) -> np.ndarray:
        ih = self.predictor.get_input_handle(self.input_names[0])
        x = np.ascontiguousarray(x, dtype=np.float32)
        ih.reshape(list(x.shape))
        ih.copy_from_cpu(x)
        self.predictor.run()
        out = self.predictor.get_output_handle(self.output_names[0]).copy_to_cpu()
        return np.asarray(out, dtype=np.float32)


def _input_name_hint(model_dir: str) -> str:
    """The graph's input name from the export's deploy.yaml (``x`` when absent)."""
    import yaml

    p = os.path.join(model_dir, "deploy.yaml")
    if os.path.isfile(p):
        with open(p, encoding="utf-8") as f:
            return (yaml.safe_load(f) or {}).get("input_name", "x")
    return "x"


def _configure_gpu(
    config: Any,
    model_dir: str,
    device: str,
    precision: str,
    use_trt: bool,
    gpu_mem_mb: int,
    trt_shapes: Tuple[Sequence[int], Sequence[int], Sequence[int]],
    in_channels: int,
) -> None:
    """GPU settings of a ``paddle.inference.Config``: device, fp16, or TensorRT with the
    dynamic ``(min, opt, max)`` shapes ``trt_shapes`` (their C replaced by ``in_channels``)."""
    from paddle import inference as pi

    dev_id = int(device.split(":")[1]) if ":" in device else 0
    config.enable_use_gpu(gpu_mem_mb, dev_id)
    if use_trt:
        prec = {
            "fp32": pi.PrecisionType.Float32,
            "fp16": pi.PrecisionType.Half,
            "bf16": pi.PrecisionType.Bfloat16,
            "int8": pi.PrecisionType.Int8,
        }[precision]
        config.enable_tensorrt_engine(
            workspace_size=1 << 30,
            max_batch_size=1,
            min_subgraph_size=3,
            precision_mode=prec,
            use_static=False,
            use_calib_mode=precision == "int8",
        )
        name = _input_name_hint(model_dir)
        shape = lambda s: [int(s[0]), int(in_channels), int(s[2]), int(s[3])]  # noqa: E731
        mn, opt, mx = trt_shapes
        config.set_trt_dynamic_shape_info({name: shape(mn)}, {name: shape(mx)}, {name: shape(opt)})
    elif precision == "fp16":
        config.enable_use_gpu(gpu_mem_mb, dev_id, pi.PrecisionType.Half)
    elif precision in ("bf16", "int8"):
        raise ValueError(f"precision {precision} on GPU needs --use_trt")


def _configure_cpu(
    config: Any, prog: str, cpu_threads: int | None, enable_mkldnn: bool, precision: str
) -> None:
    """CPU settings of a ``paddle.inference.Config``: threads, oneDNN, bf16/int8."""
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(cpu_threads or os.cpu_count() or 1))
    if precision == "fp16":
        raise ValueError("fp16 is a GPU precision; on CPU use bf16 (oneDNN) or fp32")
    if not (enable_mkldnn or precision in ("bf16", "int8")):
        config.disable_mkldnn()
        return
    config.enable_mkldnn()
    if _program_has_op(prog, "leaky_relu"):
        # Paddle 3.3.1's new-IR conv + leaky_relu oneDNN fusion segfaults
        # (measured); the unfused leaky_relu is a cheap eltwise op.
        config.delete_pass("conv_activation_onednn_fuse_pass")
    # oneDNN caches primitives per input shape; tiles and image sizes vary,
    # so keep the cache bounded instead of growing with every new size.
    config.set_mkldnn_cache_capacity(10)
    if precision == "bf16":
        config.enable_mkldnn_bfloat16()
    elif precision == "int8":
        config.enable_mkldnn_int8()


def _onnx_file(model_path: str) -> str:
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.onnx")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(
            f"{model_path}: no ONNX model; export with tools/export.py --format onnx"
        )
    return model_path


class OnnxRuntimeBackend(Backend):
    """An exported ``model.onnx`` on ONNX Runtime (``pip install onnxruntime``).

    Args:
        model_path: the ``.onnx`` file (or its folder, meaning ``model.onnx``); an int8
            (QDQ) file from ``tools/export.py --quantize int8`` runs int8 kernels (VNNI).
        cpu_threads: intra-op threads (default: ONNX Runtime's, all cores).
        device: ``cpu`` or ``gpu`` (CUDA execution provider when installed).
    """

    name = "onnxruntime"

    def __init__(
        self, model_path: str, cpu_threads: int | None = None, device: str = "cpu"
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                "ONNX Runtime is not installed: pip install onnxruntime (or ppRestore[onnx])"
            ) from None
        model_path = _onnx_file(model_path)
        so = ort.SessionOptions()
        # All graph rewrites (constant folding, conv+add/activation fusions, layout
        # transforms to NCHWc), stated here rather than relied on as a default.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if cpu_threads:
            so.intra_op_num_threads = int(cpu_threads)
            so.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("gpu"):
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(model_path, so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.model_path = model_path

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32)


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVinoBackend(Backend):
    """An exported ONNX file on OpenVINO's CPU plugin (``pip install openvino``).

    The graph keeps dynamic height and width; OpenVINO compiles one static-shape
    version per input shape (faster kernels than the dynamic-shape path) and keeps the
    last ``shape_cache`` of them, so tiles of one size compile once.

    Args:
        model_path: ``model.onnx`` (fp32/bf16) or ``model_int8.onnx`` (QDQ int8), or the
            export folder (meaning ``model.onnx``).
        cpu_threads: inference threads (default: OpenVINO's, all cores).
        precision: ``fp32`` (``INFERENCE_PRECISION_HINT f32``: OpenVINO would otherwise
            pick bf16 by itself on AMX CPUs), ``bf16`` (hint ``bf16``: fast on
            AVX512-BF16/AMX; elsewhere OpenVINO falls back to f32), ``int8`` (a QDQ file:
            its quantised convolutions run int8; the rest stays f32).
        device: OpenVINO device name (``CPU``; ``GPU`` for Intel GPUs).
        shape_cache: how many per-shape compiled models to keep.
    """

    name = "openvino"

    def __init__(
        self,
        model_path: str,
        cpu_threads: int | None = None,
        precision: str = "fp32",
        device: str = "cpu",
        shape_cache: int = 4,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ImportError(
                "OpenVINO is not installed: pip install openvino (or ppRestore[openvino])"
            ) from None
        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"OpenVINO runs fp32, bf16 or int8, not '{precision}'")
        self.model_path = _onnx_file(model_path)
        self.core = ov.Core()
        self.model = self.core.read_model(self.model_path)
        self.device = {"cpu": "CPU", "gpu": "GPU"}.get(device.split(":")[0].lower(), device)
        hint = "bf16" if precision == "bf16" else "f32"
        self.compile_config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if cpu_threads:
            self.compile_config["INFERENCE_NUM_THREADS"] = int(cpu_threads)
        self.precision = precision
        self.shape_cache = max(1, int(shape_cache))
        self._compiled: Dict[tuple, Any] = {}
        self._input = self.model.inputs[0].get_any_name()

    def _request(self, shape: tuple) -> Any:
        req = self._compiled.pop(shape, None)
        if req is None:
            m = self.model.clone()
            m.reshape({self._input: list(shape)})
            req = self.core.compile_model(
                m, self.device, self.compile_config
            ).create_infer_request()
            while len(self._compiled) >= self.shape_cache:
                self._compiled.pop(next(iter(self._compiled)))  # least recently used
        self._compiled[shape] = req  # re-inserted last: most recently used
        return req

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        req = self._request(tuple(int(s) for s in x.shape))
        req.infer({0: x})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32)
