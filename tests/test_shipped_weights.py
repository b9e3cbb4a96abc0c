"""The weights shipped in ``pretrained/``: registered, intact, loadable, and useful.

Each zoo entry with a shipped ``file`` must exist, match its SHA-256, stay small, build
from its ``config`` and load *strictly*. The demo denoiser and the SR models are then
run on scikit-image photos that were not in their training data (the demo denoiser was
trained on Kodak24 crops, SRCNN on train400) and must beat their input by a margin
below what was measured (pretrained/README.md lists the measurements).
"""

from __future__ import annotations

import os

import numpy as np
import paddle  # a hard dependency: a broken install must fail, not skip
import pytest

skdata = pytest.importorskip("skimage.data")

from ppRestore.builder import build_model  # noqa: E402
from ppRestore.config import load_config  # noqa: E402
from ppRestore.metrics import calculate_psnr  # noqa: E402
from ppRestore.weights.safe_load import load_model_weights  # noqa: E402
from ppRestore.weights.zoo import PRETRAINED_DIR, REPO_ROOT, ZOO, sha256_of  # noqa: E402

SHIPPED = sorted(name for name, e in ZOO.items() if e.get("file"))
MAX_BYTES = 5 * 1024 * 1024


def _model(name: str):
    entry = ZOO[name]
    cfg = load_config(os.path.join(REPO_ROOT, entry["config"]))
    model = build_model(cfg["model"])
    report = load_model_weights(model, name)  # strict: any missing/extra key raises
    model.eval()
    return model, cfg, report


def _run(model, img: np.ndarray) -> np.ndarray:
    """``H x W x C`` float32 in [0, 1] -> model output, same layout, clipped."""
    x = paddle.to_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))[None])
    with paddle.no_grad():
        y = model(x).numpy()[0].transpose(1, 2, 0)
    return np.clip(y, 0.0, 1.0)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)


def test_something_is_shipped():
    assert "demo_color_denoise" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_intact_and_strict(name):
    entry = ZOO[name]
    path = os.path.join(PRETRAINED_DIR, entry["file"])
    assert os.path.isfile(path), path
    assert os.path.getsize(path) <= MAX_BYTES
    assert sha256_of(path) == entry["sha256"]
    assert os.path.isfile(os.path.join(REPO_ROOT, entry["config"]))
    model, _, report = _model(name)
    assert not any(report.values()), report  # nothing missing, unexpected or mismatched


def test_demo_denoiser_gain():
    """Seeded sigma-25 noise on a 128x128 crop of skimage's astronaut (not a training
    image): the shipped demo model must gain at least GAIN_DEMO_DB (measured: see README)."""
    model, _, _ = _model("demo_color_denoise")
    clean = skdata.astronaut()[40:168, 180:308].astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 25 / 255.0, clean.shape), 0, 1).astype(np.float32)
    out = _run(model, noisy)
    p_in = calculate_psnr(_u8(noisy), _u8(clean))
    p_out = calculate_psnr(_u8(out), _u8(clean))
    assert p_out - p_in >= GAIN_DEMO_DB, (p_in, p_out)


GAIN_DEMO_DB = 6.5  # measured 7.33 dB (20.45 -> 27.79)


# zoo name -> (scale, minimum gain over bicubic in dB: measured gain minus a margin).
SR_GAINS = {
    "srcnn_x2": (2, 1.9),  # measured 2.38 dB (28.15 -> 30.53)
    "srcnn_x3": (3, 1.3),  # measured 1.71 dB (25.75 -> 27.46)
    "srcnn_x4": (4, 0.8),  # measured 1.24 dB (23.99 -> 25.24)
    "srcnn_ps_x3": (3, 0.55),  # measured 0.79 dB (25.75 -> 26.54)
}


@pytest.mark.parametrize("name", sorted(SR_GAINS))
def test_sr_beats_bicubic(name):
    """SR on the Y channel of a 144x144 crop of skimage's camera (greyscale, not in
    train400), MATLAB-bicubic degradation, ``scale``-px border: must beat bicubic by a
    margin below the measured gain (see pretrained/README.md)."""
    from ppRestore.data.resize import imresize

    scale, min_gain = SR_GAINS[name]
    model, _, _ = _model(name)
    # A grey image's value is its Y (SR papers test on Y); shift to the 16-235 Y range.
    y = (16.0 + skdata.camera()[100:244, 200:344].astype(np.float64) * 219.0 / 255.0) / 255.0
    lr = imresize(y, 1 / scale)
    up = np.clip(imresize(lr, scale), 0, 1).astype(np.float32)
    inp = up if model.upsample_input else np.clip(lr, 0, 1).astype(np.float32)
    out = _run(model, inp[..., None])[..., 0]
    assert out.shape == y.shape
    p_bic = calculate_psnr(_u8(up), _u8(y), crop_border=scale)
    p_sr = calculate_psnr(_u8(out), _u8(y), crop_border=scale)
    assert p_sr - p_bic >= min_gain, (p_bic, p_sr)


def test_grey_denoiser_gain():
    """Seeded sigma-25 noise (not clipped, as in the DnCNN protocol) on a 128x128 crop
    of skimage's camera (not in train400): the shipped DnCNN-S32 must gain at least
    GAIN_DNCNN_DB (measured: see pretrained/README.md)."""
    model, _, _ = _model("dncnn_s32_sigma25")
    clean = skdata.camera()[60:188, 200:328].astype(np.float32)[..., None] / 255.0
    rng = np.random.default_rng(0)
    noisy = (clean + rng.normal(0, 25 / 255.0, clean.shape)).astype(np.float32)
    out = _run(model, noisy)
    p_in = calculate_psnr(_u8(np.clip(noisy, 0, 1)), _u8(clean))
    p_out = calculate_psnr(_u8(out), _u8(clean))
    assert p_out - p_in >= GAIN_DNCNN_DB, (p_in, p_out)


GAIN_DNCNN_DB = 8.5  # measured 9.14 dB (20.51 -> 29.65)
