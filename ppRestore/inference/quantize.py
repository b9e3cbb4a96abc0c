"""Post-training static int8 quantisation of an exported model (CPU, VNNI).

``tools/export.py ... --quantize int8 --calib_dir DIR`` calls :func:`quantize_int8`:

1. the export's ``model.onnx`` runs through ppRestore's own Predictor on the images of
   ``calib_dir`` (crops at several sizes, the model's colour handling and padding), and
   the network inputs it really sees are recorded;
2. ONNX Runtime's ``quantize_static`` calibrates activation ranges on them (MinMax) and
   writes ``model_int8.onnx`` in QDQ form: per-channel int8 weights and uint8
   activations around every convolution (and matrix product). The QDQ file runs int8
   kernels on ONNX Runtime and on OpenVINO, which reads the same QuantizeLinear /
   DequantizeLinear pairs;
3. layers named in ``keep_fp32`` (``first``/``last`` convolution, or node names) stay in
   float: the ones a model's PSNR is sensitive to;
4. the result is checked: the input's height and width stay dynamic in the graph (a
   file calibrated at one size runs at any other), and int8 is compared with fp32 at an
   odd size none of the calibration crops had.

``deploy.yaml`` records the file as ``int8_onnx_file``; ``--precision int8`` runs it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

__all__ = ["quantize_int8", "collect_calibration_inputs", "select_keep_nodes", "INT8_ONNX"]

INT8_ONNX = "model_int8.onnx"


def _crops(img: np.ndarray, sizes: Sequence[int], rng: np.random.Generator) -> List[np.ndarray]:
    out = []
    h, w = img.shape[:2]
    for s in sizes:
        ch, cw = min(int(s), h), min(int(s), w)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(img[y : y + ch, x : x + cw]))
    return out


def collect_calibration_inputs(
    export_dir: str,
    calib_dir: str,
    sizes: Sequence[int] = (256, 160),
    max_images: int = 16,
    isos: Sequence[float] = (800, 1600, 3200, 6400),
    seed: int = 0,
) -> List[np.ndarray]:
    """The ``N x C x H x W`` arrays the exported network receives when ppRestore restores
    crops (one per size in ``sizes``) of the first ``max_images`` images of ``calib_dir``.

    Raw models (``infer.color: raw``) get Bayer frames synthesised from the images
    (:func:`~ppRestore.data.raw.unprocess_rgb` + sensor noise at one of ``isos``), or the
    folder's ``.npy``/camera raw frames when it has no images.
    """
    from ..data.io import list_images, read_image
    from .backends import Backend
    from .predictor import Predictor

    pred = Predictor.from_exported(export_dir, backend="onnx", precision="fp32")
    seen: List[np.ndarray] = []

    class _Recorder(Backend):
        name = "calibration"

        def __init__(self, inner: Backend) -> None:
            self.inner = inner

        def run(self, x: np.ndarray) -> np.ndarray:
            seen.append(np.array(x, dtype=np.float32))
            return self.inner.run(x)

    pred.backend = _Recorder(pred.backend)
    rng = np.random.default_rng(seed)
    raw = pred.options.resolved_color == "raw"
    try:
        files = list_images(calib_dir)
    except Exception as e:  # noqa: BLE001 - a raw-only folder lists no images
        if not raw:
            raise ValueError(f"--calib_dir {calib_dir}: {e}") from None
        files = []
    files = files[: int(max_images)]
    if raw:
        from ..data.raw import add_raw_noise, read_raw, unprocess_rgb
        from .batch import list_raw_files

        if not files:
            for i, f in enumerate(list_raw_files(calib_dir)[: int(max_images)]):
                r = read_raw(f, "RGGB" if f.lower().endswith(".npy") else None)
                for crop in _crops(r.bayer, [s - s % 2 for s in sizes], rng):
                    pred.restore_raw(crop, float(isos[i % len(isos)]), r.pattern)
        for i, f in enumerate(files):
            rgb = read_image(f).to_float()
            for j, crop in enumerate(_crops(rgb, sizes, rng)):
                bayer, _ = unprocess_rgb(crop, rng)
                iso = float(isos[(i + j) % len(isos)])
                pred.restore_raw(add_raw_noise(bayer, iso, rng), iso, "RGGB")
    else:
        for f in files:
            for crop in _crops(read_image(f).to_float(), sizes, rng):
                pred.predict(crop)
    if not seen:
        raise ValueError(f"--calib_dir {calib_dir}: no usable calibration images")
    return seen


def _edge_convs(model: Any, last: bool) -> List[str]:
    """Convolutions next to the image: reached from the graph input (``last`` False) or
    reaching the graph output (``last`` True) through non-convolution nodes only."""
    convs = ("Conv", "ConvTranspose")
    nodes = list(model.graph.node)
    if last:
        prod = {o: n for n in nodes for o in n.output}
        todo, seen, out = [o.name for o in model.graph.output], set(), []
        while todo:
            n = prod.get(todo.pop())
            if n is None or n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type in convs:
                out.append(n.name)
            else:
                todo.extend(n.input)
    else:
        cons: Dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                cons.setdefault(i, []).append(n)
        todo, seen, out = [model.graph.input[0].name], set(), []
        while todo:
            for n in cons.get(todo.pop(), []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.op_type in convs:
                    out.append(n.name)
                else:
                    todo.extend(n.output)
    order = {n.name: i for i, n in enumerate(nodes)}
    return sorted(out, key=order.get)


def select_keep_nodes(model: Any, keep: Sequence[str]) -> List[str]:
    """Node names for ``keep`` entries: ``first``/``last`` (the convolutions next to the
    input / output image: every conv that reads the input, or feeds the output, through
    non-conv nodes only) or explicit node names."""
    names = {n.name for n in model.graph.node}
    out: List[str] = []
    for k in keep:
        k = str(k).strip()
        if not k:
            continue
        if k in ("first", "last"):
            out += _edge_convs(model, last=k == "last")
        elif k in names:
            out.append(k)
        else:
            raise ValueError(f"keep_fp32: no node named '{k}' in the ONNX graph")
    return sorted(set(out), key=out.index)


def _dynamic_hw(model: Any) -> bool:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(not d.HasField("dim_value") for d in (dims[2], dims[3]))


def _float_islands(qmodel: Any, fmodel: Any, names: Sequence[str]) -> Any:
    """A copy of the QDQ graph where the convolutions ``names`` read the float input
    and float weights again (their QuantizeLinear/DequantizeLinear pairs bypassed)."""
    import copy

    q = copy.deepcopy(qmodel)
    prod = {o: n for n in q.graph.node for o in n.output}
    fnodes = {n.name: n for n in fmodel.graph.node}
    finit = {t.name: t for t in fmodel.graph.initializer}
    have = {t.name for t in q.graph.initializer}
    for node in q.graph.node:
        if node.name not in names:
            continue
        dq = prod.get(node.input[0])
        if dq is not None and dq.op_type == "DequantizeLinear":
            qn = prod.get(dq.input[0])
            if qn is not None and qn.op_type == "QuantizeLinear":
                node.input[0] = qn.input[0]
        w = fnodes[node.name].input[1]
        node.input[1] = w
        if w not in have and w in finit:
            q.graph.initializer.append(finit[w])
            have.add(w)
    return q


def _auto_keep(
    fmodel: Any,
    qmodel: Any,
    probe: List[np.ndarray],
    target_psnr: float,
    max_keep: int,
    log: Callable[[str], None],
) -> tuple:
    """Greedy mixed precision: which quantised convolutions to keep in float.

    Each quantised conv is put back to float alone (:func:`_float_islands`) and the
    PSNR of the whole network's output against fp32 is measured on ``probe``; convs
    are then kept in float, most harmful first, until that PSNR reaches
    ``target_psnr`` or ``max_keep`` are kept. Returns (names, {name: PSNR gain}).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3

    def run(model: Any) -> List[np.ndarray]:
        sess = ort.InferenceSession(
            model.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        name = sess.get_inputs()[0].name
        return [sess.run(None, {name: x})[0] for x in probe]

    ref = run(fmodel)
    peak = max(float(r.max() - r.min()) for r in ref) or 1.0

    def psnr(model: Any) -> float:
        mse = np.mean([np.mean((a - b) ** 2) for a, b in zip(run(model), ref)])
        return float(10 * np.log10(peak**2 / max(float(mse), 1e-20)))

    prod = {o: n for n in qmodel.graph.node for o in n.output}
    cands = [
        n.name
        for n in qmodel.graph.node
        if n.op_type == "Conv" and prod.get(n.input[1]) is not None
        and prod[n.input[1]].op_type == "DequantizeLinear"
    ]  # fmt: skip
    base = psnr(qmodel)
    gain = {c: psnr(_float_islands(qmodel, fmodel, [c])) - base for c in cands}
    chosen: List[str] = []
    now = base
    for c in sorted(cands, key=lambda k: -gain[k]):
        if now >= target_psnr or len(chosen) >= max_keep or gain[c] <= 0:
            break
        chosen.append(c)
        now = psnr(_float_islands(qmodel, fmodel, chosen))
    log(
        f"int8 auto: all-int8 output {base:.1f} dB from fp32; keeping {len(chosen)} conv(s) "
        f"in float gives {now:.1f} dB (target {target_psnr:.0f})"
    )
    return chosen, gain


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
) -> Dict[str, Any]:
    """Write ``export_dir/model_int8.onnx`` from ``model.onnx`` calibrated on
    ``calib_dir`` and record it in ``deploy.yaml``; returns the ``int8`` section.

    Args:
        sizes: crop sizes (pixels) taken from each calibration image.
        max_images: calibration images used (sorted names, first ones).
        keep_fp32: layers left in float (``first``, ``last`` or ONNX node names), and
            ``auto``: measure each quantised layer's effect on the output and keep the
            worst ones in float (at most ``max_keep``) until int8 is within
            ``target_psnr`` dB PSNR of fp32 on calibration crops (:func:`_auto_keep`).
        method: activation range calibration: ``minmax`` (the whole range seen),
            ``percentile`` (99.999th percentile: a finer step, outliers clipped) or
            ``entropy``.
    """
    methods = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
    if method not in methods:
        raise ValueError(f"calibration method must be one of {', '.join(methods)}, got '{method}'")
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise ImportError(
            "int8 quantisation needs onnx and onnxruntime: pip install ppRestore[onnx]"
        ) from None
    from .export import drop_unused_pad_values, write_deploy_yaml
    from .predictor import Predictor, load_deploy_yaml

    info = load_deploy_yaml(export_dir)
    src = os.path.join(export_dir, info.get("onnx_file", "model.onnx"))
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src}: --quantize int8 needs the ONNX export (--format onnx)")
    inputs = collect_calibration_inputs(export_dir, calib_dir, sizes, max_images, seed=seed)
    shapes = sorted({tuple(x.shape[2:]) for x in inputs})
    log(f"int8: {len(inputs)} calibration inputs, sizes {', '.join(f'{h}x{w}' for h, w in shapes)}")
    fp32_model = onnx.load(src)
    if drop_unused_pad_values(fp32_model):  # an export made before export_onnx did this
        onnx.save(fp32_model, src)
    name = fp32_model.graph.input[0].name
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

    dst = os.path.join(export_dir, INT8_ONNX)
    tmp = dst + ".tmp.onnx"
    # Fold BatchNorm (and constant Mul/Add) into the convolutions first: quantising a
    # conv output before its per-channel BN scale crushes the channels BN scales up.
    # ORT's provider-independent "basic" rewrites keep the graph's dynamic shapes.
    opt = dst + ".fp32-folded.onnx"
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = opt
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    auto = "auto" in [str(k) for k in keep_fp32]
    keep = select_keep_nodes(onnx.load(opt), [k for k in keep_fp32 if str(k) != "auto"])

    def _quantize(exclude: List[str]) -> None:
        quantize_static(
            opt,
            tmp,
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Convolutions and matrix products carry the arithmetic; quantising the
            # element-wise glue too would add Q/DQ pairs (time and error) for nothing.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            nodes_to_exclude=exclude,
            calibrate_method=getattr(CalibrationMethod, methods[method]),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )

    sens: Dict[str, float] = {}
    if auto:
        _quantize(keep)
        probe = [
            np.ascontiguousarray(x[:, :, :96, :96]) for x in inputs[:: max(1, len(inputs) // 6)]
        ]
        extra, sens = _auto_keep(onnx.load(opt), onnx.load(tmp), probe, target_psnr, max_keep, log)
        keep = keep + [k for k in extra if k not in keep]
    if keep:
        log(f"int8: kept in fp32: {', '.join(keep)}")
    _quantize(keep)
    os.remove(opt)
    q = onnx.load(tmp)
    if not _dynamic_hw(q):
        os.remove(tmp)
        raise RuntimeError("the quantised graph has a fixed input height/width; not written")
    os.replace(tmp, dst)
    n_q = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    # check at a size no calibration crop had: shape independence and the error
    m = int(info.get("pad_multiple", 1))
    c = int(info.get("in_channels", 3))
    h = max(h for h, _ in shapes) + 3 * m
    w = max(w for _, w in shapes) // 2 + 5 * m
    x0 = inputs[0][:1, :c]  # real data, mirrored out to the check size
    pad = ((0, 0), (0, 0), (0, max(0, h - x0.shape[2])), (0, max(0, w - x0.shape[3])))
    x = np.ascontiguousarray(np.pad(x0, pad, mode="symmetric")[:, :, :h, :w])
    ref = Predictor.from_exported(export_dir, backend="onnx").backend.run(x)
    section = {
        "file": INT8_ONNX,
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, "
        f"uint8 activations, {methods[method]}",
        "calib_dir": os.path.abspath(calib_dir),
        "calib_inputs": len(inputs),
        "calib_sizes": [f"{a}x{b}" for a, b in shapes],
        "kept_fp32": keep,
        "auto_keep_error": {k: round(v, 2) for k, v in sens.items()} if sens else None,
        "quantized_tensors": n_q,
    }
    info["int8_onnx_file"] = INT8_ONNX
    info["int8"] = section
    write_deploy_yaml(export_dir, {k: v for k, v in info.items() if k != "_dir"})
    got = Predictor.from_exported(export_dir, backend="onnx", precision="int8").backend.run(x)
    err = float(np.abs(got - ref).max())
    rng_out = float(ref.max() - ref.min()) or 1.0
    psnr = float(10 * np.log10(rng_out**2 / max(float(np.mean((got - ref) ** 2)), 1e-20)))
    section["check"] = {"size": f"{h}x{w}", "max_abs_diff": err, "psnr_vs_fp32": round(psnr, 2)}
    write_deploy_yaml(export_dir, {k: v for k, v in info.items() if k != "_dir"})
    log(
        f"int8: {INT8_ONNX} ({n_q} quantised tensors); at {h}x{w} (not a calibration size) "
        f"max |int8 - fp32| = {err:.3g}, PSNR vs fp32 {psnr:.1f} dB"
    )
    return section
