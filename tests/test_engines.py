"""The CPU engines behind Predictor.from_exported: OpenVINO, ONNX Runtime, `auto`, int8.

A reduced-width CMFNet (the real blocks) is exported once with its ONNX file and an
int8 copy calibrated at small sizes; every engine is checked against the dynamic graph
at odd sizes the calibration never saw.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from ppRestore.inference import backends
from ppRestore.inference.export import export_model
from ppRestore.inference.predictor import Predictor, load_deploy_yaml, resolve_backend
from ppRestore.registry import MODELS
from ppRestore.weights.safe_load import save_weights

pytest.importorskip("paddle2onnx")
pytest.importorskip("onnxruntime")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CMF = {"type": "CMFNet", "n_feat": 4, "scale_unetfeats": 2, "reduction": 2}


def _calib_images(folder) -> str:
    """Three real photos (scikit-image), small, as PNG files."""
    from skimage import data

    from ppRestore.data.io import write_image

    os.makedirs(folder, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee"):
        img = getattr(data, name)()[::4, ::4]
        write_image(os.path.join(folder, name + ".png"), np.ascontiguousarray(img))
    return str(folder)


@pytest.fixture(scope="module")
def cmf(tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    paddle.seed(0)
    model = MODELS.get("CMFNet")(**{k: v for k, v in CMF.items() if k != "type"})
    model.eval()
    save_weights(model.state_dict(), str(d / "w.pdparams"))
    info = export_model(
        {"model": CMF}, str(d / "w.pdparams"), str(d / "exp"), measure_memory=False,
        log=lambda m: None, quantize="int8", calib_dir=_calib_images(d / "calib"),
        calib_sizes=(48, 32), calib_max=3,
    )  # fmt: skip
    return model, str(d / "exp"), info


def _odd_image(h=45, w=70, seed=1):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def test_onnxruntime_full_optimisation_matches_dynamic(cmf):
    model, exp, _ = cmf
    img = _odd_image()
    ref = Predictor.from_model(model).predict(img)
    p = Predictor.from_exported(exp, backend="onnx", cpu_threads=1)
    import onnxruntime as ort

    opts = p.backend.session.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    np.testing.assert_allclose(p.predict(img), ref, atol=1e-4)


def test_openvino_fp32_matches_dynamic_at_odd_sizes(cmf):
    pytest.importorskip("openvino")
    model, exp, _ = cmf
    p = Predictor.from_exported(exp, backend="openvino", cpu_threads=1)
    assert p.backend.name == "openvino" and p.meta["precision"] == "fp32"
    assert p.backend.compile_config["INFERENCE_PRECISION_HINT"] == "f32"
    for h, w in ((45, 70), (33, 17)):
        img = _odd_image(h, w)
        np.testing.assert_allclose(
            p.predict(img), Predictor.from_model(model).predict(img), atol=1e-4
        )
    # one compiled static-shape model per input shape, bounded
    p.backend.shape_cache = 1
    p.predict(_odd_image(24, 24))
    assert len(p.backend._compiled) == 1


def test_openvino_bf16_runs_close_to_fp32(cmf):
    pytest.importorskip("openvino")
    _, exp, _ = cmf
    img = _odd_image()
    f32 = Predictor.from_exported(exp, backend="openvino", cpu_threads=1).predict(img)
    p = Predictor.from_exported(exp, backend="openvino", precision="bf16", cpu_threads=1)
    assert p.backend.compile_config["INFERENCE_PRECISION_HINT"] == "bf16"
    got = p.predict(img)
    assert got.shape == img.shape and np.isfinite(got).all()
    assert np.abs(got - f32).max() < 0.05  # bf16 keeps 8 bits of mantissa
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert np.abs(got - f32).max() > 0  # the hint really switched to bf16


def test_int8_is_shape_independent_and_close_to_fp32(cmf):
    model, exp, info = cmf
    import onnx

    y = load_deploy_yaml(exp)
    assert y["int8_onnx_file"] == "model_int8.onnx"
    assert y["int8"]["calib_sizes"] and y["int8"]["quantized_tensors"] > 10
    q = onnx.load(os.path.join(exp, "model_int8.onnx"))
    dims = q.graph.input[0].type.tensor_type.shape.dim
    assert not dims[2].HasField("dim_value") and not dims[3].HasField("dim_value")
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # calibrated on 48/32 crops; run at sizes it never saw, on a real photo
    from skimage import data

    img = (data.astronaut()[:101, :157] / 255.0).astype(np.float32)
    ref = Predictor.from_model(model).predict(img)
    engines = ["onnx"] + (["openvino"] if backends.openvino_available() else [])
    for eng in engines:
        got = Predictor.from_exported(exp, backend=eng, precision="int8", cpu_threads=1).predict(
            img
        )
        assert got.shape == img.shape
        psnr = 10 * np.log10(1.0 / np.mean((got - ref) ** 2))
        assert psnr > 35, (eng, psnr)  # int8 error, not a broken graph
        assert np.abs(got - ref).max() > 1e-6  # it really is the quantised graph


def test_int8_keeps_named_layers_in_float(cmf, tmp_path):
    import onnx

    from ppRestore.inference.quantize import quantize_int8, select_keep_nodes

    _, exp, _ = cmf
    import shutil

    exp2 = str(tmp_path / "exp")
    shutil.copytree(exp, exp2)
    fp = onnx.load(os.path.join(exp2, "model.onnx"))
    first, last = select_keep_nodes(fp, ["first"]), select_keep_nodes(fp, ["last"])
    assert first and last
    sec = quantize_int8(
        exp2, _calib_images(tmp_path / "c"), sizes=(32,), max_images=2,
        keep_fp32=["first", "last"], log=lambda m: None,
    )  # fmt: skip
    assert sorted(sec["kept_fp32"]) == sorted(set(first + last))
    q = onnx.load(os.path.join(exp2, "model_int8.onnx"))
    producers = {o: n for n in q.graph.node for o in n.output}
    inits = {i.name for i in q.graph.initializer}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    for node in convs:  # kept layers compute with their float weights; the others int8
        kept = node.name in first + last
        assert (node.input[1] in inits) == kept, node.name
        if not kept:
            assert producers[node.input[1]].op_type == "DequantizeLinear"
    with pytest.raises(ValueError, match="no node named"):
        select_keep_nodes(fp, ["nope"])


def test_auto_backend_picks_openvino_and_falls_back(cmf, monkeypatch):
    _, exp, _ = cmf
    info = load_deploy_yaml(exp)
    monkeypatch.setattr("ppRestore.inference.predictor.openvino_available", lambda: True)
    assert resolve_backend(info, "auto", "cpu", "fp32") == "openvino"
    assert resolve_backend(info, "auto", "cpu", "bf16") == "openvino"
    assert resolve_backend(info, "auto", "cpu", "int8") == "openvino"
    assert resolve_backend(info, "auto", "gpu", "fp32") == "paddle"
    assert resolve_backend(info, "auto", "cpu", "fp16") == "paddle"
    assert resolve_backend(info, "onnxruntime") == "onnx"
    monkeypatch.setattr("ppRestore.inference.predictor.openvino_available", lambda: False)
    assert resolve_backend(info, "auto", "cpu", "fp32") == "paddle"
    assert resolve_backend(info, "auto", "cpu", "int8") == "onnx"
    # and the Predictor really builds that engine without openvino
    p = Predictor.from_exported(exp, cpu_threads=1)
    assert p.backend.name == "paddle_inference"
    assert Predictor.from_exported(exp, precision="int8").backend.name == "onnxruntime"
    no_onnx = dict(info, onnx_file=None, int8_onnx_file=None, _dir=str(exp) + "-none")
    monkeypatch.setattr("ppRestore.inference.predictor.openvino_available", lambda: True)
    assert resolve_backend(no_onnx, "auto", "cpu", "fp32") == "paddle"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(info, "tensorflow")


def test_missing_openvino_is_one_clear_error(cmf, monkeypatch):
    _, exp, _ = cmf
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("no openvino")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install openvino"):
        Predictor.from_exported(exp, backend="openvino")


def test_int8_without_quantised_export_is_refused(tmp_path):
    paddle.seed(0)
    import toy_models  # noqa: F401

    model = MODELS.get("_ToyCNN")()
    save_weights(model.state_dict(), str(tmp_path / "w.pdparams"))
    export_model(
        {"model": {"type": "_ToyCNN"}}, str(tmp_path / "w.pdparams"), str(tmp_path / "e"),
        measure_memory=False, check=False, log=lambda m: None,
    )  # fmt: skip
    for be in ("paddle", "onnx", "openvino", "auto"):
        with pytest.raises(ValueError, match="quantize int8"):
            Predictor.from_exported(str(tmp_path / "e"), backend=be, precision="int8")


def test_deploy_cli_backend_flag_and_export_quantize_errors(cmf, tmp_path):
    _, exp, _ = cmf
    from ppRestore.data.io import read_image, write_image

    src = tmp_path / "in"
    src.mkdir()
    write_image(str(src / "a.png"), (_odd_image(29, 41) * 255).astype(np.uint8))
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    outs = {}
    for be, prec in (("onnx", "int8"), ("paddle", "fp32"), ("onnx", "fp32")):
        out = tmp_path / f"o_{be}_{prec}"
        r = subprocess.run(
            [sys.executable, os.path.join(REPO, "deploy", "python", "infer.py"), "--config", exp,
             "--image_path", str(src), "--save_dir", str(out), "--backend", be,
             "--precision", prec, "--cpu_threads", "1", "--quiet"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"on {'onnxruntime' if be == 'onnx' else 'paddle_inference'} {prec}" in r.stderr
        outs[(be, prec)] = read_image(str(out / "a.png")).data.astype(int)
    assert np.abs(outs[("paddle", "fp32")] - outs[("onnx", "fp32")]).max() <= 1
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export.py"), "-c", "configs/demo.yml",
         "--model_path", "demo_color_denoise", "--save_dir", str(tmp_path / "x"),
         "--quantize", "int8"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and "needs --calib_dir" in r.stderr
    assert "Traceback" not in r.stderr


def test_benchmark_flop_count_matches_hand_count(tmp_path):
    """benchmarks/bench_vs_official.py counts 2 x multiply-adds per conv on the ONNX graph."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from bench_vs_official import onnx_flops

    paddle.seed(0)
    cfg = {"type": "DnCNN", "in_channels": 1, "num_layers": 4, "features": 8, "bn": False}
    model = MODELS.get("DnCNN")(**{k: v for k, v in cfg.items() if k != "type"})
    save_weights(model.state_dict(), str(tmp_path / "w.pdparams"))
    export_model(
        {"model": cfg}, str(tmp_path / "w.pdparams"), str(tmp_path / "e"), fmt="onnx",
        measure_memory=False, check=False, log=lambda m: None,
    )  # fmt: skip
    macs_per_pixel = 1 * 9 * 8 + 2 * (8 * 9 * 8) + 8 * 9 * 1
    got = onnx_flops(str(tmp_path / "e" / "model.onnx"), [1, 1, 96, 80], probe=32)
    assert got == 2 * macs_per_pixel * 96 * 80


def test_int8_auto_keep_picks_the_most_harmful_layers(cmf, tmp_path):
    """`--int8_keep auto`: each quantised conv is measured alone; the worst stay float."""
    import shutil

    import onnx

    from ppRestore.inference.quantize import quantize_int8

    _, exp, _ = cmf
    exp2 = str(tmp_path / "exp")
    shutil.copytree(exp, exp2)
    sec = quantize_int8(
        exp2, _calib_images(tmp_path / "c"), sizes=(32,), max_images=2, keep_fp32=["auto"],
        target_psnr=500.0, max_keep=2, log=lambda m: None,
    )  # fmt: skip
    gains = sec["auto_keep_error"]
    assert len(sec["kept_fp32"]) == 2 and len(gains) > 10
    best = sec["kept_fp32"]
    others = [g for k, g in gains.items() if k not in best]
    assert min(gains[k] for k in best) >= max(others) - 0.01  # the largest single gains
    q = onnx.load(os.path.join(exp2, "model_int8.onnx"))
    inits = {i.name for i in q.graph.initializer}
    kept = [n for n in q.graph.node if n.name in best]
    assert len(kept) == 2 and all(n.input[1] in inits for n in kept)
