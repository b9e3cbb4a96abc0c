"""Post-training int8 recipes applied around ONNX Runtime's ``quantize_static``.

:func:`~ppRestore.inference.quantize.quantize_int8` calibrates activation ranges with
ONNX Runtime and writes a QDQ graph; the techniques here then make that graph closer to
the float network without changing its form (the same QuantizeLinear/DequantizeLinear
pairs, int8 weights, int32 biases), so ONNX Runtime and OpenVINO run it exactly as
before:

* **GPTQ weight rounding** (:func:`gptq_weights`; Frantar et al. 2023, "GPTQ: Accurate
  Post-Training Quantization for Generative Pre-trained Transformers", the OBQ /
  AdaRound family): each convolution's int8 weights are rounded one input column at a
  time, pushing the rounding error onto the columns not yet rounded, weighted by the
  second moment of the layer's real inputs on the calibration images. Nearest rounding
  is optimal per weight but not for the layer's output; restoration networks end in
  convolutions with one to four output channels, where one per-channel scale spans
  hundreds of weights and nearest rounding costs most.
* **empirical bias correction** (:func:`correct_biases`; Nagel et al. 2019, "Data-Free
  Quantization Through Weight Equalization and Bias Correction", section 4.2): the mean
  per-channel shift that quantisation adds to each convolution's output on the
  calibration images is subtracted from its int32 bias.
* **the image in float** (:func:`float_unread`): additions and the graph output read
  the float tensor, not its QuantizeLinear/DequantizeLinear copy, and pairs no int8
  operator reads are removed: by default for the image's own tensors (the restored
  image, the input image added back), with ``skips`` on every residual path too, so
  the image (and the running features) are not rounded to 256 levels.

The weights are statistics of the calibration inputs only, never of a val set.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    "conv_input_moments",
    "gptq_weights",
    "apply_gptq",
    "correct_biases",
    "float_unread",
]


def _attrs(node: Any) -> Dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _session(model: Any) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # the float reference and the QDQ graph as written: no rewrites that change numerics
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run_tensors(model: Any, names: Sequence[str], inputs: Sequence[np.ndarray]):
    """Yield, per input, the values of the intermediate tensors ``names``."""
    import copy

    from onnx import TensorProto, helper

    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = _session(m)
    feed = m.graph.input[0].name
    for x in inputs:
        yield dict(zip(list(names), sess.run(list(names), {feed: x})))


def _patches(x: np.ndarray, node: Any, w_shape: Tuple[int, ...], n: int, rng) -> np.ndarray:
    """``n`` random receptive fields of ``node`` (a Conv) on its input ``x`` (N, C, H, W),
    as rows laid out like the weight (C, kh, kw) -> (n, C * kh * kw)."""
    a = _attrs(node)
    kh, kw = w_shape[2:]
    sh, sw = a.get("strides", [1, 1])
    dh, dw = a.get("dilations", [1, 1])
    t, left, b, r = a.get("pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    ho = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    wo = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        return np.zeros((0, x.shape[1] * kh * kw), np.float32)
    k = rng.integers(0, xp.shape[0] * ho * wo, size=n)
    img, pos = k // (ho * wo), k % (ho * wo)
    rows = (pos // wo)[:, None] * sh + np.arange(kh)[None, :] * dh  # (n, kh)
    cols = (pos % wo)[:, None] * sw + np.arange(kw)[None, :] * dw  # (n, kw)
    p = xp[img[:, None, None, None], np.arange(xp.shape[1])[None, :, None, None],
           rows[:, None, :, None], cols[:, None, None, :]]  # fmt: skip
    return p.reshape(n, -1)


def conv_input_moments(
    model: Any,
    inputs: Sequence[np.ndarray],
    samples: int = 2048,
    seed: int = 0,
) -> Dict[str, List[np.ndarray]]:
    """Per convolution (node name) and group, ``E[p p^T]`` over receptive fields ``p`` of
    its input on ``inputs`` (``samples`` random positions per input): GPTQ's Hessian."""
    from onnx import numpy_helper

    init = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in init]
    shapes = {n.name: tuple(numpy_helper.to_array(init[n.input[1]]).shape) for n in convs}
    acc: Dict[str, List[np.ndarray]] = {}
    count = {n.name: 0 for n in convs}
    rng = np.random.default_rng(seed)
    names = sorted({n.input[0] for n in convs})
    for vals in _run_tensors(model, names, inputs):
        for n in convs:
            shp = shapes[n.name]
            g = int(_attrs(n).get("group", 1))
            p = _patches(vals[n.input[0]], n, shp, samples, rng).astype(np.float64)
            if not len(p):
                continue
            d = shp[1] * shp[2] * shp[3]
            blocks = [p[:, i * d : (i + 1) * d] for i in range(g)]
            hs = acc.setdefault(n.name, [np.zeros((d, d)) for _ in range(g)])
            for h, blk in zip(hs, blocks):
                h += blk.T @ blk
            count[n.name] += len(p)
    return {k: [h / max(count[k], 1) for h in v] for k, v in acc.items()}


def gptq_weights(
    w: np.ndarray, h: np.ndarray, scale: np.ndarray, damp: float = 0.01, qmax: int = 127
) -> np.ndarray:
    """int8 codes for weights ``w`` (O, D) at per-row ``scale`` (O,), rounded column by
    column with the error fed forward through ``h`` (D, D, the inputs' second moment):
    minimises ``||(W - s Q) x||`` over the calibration inputs rather than per weight."""
    w = np.array(w, dtype=np.float64)
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += np.eye(len(h)) * damp * float(np.mean(np.diag(h)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper factor of H^-1
    except np.linalg.LinAlgError:
        return np.clip(np.round(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    s = np.where(scale > 0, scale, 1.0).astype(np.float64)
    q = np.zeros(w.shape, dtype=np.int8)
    for j in range(w.shape[1]):
        qj = np.clip(np.round(w[:, j] / s), -qmax, qmax)
        q[:, j] = qj
        err = (w[:, j] - qj * s) / u[j, j]
        w[:, j + 1 :] -= np.outer(err, u[j, j + 1 :])
    return q


def _producers(model: Any) -> Dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _dq_init(qmodel: Any, tensor: str) -> Tuple[Any, Any] | None:
    """(quantised initializer, scale initializer) behind a DequantizeLinear output."""
    dq = _producers(qmodel).get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    init = {t.name: t for t in qmodel.graph.initializer}
    if dq.input[0] not in init or dq.input[1] not in init:
        return None
    return init[dq.input[0]], init[dq.input[1]]


def apply_gptq(qmodel: Any, fmodel: Any, moments: Dict[str, List[np.ndarray]]) -> List[str]:
    """Re-round the int8 weights of every quantised convolution of ``qmodel`` that has
    ``moments`` with :func:`gptq_weights` (ONNX Runtime's scales kept, so the int32
    biases stay valid). Returns the convolutions changed."""
    from onnx import numpy_helper

    finit = {t.name: t for t in fmodel.graph.initializer}
    fconv = {n.name: n for n in fmodel.graph.node if n.op_type == "Conv"}
    done = []
    for node in qmodel.graph.node:
        if node.op_type != "Conv" or node.name not in moments or node.name not in fconv:
            continue
        pair = _dq_init(qmodel, node.input[1])
        if pair is None:  # kept in float
            continue
        qt, st = pair
        w = numpy_helper.to_array(finit[fconv[node.name].input[1]]).astype(np.float64)
        s = np.broadcast_to(numpy_helper.to_array(st).astype(np.float64), (w.shape[0],))
        hs = moments[node.name]
        og = w.shape[0] // len(hs)
        q = np.zeros(w.shape, np.int8).reshape(w.shape[0], -1)
        for g, h in enumerate(hs):
            rows = slice(g * og, (g + 1) * og)
            q[rows] = gptq_weights(w[rows].reshape(og, -1), h, s[rows])
        qt.CopyFrom(numpy_helper.from_array(q.reshape(w.shape), qt.name))
        done.append(node.name)
    return done


def correct_biases(
    qmodel: Any, fmodel: Any, inputs: Sequence[np.ndarray], rounds: int = 2
) -> List[str]:
    """Empirical bias correction: subtract from each quantised convolution's int32 bias
    the mean per-channel difference between its output in ``qmodel`` and in ``fmodel``
    on ``inputs`` (``rounds`` passes: a downstream shift depends on upstream fixes)."""
    from onnx import numpy_helper

    fconv = {n.name: n for n in fmodel.graph.node if n.op_type == "Conv"}
    todo = []
    for node in qmodel.graph.node:
        if node.op_type == "Conv" and len(node.input) > 2 and node.name in fconv:
            pair = _dq_init(qmodel, node.input[2])
            if pair is not None and _dq_init(qmodel, node.input[1]) is not None:
                todo.append((node, fconv[node.name], pair))
    if not todo:
        return []

    def means(model: Any, outs: List[str]) -> Dict[str, np.ndarray]:
        tot: Dict[str, np.ndarray] = {}
        for vals in _run_tensors(model, outs, inputs):
            for k, v in vals.items():
                tot[k] = tot.get(k, 0) + v.mean(axis=(0, 2, 3), dtype=np.float64)
        return {k: v / len(inputs) for k, v in tot.items()}

    ref = means(fmodel, [f.output[0] for _, f, _ in todo])
    for _ in range(int(rounds)):
        got = means(qmodel, [q.output[0] for q, _, _ in todo])
        for q, f, (bt, st) in todo:
            shift = got[q.output[0]] - ref[f.output[0]]
            b = numpy_helper.to_array(bt).astype(np.float64)
            s = numpy_helper.to_array(st).astype(np.float64)
            new = np.clip(np.round(b - shift / s), -(2**31), 2**31 - 1).astype(np.int32)
            bt.CopyFrom(numpy_helper.from_array(new, bt.name))
    return [q.name for q, _, _ in todo]


_MOVES = ("Unsqueeze", "Squeeze", "Pad", "Reshape", "Transpose", "Identity", "Flatten")
# readers of a quantised tensor: an int8 operator, or a QuantizeLinear that rounds it
# again on the same grid after data movement (removing the first pair gains nothing and
# costs ONNX Runtime its QLinearConv fusion)
_INT8_OPS = ("Conv", "MatMul", "Gemm", "QuantizeLinear")


def _read_by_int8(tensor: str, consumers: Dict[str, List[Any]]) -> bool:
    """Whether an int8 operator reads ``tensor``, directly or through data movement."""
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        for n in consumers.get(t, []):
            if n.op_type in _INT8_OPS:
                return True
            if n.op_type in _MOVES and n.name not in seen:
                seen.add(n.name)
                todo.extend(n.output)
    return False


def _act_pairs(qmodel: Any, fmodel: Any) -> List[Tuple[Any, List[Any], bool]]:
    """(QuantizeLinear, its DequantizeLinears, stands for a fused ReLU) per activation."""
    init = {t.name for t in qmodel.graph.initializer}
    fprod, qprod = _producers(fmodel), _producers(qmodel)
    dqs_of: Dict[str, List[Any]] = {}
    for n in qmodel.graph.node:
        if n.op_type == "DequantizeLinear":
            dqs_of.setdefault(n.input[0], []).append(n)
    out = []
    for qn in qmodel.graph.node:
        if qn.op_type != "QuantizeLinear" or qn.input[0] in init:
            continue
        src, fp = qn.input[0], fprod.get(qn.input[0])
        fused = fp is not None and fp.op_type in ("Relu", "Clip")
        fused = fused and getattr(qprod.get(src), "op_type", None) != fp.op_type
        if fused and fp.op_type != "Relu":
            continue  # a fused Clip: its bounds live in the pair; it stays
        out.append((qn, dqs_of.get(qn.output[0], []), fused))
    return out


def _image_tail(qmodel: Any) -> set:
    """Tensors of the output end: those a graph output is computed from without another
    int8 operator in between (the last convolution's output, the input image added back
    in a residual network), and the graph input itself."""
    prod = _producers(qmodel)
    todo = [o.name for o in qmodel.graph.output]
    tail = {i.name for i in qmodel.graph.input}
    while todo:
        t = todo.pop()
        if t in tail:
            continue
        tail.add(t)
        n = prod.get(t)
        if n is not None and n.op_type not in _INT8_OPS[:3]:
            todo.extend(n.input)
    return tail


def float_unread(qmodel: Any, fmodel: Any, skips: bool = False) -> int:
    """Give float operators the float tensor: where a quantised activation is read by an
    addition, a concatenation or the graph output, they read the tensor before its
    QuantizeLinear -> DequantizeLinear pair, and a pair that no int8 operator reads is
    removed. ONNX Runtime quantises every convolution's output for its int8 kernel
    (QLinearConv); on the restored image, the input image added back, or (``skips``)
    every residual path, that rounds the image or the running features to 8 bits.
    Only the image's own tensors by default: on ONNX Runtime a convolution whose output
    stays float runs in float (OpenVINO runs it in int8 either way). Where the pair also
    stood for a fused ReLU, a ReLU takes its place. Returns the activations changed."""
    from onnx import helper

    tail = None if skips else _image_tail(qmodel)

    consumers: Dict[str, List[Any]] = {}
    for n in qmodel.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outs = {o.name for o in qmodel.graph.output}
    drop, relus, rename, changed = set(), {}, {}, 0
    for qn, dqs, fused in _act_pairs(qmodel, fmodel):
        if tail is not None and not any(d.output[0] in tail for d in dqs):
            if qn.input[0] not in tail:
                continue
        int8 = any(_read_by_int8(d.output[0], consumers) for d in dqs)
        floats = [
            (n, d.output[0])
            for d in dqs
            for n in consumers.get(d.output[0], [])
            if not int8 or n.op_type not in _INT8_OPS + _MOVES
        ]  # fmt: skip (a removed pair: every reader takes the float tensor)
        to_out = [d.output[0] for d in dqs if d.output[0] in outs]
        if int8 and (to_out or not floats):
            continue
        src = qn.input[0]
        if fused:
            relus[src] = helper.make_node("Relu", [src], [src + "_relu"], name=src + "_relu")
            src += "_relu"
        for n, t in floats:
            n.input[:] = [src if x == t else x for x in n.input]
        if not int8:
            drop.update(id(x) for x in [qn, *dqs])
            rename.update({t: src for t in to_out})
        changed += 1
    nodes = []
    for n in qmodel.graph.node:
        if id(n) not in drop:
            nodes.append(n)
            nodes.extend(relus[o] for o in n.output if o in relus)
    for dst, src in rename.items():  # a graph output keeps its name: its producer takes it
        _rename_all(nodes, src, dst)
    del qmodel.graph.node[:]
    qmodel.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}  # the removed pairs' scales and zero points
    unused = [t for t in qmodel.graph.initializer if t.name not in used]
    for t in unused:
        qmodel.graph.initializer.remove(t)
    return changed


def _rename_all(nodes: List[Any], old: str, new: str) -> None:
    for n in nodes:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
        for i, name in enumerate(n.output):
            if name == old:
                n.output[i] = new
