"""Which layers of an int8 graph stay in float (mixed precision).

``--int8_keep first last Conv.7 ...`` names them; ``auto`` measures each quantised
convolution's effect on the whole network's output (:func:`auto_keep`) and keeps the
worst ones. Used by :func:`~ppRestore.inference.quantize.quantize_int8`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import numpy as np

__all__ = ["select_keep_nodes", "relus_after", "float_islands", "auto_keep"]


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


def relus_after(model: Any, convs: Sequence[str] | None) -> List[str]:
    """The Relu nodes that read the output of the convolutions ``convs`` directly, or
    (``convs`` None) the Relu nodes that do not read any convolution's output.

    With ReLU fusion ONNX Runtime quantises a convolution's output with the following
    ReLU's range and drops the ReLU; a convolution kept in float keeps its ReLU too, and
    a ReLU elsewhere (after a residual addition) is not quantised: that would put the
    skip path itself through 8 bits."""
    names = (
        {n.name for n in model.graph.node if n.op_type == "Conv"} if convs is None else set(convs)
    )
    out = {o for n in model.graph.node if n.name in names for o in n.output}
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    return [n.name for n in relus if (n.input[0] in out) != (convs is None)]


def _bypass(q: Any, fmodel: Any, tensor: str) -> str:
    """The float tensor behind ``tensor`` = DequantizeLinear(QuantizeLinear(t)): ``t``, or
    a new ``Relu(t)`` where the pair also stood for a ReLU ONNX Runtime fused away."""
    from onnx import helper

    prod = {o: n for n in q.graph.node for o in n.output}
    dq = prod.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return tensor
    qn = prod.get(dq.input[0])
    if qn is None or qn.op_type != "QuantizeLinear":
        return tensor
    src = qn.input[0]
    fprod = {o: n for n in fmodel.graph.node for o in n.output}
    if src in fprod and fprod[src].op_type == "Relu" and src in prod:
        if prod[src].op_type != "Relu":  # the fused ReLU is restored after its producer
            name = src + "_float_relu"
            if name not in prod:
                nodes = list(q.graph.node)
                at = nodes.index(prod[src]) + 1
                nodes.insert(at, helper.make_node("Relu", [src], [name], name=name))
                del q.graph.node[:]
                q.graph.node.extend(nodes)
            return name
    return src


def float_islands(qmodel: Any, fmodel: Any, names: Sequence[str]) -> Any:
    """A copy of the QDQ graph where the convolutions ``names`` read the float input
    and float weights again (their QuantizeLinear/DequantizeLinear pairs bypassed)."""
    import copy

    q = copy.deepcopy(qmodel)
    fnodes = {n.name: n for n in fmodel.graph.node}
    finit = {t.name: t for t in fmodel.graph.initializer}
    have = {t.name for t in q.graph.initializer}
    for name in names:
        node = next((n for n in q.graph.node if n.name == name), None)
        if node is None:
            continue
        src = _bypass(q, fmodel, node.input[0])
        node = next(n for n in q.graph.node if n.name == name)  # _bypass rebuilt the list
        node.input[0] = src
        w = fnodes[node.name].input[1]
        node.input[1] = w
        if w not in have and w in finit:
            q.graph.initializer.append(finit[w])
            have.add(w)
    return q


def auto_keep(
    fmodel: Any,
    qmodel: Any,
    probe: List[np.ndarray],
    target_psnr: float,
    max_keep: int,
    log: Callable[[str], None],
) -> tuple:
    """Greedy mixed precision: which quantised convolutions to keep in float.

    Each quantised conv is put back to float alone (:func:`float_islands`) and the
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
    gain = {c: psnr(float_islands(qmodel, fmodel, [c])) - base for c in cands}
    chosen: List[str] = []
    now = base
    for c in sorted(cands, key=lambda k: -gain[k]):
        if now >= target_psnr or len(chosen) >= max_keep or gain[c] <= 0:
            break
        chosen.append(c)
        now = psnr(float_islands(qmodel, fmodel, chosen))
    log(
        f"int8 auto: all-int8 output {base:.1f} dB from fp32; keeping {len(chosen)} conv(s) "
        f"in float gives {now:.1f} dB (target {target_psnr:.0f})"
    )
    return chosen, gain
