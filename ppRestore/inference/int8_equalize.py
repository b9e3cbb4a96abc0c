"""Cross-layer equalisation of a float ONNX graph before int8 quantisation.

Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction" (section 4.1): for ``Conv A -> ReLU -> Conv B``, scaling A's output channel
``i`` by ``1/s_i`` and B's input channel ``i`` by ``s_i`` leaves the network's function
unchanged (ReLU is positively homogeneous: ``relu(x / s) = relu(x) / s``), but moves
range between the activation between them, which int8 quantises with **one** scale for
all channels, and B's weights, whose scale per output channel also spans all input
channels. Here the ranges are measured on the calibration inputs (the activation's
per-channel maximum, rather than A's weights as in the data-free paper, because A's
weights are quantised per channel anyway) and ``s_i = sqrt(act_i / w_i)`` makes both
ranges ``sqrt(act_i * w_i)``: a channel that is tiny next to the others is no longer
rounded away.

Depthwise convolutions (MobileNet-style separable pairs, PMRID's whole network) take
part on either side, as in the paper's MobileNetV2 results: a depthwise A's output
channel ``i`` is its weight slice ``i``, scaled like any output channel; a depthwise B's
input channel ``i`` is its own weight slice ``i``, which int8 quantises with its own
scale, so there ``s`` equalises the activation alone (every channel to the widest range).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["equalize_pairs", "equalize"]

# between A and B: per-channel positively homogeneous ops that keep channels in place
_PASS = ("Relu", "Unsqueeze", "Squeeze", "Identity", "Pad")


def _group(node: Any) -> int:
    for a in node.attribute:
        if a.name == "group":
            return int(a.i)
    return 1


def _homogeneous_pad(node: Any) -> bool:
    """Edge or reflect padding, or zero padding with no fill value given."""
    mode = next((x.s for x in node.attribute if x.name == "mode"), b"constant")
    if mode in (b"edge", b"reflect"):
        return True
    return mode == b"constant" and (len(node.input) < 3 or not node.input[2])


def _depthwise(node: Any, shapes: Dict[str, Tuple[int, ...]]) -> bool:
    """A grouped conv with one input channel per group and one output per channel."""
    w = shapes.get(node.input[1], ())
    return len(w) == 4 and w[1] == 1 and _group(node) == w[0] > 1


def equalize_pairs(model: Any) -> List[Tuple[Any, Any]]:
    """(Conv A, Conv B) pairs joined only by ReLU / data movement, each tensor between
    them read by one node, each an ordinary (group 1) or depthwise convolution with
    constant weights."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    init = set(shapes)

    def plain(n: Any) -> bool:
        return _group(n) == 1 or _depthwise(n, shapes)

    outs = {o.name for o in model.graph.output}
    consumers: Dict[str, List[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    uses: Dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    pairs = []
    for a in model.graph.node:
        if a.op_type != "Conv" or a.input[1] not in init or not plain(a):
            continue
        if any(uses.get(i, 0) != 1 for i in a.input[1:] if i):
            continue  # a weight or bias shared with another node
        t, node = a.output[0], None
        while True:
            c = consumers.get(t, [])
            if len(c) != 1 or t in outs:
                break
            node = c[0]
            if node.op_type == "Pad" and not _homogeneous_pad(node):
                node = None
                break
            if node.op_type not in _PASS or node.input[0] != t:
                break
            t = node.output[0]
        b = node
        ok = b is not None and b.op_type == "Conv" and b.input[0] == t
        if ok and b.input[1] in init and uses.get(b.input[1], 0) == 1 and plain(b):
            pairs.append((a, b))
    return pairs


def _channel_max(model: Any, names: Sequence[str], inputs: Sequence[np.ndarray]) -> Dict:
    from .int8_recipes import _run_tensors

    out: Dict[str, np.ndarray] = {}
    for vals in _run_tensors(model, names, inputs):
        for k, v in vals.items():
            m = np.abs(v).max(axis=(0, 2, 3))
            out[k] = np.maximum(out.get(k, m), m)
    return out


def _in_axis(s: np.ndarray, b: Any) -> np.ndarray:
    """``s`` shaped to scale B's weights along its input channels (for a depthwise B,
    input channel ``i`` is weight slice ``i`` on axis 0)."""
    return s[:, None, None, None] if _group(b) > 1 else s[None, :, None, None]


def equalize(model: Any, inputs: Sequence[np.ndarray], max_scale: float = 1e3) -> int:
    """Equalise every pair of :func:`equalize_pairs` of ``model`` in place (weights and
    A's bias rescaled) from the activation ranges seen on ``inputs``. Returns the
    number of pairs changed."""
    from onnx import numpy_helper

    pairs = equalize_pairs(model)
    if not pairs:
        return 0
    init = {t.name: t for t in model.graph.initializer}
    act = _channel_max(model, [b.input[0] for _, b in pairs], inputs)
    for a, b in pairs:
        wa = numpy_helper.to_array(init[a.input[1]]).astype(np.float64)
        wb = numpy_helper.to_array(init[b.input[1]]).astype(np.float64)
        r_act = act[b.input[0]].astype(np.float64)
        if _group(b) > 1:  # depthwise B: its weights are quantised per channel anyway
            s = r_act / (float(r_act.max()) or 1.0)
        else:
            r_w = np.abs(wb).max(axis=(0, 2, 3))
            s = np.sqrt(np.where(r_w > 0, r_act, 0) / np.where(r_w > 0, r_w, 1))
        s = np.where(s > 0, np.clip(s, 1 / max_scale, max_scale), 1.0)
        init[a.input[1]].CopyFrom(
            numpy_helper.from_array((wa / s[:, None, None, None]).astype(np.float32), a.input[1])
        )
        init[b.input[1]].CopyFrom(
            numpy_helper.from_array((wb * _in_axis(s, b)).astype(np.float32), b.input[1])
        )
        if len(a.input) > 2 and a.input[2] in init:
            bias = numpy_helper.to_array(init[a.input[2]]).astype(np.float64)
            init[a.input[2]].CopyFrom(
                numpy_helper.from_array((bias / s).astype(np.float32), a.input[2])
            )
    return len(pairs)
