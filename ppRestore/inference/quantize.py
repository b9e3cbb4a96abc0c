"""Post-training static int8 quantisation of an exported model (CPU, VNNI).

``tools/export.py ... --quantize int8 --calib_dir DIR`` calls :func:`quantize_int8`:

1. ``model.onnx`` runs through ppRestore's own Predictor on crops of the images of
   ``calib_dir`` (the model's colour handling and padding; no tiling) and the network
   inputs it sees are recorded. A denoiser is calibrated on what it will see: Gaussian
   noise (``calib_noise``, sigma 25 by default for ``task: denoise``) is added; raw
   models get synthesised sensor noise;
2. BatchNorm and biases are folded into the convolutions, cross-layer equalisation
   (``equalize``, on by default; :mod:`~ppRestore.inference.int8_equalize`, depthwise
   convolutions included) evens out channel ranges, and ONNX Runtime's
   ``quantize_static`` calibrates activation ranges (MinMax) and writes
   ``model_int8.onnx`` in QDQ form: per-channel int8 weights, uint8 activations around
   every convolution (and matrix product); a ReLU after a convolution is fused into
   its output's quantisation (``fuse_relu``);
3. :mod:`~ppRestore.inference.int8_recipes` brings the QDQ graph closer to float: GPTQ
   weight rounding (``gptq``), the image's tensors left float (``float_output``), and,
   off by default, every residual path float (``float_skips``: slow on ONNX Runtime)
   and bias correction. ONNX Runtime and OpenVINO run it;
4. layers in ``keep_fp32`` (``first``/``last``, node names, ``auto``) stay in float
   (:mod:`~ppRestore.inference.int8_keep`); a config's ``export.int8`` section can set
   any of these options as that model's recipe (:func:`config_recipe`);
5. the input's height and width must stay dynamic, and int8 is compared with fp32 at
   an odd size no calibration crop had. ``deploy.yaml`` records the file as
   ``int8_onnx_file``; ``--precision int8`` runs it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from .int8_calib import _ISOS, _default_noise, collect_calibration_inputs
from .int8_keep import auto_keep, relus_after, select_keep_nodes

__all__ = [
    "quantize_int8",
    "config_recipe",
    "collect_calibration_inputs",
    "select_keep_nodes",
    "INT8_ONNX",
]

INT8_ONNX = "model_int8.onnx"

# quantize_int8 arguments a config's ``export.int8`` section may set: the model's measured
# recipe (configs/pmrnet/pmrnet_raw.yml), so that ``--quantize int8 --calib_dir DIR``
# alone gives it; tools/export.py flags given on the command line override it.
RECIPE_KEYS = (
    "sizes", "max_images", "keep_fp32", "method", "target_psnr", "max_keep", "calib_noise",
    "fuse_relu", "gptq", "float_output", "bias_correction", "equalize", "float_skips",
    "calib_isos",
)  # fmt: skip


def config_recipe(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The ``export.int8`` section of a loaded config, its keys checked (a typo is an
    error naming the closest key), as :func:`quantize_int8` keyword arguments."""
    from ..config import ConfigError, _check_key

    sec = (cfg.get("export") or {}).get("int8")
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise ConfigError(f"export.int8 must be a mapping of {', '.join(RECIPE_KEYS)}")
    for k in sec:
        _check_key(k, RECIPE_KEYS, "export.int8")
    return dict(sec)


def _dynamic_hw(model: Any) -> bool:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(not d.HasField("dim_value") for d in (dims[2], dims[3]))


_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
_METHOD_TEXT = "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, "


def _fold(src: str, dst: str) -> None:
    """Fold BatchNorm (and constant Mul/Add) into the convolutions (quantising before a
    per-channel BN scale crushes channels) with ORT's "basic" rewrites (shapes stay)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _ort_quantize(
    opt: str, dst: str, inputs: List[np.ndarray], method: str, exclude: List[str], fuse_relu: bool
) -> None:
    """ONNX Runtime ``quantize_static`` in QDQ form on the folded graph ``opt``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = onnx.load(opt).graph.input[0].name
    feed = inputs
    if method != "minmax":
        # ORT's histogram calibrators stack all activations of a tensor into one array,
        # so their inputs must share a shape: the smallest, cut from each input.
        h0, w0 = min(x.shape[2] for x in inputs), min(x.shape[3] for x in inputs)
        feed = [np.ascontiguousarray(x[:, :, :h0, :w0]) for x in inputs]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feed)

        def get_next(self) -> Dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {name: x}

    # Convolutions and matrix products carry the arithmetic; quantising the element-wise
    # glue too would add Q/DQ pairs (time and error) for nothing. A quantised Relu after
    # a conv is removed: the conv output is quantised once on [0, max] instead of on its
    # signed range and then again after the Relu.
    ops = ["Conv", "MatMul", "Gemm"] + (["Relu"] if fuse_relu else [])
    quantize_static(
        opt, dst, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=ops, nodes_to_exclude=exclude,
        calibrate_method=getattr(CalibrationMethod, _METHODS[method]),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )  # fmt: skip


def _refine(path: str, fmodel: Any, inputs: List[np.ndarray], opts: Dict[str, bool]) -> List[str]:
    """Apply the :mod:`~ppRestore.inference.int8_recipes` named true in ``opts`` to the
    QDQ file ``path`` in place; returns what was applied."""
    import onnx

    from . import int8_recipes as rec

    q = onnx.load(path)
    done = []
    # a few inputs are plenty for per-layer statistics and cost a fraction of the time
    few = inputs[:: max(1, len(inputs) // 8)]
    if opts.get("gptq") and rec.apply_gptq(q, fmodel, rec.conv_input_moments(fmodel, few)):
        done.append("gptq")
    if opts.get("bias_correction") and rec.correct_biases(q, fmodel, few):
        done.append("bias_correction")
    skips = bool(opts.get("float_skips"))
    if (opts.get("float_output") or skips) and rec.float_unread(q, fmodel, skips):
        done.append("float_skips_and_output" if skips else "float_output")
    onnx.save(q, path)
    return done


def _check(export_dir: str, info: Dict[str, Any], shapes: list, x0: np.ndarray) -> Dict:
    """int8 vs fp32 at a size no calibration crop had (real data, mirrored out)."""
    from .predictor import Predictor

    m = int(info.get("pad_multiple", 1))
    h = max(h for h, _ in shapes) + 3 * m
    w = max(w for _, w in shapes) // 2 + 5 * m
    x0 = x0[:1, : int(info.get("in_channels", 3))]
    pad = ((0, 0), (0, 0), (0, max(0, h - x0.shape[2])), (0, max(0, w - x0.shape[3])))
    x = np.ascontiguousarray(np.pad(x0, pad, mode="symmetric")[:, :, :h, :w])
    ref = Predictor.from_exported(export_dir, backend="onnx").backend.run(x)
    got = Predictor.from_exported(export_dir, backend="onnx", precision="int8").backend.run(x)
    rng_out = float(ref.max() - ref.min()) or 1.0
    psnr = float(10 * np.log10(rng_out**2 / max(float(np.mean((got - ref) ** 2)), 1e-20)))
    err = float(np.abs(got - ref).max())
    return {"size": f"{h}x{w}", "max_abs_diff": err, "psnr_vs_fp32": round(psnr, 2)}


def _equalize(fmodel: Any, inputs: List[np.ndarray], log: Callable[[str], None]) -> bool:
    """Cross-layer equalisation of ``fmodel`` in place, kept only where the float output
    stays the same (it must: the rescaling is exact up to float rounding)."""
    import copy

    from .int8_equalize import equalize
    from .int8_recipes import _run_tensors

    before = copy.deepcopy(fmodel)
    if not equalize(fmodel, inputs[:: max(1, len(inputs) // 8)]):
        return False
    out = fmodel.graph.output[0].name
    x = inputs[:1]
    a = next(_run_tensors(before, [out], x))[out]
    b = next(_run_tensors(fmodel, [out], x))[out]
    if not np.allclose(a, b, rtol=1e-3, atol=1e-4 * (float(np.abs(a).max()) or 1.0)):
        log("int8: cross-layer equalisation changed the float output; not used")
        fmodel.CopyFrom(before)
        return False
    return True


def quantize_int8(
    export_dir: str,
    calib_dir: str,
    sizes: Sequence[int] = (256, 160),
    max_images: int = 16,
    keep_fp32: Sequence[str] = (),
    seed: int = 0,
    log: Callable[[str], None] = print,
    method: str = "minmax",
    target_psnr: float = 47.0,
    max_keep: int = 8,
    calib_noise: float | None = None,
    fuse_relu: bool = True,
    gptq: bool = True,
    float_output: bool = True,
    bias_correction: bool = False,
    equalize: bool = True,
    float_skips: bool = False,
    calib_isos: Sequence[float] | None = None,
) -> Dict[str, Any]:
    """Write ``model_int8.onnx`` calibrated on ``calib_dir``; returns deploy.yaml's ``int8``.

    Over 60 lines only through its signature and this Args block (the export CLI's int8
    options); the body is its steps in order: load, calibrate, fold, quantise, publish.

    Args:
        sizes, max_images: crop sizes (pixels) per image; images used (first names).
        keep_fp32: layers left in float (``first``, ``last``, ONNX node names) and
            ``auto``: the worst layers alone (at most ``max_keep``) until int8 is within
            ``target_psnr`` dB of fp32 on calibration crops (:func:`auto_keep`).
        max_keep: ``auto``'s limit on layers kept in float.
        method: activation ranges: ``minmax``, ``percentile`` (99.999th) or ``entropy``.
        calib_noise: Gaussian sigma (0-255) added to calibration inputs; None: 25 for
            ``task: denoise`` exports, else 0.
        fuse_relu, gptq, float_output, equalize, float_skips, bias_correction: the
            module's techniques; the first four (default on) helped (docs/benchmarks.md).
        calib_isos: raw models: the ISO(s) the synthesised calibration frames get; the
            deploy's ISO gives ranges that fit it (PmrNet at ISO 3200: -0.44 dB instead
            of -1.67 with 800-6400). None: 800, 1600, 3200, 6400.
    """
    if method not in _METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(_METHODS)}, got '{method}'")
    import onnx

    info, src = _load_export(export_dir)
    noise = _default_noise(info, calib_noise)
    isos = tuple(float(i) for i in calib_isos) if calib_isos else _ISOS
    if any(not np.isfinite(i) or i <= 0 for i in isos):
        raise ValueError(f"--calib_iso must be positive ISO values, got {list(calib_isos)}")
    inputs = collect_calibration_inputs(
        export_dir, calib_dir, sizes, max_images, isos=isos, seed=seed, noise=noise
    )
    shapes = sorted({tuple(x.shape[2:]) for x in inputs})
    log(f"int8: {len(inputs)} calibration inputs, sizes {', '.join(f'{h}x{w}' for h, w in shapes)}")
    dst = os.path.join(export_dir, INT8_ONNX)
    tmp, opt = dst + ".tmp.onnx", dst + ".fp32-folded.onnx"
    _fold(src, opt)
    fmodel = onnx.load(opt)
    equalized = equalize and _equalize(fmodel, inputs, log)
    if equalized:
        onnx.save(fmodel, opt)
    opts = dict(gptq=gptq, float_output=float_output, float_skips=float_skips,
                bias_correction=bias_correction, fuse_relu=fuse_relu,
                target_psnr=target_psnr, max_keep=max_keep)  # fmt: skip
    keep, applied, sens = _build(opt, tmp, fmodel, inputs, keep_fp32, method, opts, log)
    recipe = ["cross_layer_equalization"] * bool(equalized) + ["relu_fusion"] * bool(fuse_relu)
    recipe += applied
    os.remove(opt)
    section = {
        "file": INT8_ONNX, "method": _METHOD_TEXT + _METHODS[method], "recipe": recipe,
        "calib_dir": os.path.abspath(calib_dir), "calib_inputs": len(inputs),
        "calib_sizes": [f"{a}x{b}" for a, b in shapes], "calib_noise": noise,
        "calib_isos": list(isos) if (info.get("infer") or {}).get("color") == "raw" else None,
        "kept_fp32": keep, "auto_keep_error": {k: round(v, 2) for k, v in sens.items()} or None,
    }  # fmt: skip
    return _publish(export_dir, info, tmp, section, shapes, inputs[0], log)


def _build(opt, tmp, fmodel, inputs, keep_fp32, method, opts, log) -> tuple:
    """Quantise the folded graph ``opt`` to ``tmp`` with the layers of ``keep_fp32``
    (and ``auto``'s choice) in float; returns (kept, recipes applied, auto's gains)."""
    import onnx

    keep = select_keep_nodes(fmodel, [k for k in keep_fp32 if str(k) != "auto"])

    def build(exclude: List[str]) -> List[str]:
        relus = relus_after(fmodel, exclude) + relus_after(fmodel, None)
        relus = relus if opts["fuse_relu"] else []
        _ort_quantize(opt, tmp, inputs, method, exclude + relus, opts["fuse_relu"])
        return _refine(tmp, fmodel, inputs, opts)

    sens: Dict[str, float] = {}
    if "auto" in [str(k) for k in keep_fp32]:
        build(keep)
        step = max(1, len(inputs) // 6)
        probe = [np.ascontiguousarray(x[:, :, :96, :96]) for x in inputs[::step]]
        q = onnx.load(tmp)
        extra, sens = auto_keep(fmodel, q, probe, opts["target_psnr"], opts["max_keep"], log)
        keep = keep + [k for k in extra if k not in keep]
    if keep:
        log(f"int8: kept in fp32: {', '.join(keep)}")
    return keep, build(keep), sens


def _load_export(export_dir: str) -> tuple:
    """(deploy.yaml contents, path of the fp32 ONNX file) of an export."""
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ImportError(
            "int8 quantisation needs onnx and onnxruntime: pip install ppRestore[onnx]"
        ) from None
    from .export import drop_unused_pad_values
    from .predictor import load_deploy_yaml

    info = load_deploy_yaml(export_dir)
    src = os.path.join(export_dir, info.get("onnx_file", "model.onnx"))
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: --quantize int8 needs the ONNX export (--format onnx)")
    fp32_model = onnx.load(src)
    if drop_unused_pad_values(fp32_model):  # an export made before export_onnx did this
        onnx.save(fp32_model, src)
    return info, src


def _publish(
    export_dir: str, info: Dict, tmp: str, section: Dict, shapes: list, x0, log: Callable
) -> Dict[str, Any]:
    """Move the quantised file ``tmp`` into place, record it in deploy.yaml, check it."""
    import onnx

    from .export import write_deploy_yaml

    q = onnx.load(tmp)
    if not _dynamic_hw(q):
        os.remove(tmp)
        raise RuntimeError("the quantised graph has a fixed input height/width; not written")
    os.replace(tmp, os.path.join(export_dir, INT8_ONNX))
    n_q = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    section["quantized_tensors"] = n_q
    info["int8_onnx_file"] = INT8_ONNX
    info["int8"] = section
    write_deploy_yaml(export_dir, {k: v for k, v in info.items() if k != "_dir"})
    c = section["check"] = _check(export_dir, info, shapes, x0)
    write_deploy_yaml(export_dir, {k: v for k, v in info.items() if k != "_dir"})
    log(
        f"int8: {INT8_ONNX} ({n_q} quantised tensors; {', '.join(section['recipe']) or 'plain'}); "
        f"at {c['size']} (not a calibration size) max |int8 - fp32| = {c['max_abs_diff']:.3g}, "
        f"PSNR vs fp32 {c['psnr_vs_fp32']:.1f} dB"
    )
    return section
