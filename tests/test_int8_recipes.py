"""The int8 recipes around ONNX Runtime's quantize_static (ppRestore/inference/int8_recipes.py).

Tiny ONNX graphs are built by hand, with channels whose ranges differ a lot (the case
where plain per-tensor / nearest-rounding int8 loses most): each technique must keep the
float meaning of the graph and make int8 closer to fp32 there.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ppRestore.inference import int8_recipes as rec  # noqa: E402
from ppRestore.inference.int8_keep import float_islands, relus_after  # noqa: E402
from ppRestore.inference.quantize import _ort_quantize  # noqa: E402


def _model(path, residual: bool = False, seed: int = 0):
    """x (1 ch) -> Conv 3x3 (8) -> Relu -> Conv 3x3 (1) [+ x]: the second conv has one
    output channel, so one weight scale spans inputs whose ranges differ 100x."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1, (8, 1, 3, 3)).astype(np.float32)
    w1 *= np.logspace(-1, 1, 8, dtype=np.float32)[:, None, None, None]
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.05, (1, 8, 3, 3)).astype(np.float32)
    w2 /= np.logspace(-1, 1, 8, dtype=np.float32)[None, :, None, None]
    b2 = np.zeros(1, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]  # fmt: skip
    pads = helper.make_attribute("pads", [1, 1, 1, 1])
    c1 = helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="Conv.0")
    c1.attribute.append(pads)
    r1 = helper.make_node("Relu", ["c1"], ["r1"], name="Relu.0")
    c2 = helper.make_node("Conv", ["r1", "w2", "b2"], ["c2" if residual else "y"], name="Conv.1")
    c2.attribute.append(pads)
    nodes = [c1, r1, c2] + ([helper.make_node("Add", ["c2", "x"], ["y"], name="Add.0")] if residual else [])  # fmt: skip
    g = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, None])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return m


def _images(n=6, size=24, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # smooth images with edges, like photos, not white noise
        x = np.cumsum(np.cumsum(rng.normal(0, 1, (size, size)), 0), 1)
        x = (x - x.min()) / (np.ptp(x) + 1e-6)
        out.append(x[None, None].astype(np.float32))
    return out


def _run(model, xs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [s.run(None, {"x": x})[0] for x in xs]


def _err(a, b):
    return float(np.mean([np.mean((p - q) ** 2) for p, q in zip(a, b)]))


def _quantized(tmp_path, fm, residual=False, exclude=()):
    src = str(tmp_path / "f.onnx")
    onnx.save(fm, src)
    dst = str(tmp_path / "q.onnx")
    excl = list(exclude) + relus_after(fm, list(exclude)) + relus_after(fm, None)
    _ort_quantize(src, dst, _images(), "minmax", excl, fuse_relu=True)
    return onnx.load(dst)


def test_gptq_equals_nearest_rounding_without_correlation_and_beats_it_with():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (4, 36))
    s = np.abs(w).max(1) / 127
    nearest = np.clip(np.round(w / s[:, None]), -127, 127)
    q = rec.gptq_weights(w, np.eye(36), s, damp=0.0)
    np.testing.assert_array_equal(q, nearest)  # identity Hessian: nothing to feed forward
    x = rng.normal(0, 1, (2000, 36)) @ rng.normal(0, 1, (36, 36))  # correlated inputs
    q = rec.gptq_weights(w, x.T @ x / len(x), s)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    e_gptq = np.mean((x @ (w - s[:, None] * q).T) ** 2)
    e_near = np.mean((x @ (w - s[:, None] * nearest).T) ** 2)
    assert e_gptq < 0.7 * e_near


def test_moments_match_im2col(tmp_path):
    fm = _model(tmp_path / "m.onnx")
    xs = _images(2, 10)
    mom = rec.conv_input_moments(fm, xs, samples=4000, seed=0)
    assert set(mom) == {"Conv.0", "Conv.1"} and mom["Conv.1"][0].shape == (72, 72)
    # Conv.0 reads the image: E[p p^T] over 3x3 zero-padded windows, from all positions
    p = np.stack(
        [np.pad(x[0, 0], 1)[i : i + 3, j : j + 3].ravel() for x in xs for i in range(10) for j in range(10)]
    )  # fmt: skip
    np.testing.assert_allclose(mom["Conv.0"][0], p.T @ p / len(p), rtol=0.15, atol=2e-3)


def _weights_only(q, fm):
    """fm with the int8 weights of q (dequantised): the weight rounding error alone."""
    import copy

    m = copy.deepcopy(fm)
    qi = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    prod = {o: n for n in q.graph.node for o in n.output}
    fw = {n.name: n.input[1] for n in fm.graph.node if n.op_type == "Conv"}
    for n in q.graph.node:
        if n.op_type == "Conv":
            dq = prod[n.input[1]]
            w = qi[dq.input[0]].astype(np.float32) * qi[dq.input[1]].reshape(-1, 1, 1, 1)
            t = next(t for t in m.graph.initializer if t.name == fw[n.name])
            t.CopyFrom(numpy_helper.from_array(w, t.name))
    return m


def test_gptq_rounding_and_float_output_reduce_int8_error(tmp_path):
    from ppRestore.inference.int8_equalize import equalize

    fm = _model(tmp_path / "m.onnx")
    equalize(fm, _images())  # activation ranges even, so weights and output rounding show
    xs = _images(4, 32, seed=7)
    ref = _run(fm, xs)
    q = _quantized(tmp_path, fm)
    nearest = _err(_run(_weights_only(q, fm), xs), ref)
    before = _err(_run(q, xs), ref)
    changed = rec.apply_gptq(q, fm, rec.conv_input_moments(fm, _images()))
    assert changed == ["Conv.0", "Conv.1"]
    assert _err(_run(_weights_only(q, fm), xs), ref) < 0.8 * nearest
    gptq = _err(_run(q, xs), ref)
    assert rec.float_unread(q, fm) == 1  # the output image's pair
    assert "y" in {n.output[0] for n in q.graph.node}
    assert _err(_run(q, xs), ref) < gptq < before


def test_equalization_keeps_the_float_output_and_cuts_int8_error(tmp_path):
    from ppRestore.inference.int8_equalize import equalize, equalize_pairs

    fm = _model(tmp_path / "m.onnx")
    xs = _images(4, 32, seed=7)
    ref = _run(fm, xs)
    assert [(a.name, b.name) for a, b in equalize_pairs(fm)] == [("Conv.0", "Conv.1")]
    eq = onnx.load(str(tmp_path / "m.onnx"))
    assert equalize(eq, _images()) == 1
    for a, b in zip(_run(eq, xs), ref):  # the same function, float for float
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
    w = {t.name: numpy_helper.to_array(t) for t in eq.graph.initializer}
    assert not np.allclose(w["w2"], numpy_helper.to_array(fm.graph.initializer[2]))
    plain = _err(_run(_quantized(tmp_path, fm), xs), ref)
    equal = _err(_run(_quantized(tmp_path, eq), xs), ref)
    assert equal < 0.25 * plain, (plain, equal)  # the 100x channel spread is undone


def test_float_unread_keeps_the_fused_relu_and_the_float_meaning(tmp_path):
    from ppRestore.inference.int8_equalize import equalize

    fm = _model(tmp_path / "m.onnx", residual=True)
    equalize(fm, _images())
    xs = _images(3, 20, seed=3)
    ref = _run(fm, xs)
    q = _quantized(tmp_path, fm)
    ops = [n.op_type for n in q.graph.node]
    assert "Relu" not in ops  # ONNX Runtime fused it into the conv output's Q
    before = _err(_run(q, xs), ref)
    rec.float_unread(q, fm)  # Conv.1's output only feeds the residual Add: float now
    assert _err(_run(q, xs), ref) < before
    # with both convs put back to float, the graph is the float network again, ReLU and
    # all: the islands restore the ReLU the removed pair stood for
    f = float_islands(q, fm, ["Conv.0", "Conv.1"])
    for n in f.graph.node:
        if n.op_type == "Conv" and len(n.input) > 2:  # float biases for the comparison
            n.input[2] = {"Conv.0": "b1", "Conv.1": "b2"}[n.name] + "_float"
    for t in fm.graph.initializer:
        if t.name in ("b1", "b2"):
            f.graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(t), t.name + "_float")
            )
    got = _run(f, xs)
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, ref)) < 1e-5


def test_bias_correction_removes_the_mean_shift(tmp_path):
    fm = _model(tmp_path / "m.onnx")
    xs = _images()
    q = _quantized(tmp_path, fm)
    ref = _run(fm, xs)
    shift = abs(float(np.mean([np.mean(a - b) for a, b in zip(_run(q, xs), ref)])))
    assert rec.correct_biases(q, fm, xs) == ["Conv.0", "Conv.1"]
    after = abs(float(np.mean([np.mean(a - b) for a, b in zip(_run(q, xs), ref)])))
    assert after < 0.5 * shift + 1e-5, (shift, after)


def test_float_skips_only_on_request(tmp_path):
    """By default only the image's own tensors leave the int8 graph (ONNX Runtime runs a
    conv with a float output in float); ``skips`` frees every residual path too."""
    fm = _model(tmp_path / "m.onnx", residual=True)
    rng = np.random.default_rng(5)
    w3 = rng.normal(0, 0.3, (1, 1, 3, 3)).astype(np.float32)
    fm.graph.initializer.append(numpy_helper.from_array(w3, "w3"))
    add = next(n for n in fm.graph.node if n.op_type == "Add")
    add.output[0] = "h"  # a second block after the residual addition
    c3 = helper.make_node("Conv", ["h", "w3"], ["y"], name="Conv.2")
    c3.attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    fm.graph.node.append(c3)
    xs = _images(3, 20, seed=4)
    ref = _run(fm, xs)
    q = _quantized(tmp_path, fm)
    assert rec.float_unread(q, fm) == 2  # the output image; the input image's skip read
    c2 = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c2"]
    assert len(c2) == 1  # the inner residual path stays quantised
    q2 = _quantized(tmp_path, fm)
    assert rec.float_unread(q2, fm, skips=True) == 3
    assert not [n for n in q2.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c2"]
    for m in (q, q2):  # still a valid graph computing the same network (to int8 error)
        assert _err(_run(m, xs), ref) < 0.1 * float(np.mean([np.mean(r**2) for r in ref]))


def _separable_model(path, seed: int = 0):
    """x -> Conv 3x3 (8) -> Relu -> depthwise 3x3 (8) -> pointwise 1x1 (1): MobileNet /
    PMRID's separable pair, the depthwise channels' gains spread 100x."""
    rng = np.random.default_rng(seed)
    spread = np.logspace(-1, 1, 8, dtype=np.float32)
    w1 = rng.normal(0, 1, (8, 1, 3, 3)).astype(np.float32)
    w1 *= spread[::-1, None, None, None]
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    wd = rng.normal(0, 1, (8, 1, 3, 3)).astype(np.float32) * spread[:, None, None, None]
    wp = rng.normal(0, 0.3, (1, 8, 1, 1)).astype(np.float32) / spread[None, :, None, None]
    bp = np.zeros(1, np.float32)
    arrays = ((w1, "w1"), (b1, "b1"), (wd, "wd"), (wp, "wp"), (bp, "bp"))
    pads = helper.make_attribute("pads", [1, 1, 1, 1])
    c1 = helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="Conv.0")
    c1.attribute.append(pads)
    r1 = helper.make_node("Relu", ["c1"], ["r1"], name="Relu.0")
    dw = helper.make_node("Conv", ["r1", "wd"], ["d"], name="Conv.1", group=8)
    dw.attribute.append(pads)
    pw = helper.make_node("Conv", ["d", "wp", "bp"], ["y"], name="Conv.2")
    g = helper.make_graph(
        [c1, r1, dw, pw], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, None])],
        [numpy_helper.from_array(a, n) for a, n in arrays],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return m


def test_equalization_takes_depthwise_convolutions_on_both_sides(tmp_path):
    """A depthwise conv is equalised as B (conv -> ReLU -> depthwise: the activation
    between evened out) and as A (depthwise -> pointwise, no ReLU): the float function
    stays, and int8 comes much closer to fp32 (PmrNet: -0.193 -> -0.151 dB on Kodak24)."""
    from ppRestore.inference.int8_equalize import equalize, equalize_pairs

    fm = _separable_model(tmp_path / "m.onnx")
    pairs = [(a.name, b.name) for a, b in equalize_pairs(fm)]
    assert pairs == [("Conv.0", "Conv.1"), ("Conv.1", "Conv.2")]
    xs = _images(4, 32, seed=7)
    ref = _run(fm, xs)
    eq = onnx.load(str(tmp_path / "m.onnx"))
    assert equalize(eq, _images()) == 2
    for a, b in zip(_run(eq, xs), ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
    plain = _err(_run(_quantized(tmp_path, fm), xs), ref)
    equal = _err(_run(_quantized(tmp_path, eq), xs), ref)
    assert equal < 0.5 * plain, (plain, equal)


def test_grouped_but_not_depthwise_convs_are_not_paired(tmp_path):
    fm = _separable_model(tmp_path / "m.onnx")
    from ppRestore.inference.int8_equalize import equalize_pairs

    w = next(t for t in fm.graph.initializer if t.name == "wd")
    w.CopyFrom(numpy_helper.from_array(np.ones((8, 2, 3, 3), np.float32), "wd"))
    dw = next(n for n in fm.graph.node if n.name == "Conv.1")
    next(a for a in dw.attribute if a.name == "group").i = 4  # 2 inputs per group
    assert equalize_pairs(fm) == []
