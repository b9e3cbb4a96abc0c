"""tools/infer.py on raw (Bayer) frames with a PmrNet (``infer.color: raw``).

A tiny seeded PmrNet is saved with safe_load; the real CLI runs in a subprocess and its
``.npy`` results must equal ``denoise_raw`` called directly with the same model
(``pad="end"``: the Predictor pads the packed frame once, at the bottom/right, as it
pads every model).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from ppRestore.data.raw import add_raw_noise, denoise_raw, normalize_bayer
from ppRestore.models.pmrnet import PmrNet
from ppRestore.weights.safe_load import save_weights
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLACK, WHITE, ISO = 64, 1023, 3200


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return helpers.run_cli("tools/infer.py", *args)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny PmrNet (config + weights) and three frames: uint16, float, corrupt."""
    d = tmp_path_factory.mktemp("rawinfer")
    paddle.seed(3)
    model = PmrNet(in_channels=4, width=0.125, inp_scale=256.0)
    model.eval()
    weights = str(d / "tiny.pdparams")
    save_weights(model.state_dict(), weights)
    cfg = {
        "task": "raw_denoise",
        "model": {"type": "PmrNet", "in_channels": 4, "width": 0.125, "inp_scale": 256.0},
        "infer": {"color": "raw"},
    }
    config = str(d / "tiny_raw.yml")
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f)
    rng = np.random.default_rng(0)
    # a smooth scene (gradients) so the frame is not pure noise; odd-ish size not /32
    h, w = 52, 70
    yy, xx = np.mgrid[0:h, 0:w]
    clean = (0.2 + 0.5 * (yy / h) * (xx / w)).astype(np.float32)
    noisy01 = np.clip(add_raw_noise(clean, ISO, rng), 0, 1).astype(np.float32)
    frames = d / "frames"
    frames.mkdir()
    u16 = np.round(noisy01 * (WHITE - BLACK) + BLACK).astype(np.uint16)
    np.save(frames / "a_u16.npy", u16)
    np.save(frames / "b_float.npy", noisy01)
    (frames / "c_bad.npy").write_bytes(b"not a numpy file")
    (frames / "notes.txt").write_text("skipped: not a raw file")
    return {"model": model, "weights": weights, "config": config, "frames": frames, "u16": u16}


def test_cli_file_uint16_equals_denoise_raw(setup, tmp_path):
    src = str(setup["frames"] / "a_u16.npy")
    out = tmp_path / "out"
    r = run_cli(
        "-c", setup["config"], "--model_path", setup["weights"], "--image_path", src,
        "--save_dir", str(out), "--iso", str(ISO), "--bayer_pattern", "RGGB",
        "--black_level", str(BLACK), "--white_level", str(WHITE), "--compare", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = np.load(out / "a_u16.npy")
    assert res.shape == setup["u16"].shape and res.dtype == np.uint16
    direct = denoise_raw(setup["u16"], ISO, setup["model"], "RGGB", BLACK, WHITE, pad="end")
    expect = np.round(direct.astype(np.float64) * (WHITE - BLACK) + BLACK).astype(np.uint16)
    # same computation in another process: at most one DN of rounding difference
    assert np.abs(res.astype(int) - expect.astype(int)).max() <= 1
    assert (res >= BLACK).all() and (res <= WHITE).all()
    # the network really changed the frame
    assert (
        np.abs(
            normalize_bayer(res, BLACK, WHITE) - normalize_bayer(setup["u16"], BLACK, WHITE)
        ).mean()
        > 1e-3
    )
    import cv2

    png = cv2.imread(str(out / "a_u16.png"))
    assert png is not None and png.shape == (52, 70, 3)
    cmp = cv2.imread(str(out / "a_u16_compare.png"))
    assert cmp is not None and cmp.shape == (18 + 52, 70 * 2 + 8, 3)  # labels above


def test_cli_folder_float_and_bad_file(setup, tmp_path):
    out = tmp_path / "out"
    r = run_cli(
        "-c", setup["config"], "--model_path", setup["weights"],
        "--image_path", str(setup["frames"]), "--save_dir", str(out), "--iso", str(ISO),
        "--black_level", str(BLACK), "--white_level", str(WHITE), "--quiet",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "c_bad.npy" in failed[0], r.stderr
    assert "2 restored, 1 failed" in r.stderr
    assert sorted(os.listdir(out)) == ["a_u16.npy", "a_u16.png", "b_float.npy", "b_float.png"]
    # float frame with levels given: the levels apply to float input too, both ways
    f_in = np.load(setup["frames"] / "b_float.npy")
    f_out = np.load(out / "b_float.npy")
    assert f_out.dtype == f_in.dtype and f_out.shape == f_in.shape
    direct = denoise_raw(f_in, ISO, setup["model"], "RGGB", BLACK, WHITE, pad="end")
    np.testing.assert_allclose(f_out, direct * (WHITE - BLACK) + BLACK, atol=1e-3)


def test_cli_float_no_levels_bggr(setup, tmp_path):
    src = str(setup["frames"] / "b_float.npy")
    out = tmp_path / "out"
    r = run_cli(
        "-c", setup["config"], "--model_path", setup["weights"], "--image_path", src,
        "--save_dir", str(out), "--iso", "800", "--bayer_pattern", "bggr", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    f_in = np.load(src)
    f_out = np.load(out / "b_float.npy")
    assert f_out.dtype == np.float32 and f_out.shape == f_in.shape
    direct = denoise_raw(f_in, 800, setup["model"], "BGGR", pad="end")
    np.testing.assert_allclose(f_out, direct, atol=1e-6)


def test_cli_missing_iso_and_bad_pattern(setup, tmp_path):
    src = str(setup["frames"] / "a_u16.npy")
    base = ["-c", setup["config"], "--model_path", setup["weights"], "--image_path", src]
    r = run_cli(*base, "--save_dir", str(tmp_path / "o"))
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "--iso is required" in err[0], r.stderr
    assert not (tmp_path / "o").exists()
    r = run_cli(*base, "--save_dir", str(tmp_path / "o"), "--iso", "100", "--bayer_pattern", "RGBG")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_predictor_restore_raw_refuses_rgb_model_and_rgb_on_raw(setup):
    from ppRestore.inference.predictor import Predictor

    pred = Predictor.from_model(setup["model"], infer_cfg={"color": "raw"})
    den = pred.restore_raw(setup["u16"], ISO, "RGGB", BLACK, WHITE)
    direct = denoise_raw(setup["u16"], ISO, setup["model"], "RGGB", BLACK, WHITE, pad="end")
    np.testing.assert_allclose(den, direct, atol=1e-6)
    with pytest.raises(ValueError, match="raw"):
        pred.predict(np.zeros((8, 8, 3), np.float32))
    plain = Predictor.from_model(setup["model"])
    with pytest.raises(ValueError, match="infer.color: raw"):
        plain.restore_raw(setup["u16"], ISO)


def test_exported_raw_model_through_deploy_cli(setup, tmp_path):
    # export keeps infer.color: raw and inp_scale in deploy.yaml; the deploy CLI then
    # denoises Bayer frames on Paddle Inference like the dynamic graph does.
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_minloglevel="3")
    exp = tmp_path / "export"
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export.py"), "-c", setup["config"],
         "--model_path", setup["weights"], "--save_dir", str(exp), "--no_measure_memory"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "deploy", "python", "infer.py"), "--config",
         str(exp), "--image_path", str(setup["frames"] / "a_u16.npy"), "--save_dir", str(out),
         "--iso", str(ISO), "--black_level", str(BLACK), "--white_level", str(WHITE), "--quiet"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = np.load(out / "a_u16.npy")
    direct = denoise_raw(setup["u16"], ISO, setup["model"], "RGGB", BLACK, WHITE, pad="end")
    expect = np.round(direct.astype(np.float64) * (WHITE - BLACK) + BLACK)
    assert res.dtype == np.uint16 and np.abs(res - expect).max() <= 1
