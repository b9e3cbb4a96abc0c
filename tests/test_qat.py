"""Quantisation-aware training (ppRestore/compression/qat.py) on tiny models."""

from __future__ import annotations

import os

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ppRestore.builder import build_model
from ppRestore.compression import qat
from ppRestore.weights.safe_load import load_state_dict, load_weights, save_weights
from tests.train_utils import make_images

TINY_PMR = {"type": "PmrNet", "in_channels": 4, "width": 0.1, "inp_scale": 256.0}


# numpy reference of the deploy scheme (ONNX Runtime quantize_static, QDQ) ------------
def np_act(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8, per tensor, asymmetric: range widened to hold 0, scale range / 255."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255.0)
    zp = np.clip(np.round(-lo / scale), 0, 255)
    q = np.clip(np.round(x / scale) + zp, 0, 255)
    return ((q - zp) * scale).astype(np.float32)


def np_weight(w: np.ndarray) -> np.ndarray:
    """int8, per output channel, symmetric [-127, 127], scale max|w_c| / 127."""
    scale = np.abs(w).reshape(w.shape[0], -1).max(1).reshape(-1, 1, 1, 1) / 127.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _quant(lo: float, hi: float) -> qat.ActQuant:
    q = qat.ActQuant()
    q.lo, q.hi = lo, hi
    return q


def test_fake_quant_equals_numpy_reference_of_the_int8_scheme():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, (2, 3, 5, 7)).astype(np.float32)
    for lo, hi in ((-1.5, 2.0), (0.2, 1.7), (-3.0, -0.5)):  # 0 is added to the range
        got = _quant(lo, hi)(paddle.to_tensor(x)).numpy()
        np.testing.assert_allclose(got, np_act(x, lo, hi), atol=1e-6)
    w = rng.normal(0, 0.2, (4, 3, 3, 3)).astype(np.float32)
    w[1] *= 10  # per-channel: a large channel does not coarsen the others
    np.testing.assert_allclose(
        qat.fake_quant_weight(paddle.to_tensor(w)).numpy(), np_weight(w), atol=1e-7
    )
    # one wrapped conv = Q_out(conv(Q_in(x), Q_w(w)) + b)
    paddle.seed(0)
    model = nn.Sequential(nn.Conv2D(3, 4, 3, padding=1))
    st = qat.prepare_qat(model, (1, 3, 8, 8), quantize_input=False)
    qat.calibrate(model, [paddle.to_tensor(x)])
    conv = model[0]
    w, b = conv.weight.numpy(), conv.bias.numpy()
    (iq,), oq = st.input_quant.values(), st.output_quant["0"]
    ref_in = np_act(x, iq.lo, iq.hi)
    s_in = (max(iq.hi, 0.0) - min(iq.lo, 0.0)) / 255.0
    s_b = s_in * np.abs(w).reshape(4, -1).max(1) / 127.0  # int32 bias at s_in * s_w
    y = paddle.nn.functional.conv2d(
        paddle.to_tensor(ref_in),
        paddle.to_tensor(np_weight(w)),
        paddle.to_tensor((np.round(b / s_b) * s_b).astype(np.float32)),
        padding=1,
    ).numpy()
    with paddle.no_grad():
        got = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got, np_act(y, oq.lo, oq.hi), atol=1e-5)
    # bias_outside (exports that write the bias as a float Add): Q_out(conv) + b
    paddle.seed(0)
    model2 = nn.Sequential(nn.Conv2D(3, 4, 3, padding=1))
    st2 = qat.prepare_qat(model2, (1, 3, 8, 8), quantize_input=False, bias_outside=True)
    qat.calibrate(model2, [paddle.to_tensor(x)])
    oq2 = st2.output_quant["0"]
    y2 = paddle.nn.functional.conv2d(
        paddle.to_tensor(ref_in), paddle.to_tensor(np_weight(w)), padding=1
    ).numpy()
    with paddle.no_grad():
        got2 = model2(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got2, np_act(y2, oq2.lo, oq2.hi) + b.reshape(1, 4, 1, 1), atol=1e-5)
    # the ranges are the float network's extremes (ORT MinMax)
    assert iq.lo == pytest.approx(float(x.min())) and iq.hi == pytest.approx(float(x.max()))


def test_ranges_match_onnxruntime_formulas():
    quant_utils = pytest.importorskip("onnxruntime.quantization.quant_utils")
    from onnx import TensorProto

    qmin, qmax = quant_utils.get_qmin_qmax_for_qType(TensorProto.UINT8)
    zp, scale = quant_utils.compute_scale_zp(np.float32(-0.7), np.float32(3.1), qmin, qmax)
    s, z = _quant(-0.7, 3.1).params()
    assert float(s) == pytest.approx(float(scale), rel=1e-6) and z == int(zp)
    w = np.random.default_rng(1).normal(0, 1, (8,)).astype(np.float32)
    wmin, wmax = quant_utils.get_qmin_qmax_for_qType(TensorProto.INT8, symmetric=True)
    _, wscale = quant_utils.compute_scale_zp(w.min(), w.max(), wmin, wmax, symmetric=True)
    assert float(wscale) == pytest.approx(np.abs(w).max() / 127.0, rel=1e-6)


class _Block(nn.Layer):
    """``conv2(relu(conv1(x))) + x``: in the QDQ graph the skip adds the quantised x."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(2, 2, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv2(self.relu(self.conv1(x))) + x


def test_residual_skips_see_the_quantised_tensor_like_the_deploy_graph():
    model = nn.Sequential(nn.Conv2D(2, 2, 1), _Block())
    for p in model[1].parameters():
        p.set_value(paddle.zeros(p.shape))  # the block's branch is exactly 0
    x = np.random.default_rng(2).normal(0, 1, (1, 2, 6, 6)).astype(np.float32)
    with paddle.no_grad():
        h_float = model[0](paddle.to_tensor(x)).numpy()
    st = qat.prepare_qat(model, (1, 2, 6, 6), quantize_input=False)
    assert st.hoisted == {"1": ["1.conv1"]}  # the block's input quantiser is hoisted
    qat.calibrate(model, [paddle.to_tensor(x)])
    with paddle.no_grad():
        h = model[0](paddle.to_tensor(x)).numpy()  # conv0, its output quantised
        got = model(paddle.to_tensor(x)).numpy()
    q = st.input_quant["1.conv1"]
    np.testing.assert_allclose(got, np_act(h, q.lo, q.hi), atol=1e-6)  # = Q(x) + 0
    assert np.abs(got - h_float).max() > 1e-4  # not the float skip


def test_global_residual_input_is_quantised():
    model = build_model(TINY_PMR)
    for name, p in model.named_parameters():
        if name.startswith("out1."):
            p.set_value(paddle.zeros(p.shape))  # out = inp + 0
    x = np.random.default_rng(3).random((1, 4, 32, 32)).astype(np.float32) * 0.5
    st = qat.prepare_qat(model, (1, 4, 32, 32))
    qat.calibrate(model, [paddle.to_tensor(x)])
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(x)).numpy()
    q = st.model_input
    np.testing.assert_allclose(got, np_act(x, q.lo, q.hi), atol=1e-6)


def test_wrap_then_strip_round_trips_to_a_plain_strict_model(tmp_path):
    paddle.seed(0)
    model = build_model(TINY_PMR)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    x = paddle.to_tensor(np.random.default_rng(4).random((2, 4, 32, 32)).astype("float32") * 0.4)
    model.eval()
    with paddle.no_grad():
        ref = model(x).numpy()
    st = qat.prepare_qat(model, (1, 4, 32, 32))
    assert len(st.convs) == 88  # every Conv2D; the 4 Conv2DTranspose stay float
    assert list(model.state_dict()) == list(before)  # nothing added to the state
    qat.calibrate(model, [x])
    with paddle.no_grad():
        fq = model(x).numpy()
    assert 0 < np.abs(fq - ref).max() < 0.05  # quantised, close to float
    model.train()
    loss = (model(x) - x).abs().mean()
    loss.backward()  # straight-through: every weight gets a gradient
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(model.parameters())
    assert all(float(g.abs().sum()) > 0 for g in grads[:5])
    model.clear_gradients()
    qat.strip_qat(model)
    model.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), ref)
    fresh = build_model(TINY_PMR)
    load_state_dict(fresh, model.state_dict())  # strict
    with pytest.raises(ValueError, match="no layer named"):
        qat.prepare_qat(build_model(TINY_PMR), (1, 4, 32, 32), exclude=["nope"])


def _raw_cfg(tmp) -> dict:
    data = make_images(os.path.join(tmp, "clean"), n=4, size=64, channels=3)
    ds = {"type": "SyntheticRawDataset", "dataset_root": data, "patch_size": 64}
    return {
        "model": dict(TINY_PMR),
        "infer": {"color": "raw"},
        "iters": 2,
        "batch_size": 2,
        "train_dataset": dict(ds, iso_range=[800, 3200]),
        "val_dataset": dict(ds, iso_range=[1600, 1600]),
        "loss": {"types": [{"type": "L1Loss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "CosineWarmup", "learning_rate": 1e-4, "warmup_iters": 1},
        "train": {"save_interval": 2, "log_iters": 1, "seed": 1},
        "qat": {"calib_batches": 2},
    }


def test_qat_config_trains_and_its_checkpoint_exports_to_int8(tmp_path):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    from ppRestore.engine.trainer import Trainer
    from ppRestore.inference.export import export_model
    from ppRestore.inference.predictor import Predictor
    from ppRestore.inference.quantize import quantize_int8

    cfg = _raw_cfg(str(tmp_path))
    # ranges from the very inputs the int8 export below calibrates on
    cfg["qat"] = {"calib_dir": str(tmp_path / "clean"), "calib_sizes": [64], "calib_max": 2}
    tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "run"))
    st = tr.model._qat_state
    in_scale, in_zp = st.model_input.params()
    assert all(np.isfinite(q.lo) for q in st.quantizers)  # calibrated before training
    w0 = tr.model.state_dict()["out1.conv.weight"].numpy().copy()
    res = tr.train()
    assert res["iteration"] == 2
    ckpt = os.path.join(res["checkpoint"], "model.pdparams")
    saved = load_weights(ckpt)
    plain = build_model(TINY_PMR)
    assert set(saved) == set(plain.state_dict())
    load_state_dict(plain, saved)  # strict, into the normal architecture
    assert not np.array_equal(saved["out1.conv.weight"], w0)  # it trained
    cfg.pop("qat")
    exp = str(tmp_path / "exp")
    export_model(cfg, ckpt, exp, fmt="onnx", measure_memory=False, log=lambda *a: None)
    # the plain QDQ scheme QAT simulates: no ReLU fusion, round-to-nearest weights, no
    # equalisation, the output image quantised too (the default recipe departs from it on
    # purpose); configs/compression/pmrnet_qat.yml's export.int8 says the same
    quantize_int8(
        exp, str(tmp_path / "clean"), sizes=(64,), max_images=2, log=lambda *a: None,
        fuse_relu=False, gptq=False, float_output=False, equalize=False,
    )  # fmt: skip
    pred = Predictor.from_exported(exp, backend="onnx", precision="int8")
    x = np.random.default_rng(5).random((1, 4, 32, 32)).astype(np.float32) * 0.3
    got = pred.backend.run(x)
    import onnx
    from onnx import numpy_helper

    g = onnx.load(os.path.join(exp, "model_int8.onnx")).graph
    mul = next(n for n in g.node if n.op_type == "Mul")  # input * inp_scale
    qn = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == mul.output[0])
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    assert float(init[qn.input[1]]) == pytest.approx(float(in_scale) * 256.0, rel=1e-5)
    assert int(init[qn.input[2]]) == int(in_zp)
    plain.eval()
    with paddle.no_grad():
        flt = plain(paddle.to_tensor(x)).numpy()
    # with the deploy's own ranges the fake-quantised network IS the int8 graph
    sim = _sim_with_qdq_ranges(plain, os.path.join(exp, "model_int8.onnx"), x)
    ref = _run_qdq_as_float_ops(os.path.join(exp, "model_int8.onnx"), x)
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(sim - ref).max() < tol
    assert np.abs(flt - ref).max() > 20 * tol  # while float differs from it
    assert np.abs(got - ref).max() < 0.05  # ORT's integer kernels: the same up to rounding


def _run_qdq_as_float_ops(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _sim_with_qdq_ranges(model: nn.Layer, path: str, x: np.ndarray) -> np.ndarray:
    """Prepare ``model`` for QAT and copy every range from the QDQ file (``Conv.k`` is
    the k-th conv the forward runs; the network input is ``Mul``'s input, times 256)."""
    import onnx
    from onnx import numpy_helper

    order: list = []
    convs = [(n, lay) for n, lay in model.named_sublayers() if type(lay) is nn.Conv2D]
    hooks = [lay.register_forward_pre_hook(lambda _l, _i, n=n: order.append(n)) for n, lay in convs]
    model.eval()
    with paddle.no_grad():
        model(paddle.to_tensor(x))
    for h in hooks:
        h.remove()
    st = qat.prepare_qat(model, x.shape)
    g = onnx.load(path).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    qp = {
        n.input[0]: (float(init[n.input[1]]), int(init[n.input[2]]))
        for n in g.node
        if n.op_type == "QuantizeLinear" and init[n.input[1]].ndim == 0
    }

    def put(q: qat.ActQuant, sz: tuple, div: float = 1.0) -> None:
        s, z = sz[0] / div, sz[1]
        q.lo, q.hi = -z * s, (255 - z) * s

    for n in g.node:
        if n.op_type == "Conv":
            name = order[int(n.name.split(".")[1])]
            put(st.input_quant[name], qp[prod[prod[n.input[0]].input[0]].input[0]])
            put(st.output_quant[name], qp[n.output[0]])
    mul = next(n for n in g.node if n.op_type == "Mul")
    put(st.model_input, qp[mul.output[0]], TINY_PMR["inp_scale"])
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_qat_config_errors_are_one_line(tmp_path):
    from ppRestore.engine.trainer import Trainer

    cfg = _raw_cfg(str(tmp_path))
    cfg["qat"] = {"calib_batch": 2}
    with pytest.raises(ValueError, match="qat: unknown key"):
        Trainer.from_config(cfg, save_dir=str(tmp_path / "run"))
    cfg["qat"] = {"calib_batches": 0}
    with pytest.raises(ValueError, match="at least 1"):
        Trainer.from_config(cfg, save_dir=str(tmp_path / "run2"))


def test_raw_int8_calibrates_at_the_requested_iso(tmp_path):
    """--calib_iso: the synthesised raw calibration frames get the deploy's ISO, which
    is recorded in deploy.yaml; the ISO changes the recorded network inputs (the k-sigma
    transform scales them by the ISO's gain)."""
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    from ppRestore.inference.export import export_model
    from ppRestore.inference.int8_calib import collect_calibration_inputs
    from ppRestore.inference.predictor import load_deploy_yaml
    from ppRestore.inference.quantize import quantize_int8

    cfg = _raw_cfg(str(tmp_path))
    cfg.pop("qat")
    w = str(tmp_path / "w.pdparams")
    paddle.seed(0)
    save_weights(build_model(TINY_PMR).state_dict(), w)
    exp = str(tmp_path / "exp")
    export_model(cfg, w, exp, fmt="onnx", measure_memory=False, log=lambda *a: None)
    clean = str(tmp_path / "clean")
    spread = {}
    for iso in (400.0, 6400.0):
        xs = collect_calibration_inputs(exp, clean, (64,), 2, isos=(iso,))
        spread[iso] = float(np.mean([x.std() for x in xs]))
    assert spread[6400.0] != pytest.approx(spread[400.0], rel=0.05)
    quantize_int8(exp, clean, sizes=(64,), max_images=2, log=lambda *a: None, calib_isos=[3200])
    assert load_deploy_yaml(exp)["int8"]["calib_isos"] == [3200.0]
    with pytest.raises(ValueError, match="calib_iso"):
        quantize_int8(exp, clean, sizes=(64,), max_images=2, log=lambda *a: None, calib_isos=[0])
