"""The Predictor's shared pre/post-processing on tiny dynamic-graph models."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
import toy_models  # noqa: F401  (registers the _Toy* models)

from ppRestore.data.io import Image, read_image, write_image
from ppRestore.inference.predictor import InferOptions, Predictor
from ppRestore.registry import MODELS
from ppRestore.weights.safe_load import WeightsError, save_weights


def build(name: str, seed: int = 0, **kw):
    paddle.seed(seed)
    return MODELS.get(name)(**kw)


@pytest.fixture(scope="module")
def downup():
    return Predictor.from_model(build("_ToyDownUp"))


def rand_u8(h, w, c, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_identity_round_trip_is_exact_at_odd_size():
    # pad (to 8) -> model -> crop -> clip -> uint8 must give back the very same pixels
    p = Predictor.from_model(build("_ToyIdentity"))
    img = rand_u8(333, 517, 3)
    out = p.restore(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_padding_to_multiple_odd_size(downup):
    img = rand_u8(37, 53, 3)
    out = downup.restore(img)  # the model raises on sizes that are not multiples of 4
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 20  # a residual model: close to the input


def test_grey_rgba_16bit_keep_mode(downup, tmp_path):
    grey = rand_u8(21, 30, 1)[..., 0]
    out = downup.restore(grey)
    assert out.shape == grey.shape and out.dtype == np.uint8
    rgba = np.dstack([rand_u8(21, 30, 3), rand_u8(21, 30, 1, seed=5)])
    out = downup.restore(rgba)
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])  # alpha untouched
    img16 = (np.random.default_rng(1).random((19, 23, 3)) * 65535).astype(np.uint16)
    write_image(str(tmp_path / "a16.png"), img16)
    res = downup.restore(str(tmp_path / "a16.png"))
    assert isinstance(res, Image) and res.data.dtype == np.uint16 and res.data.shape == (19, 23, 3)
    # 16-bit precision survives: result is not quantised to 8-bit steps
    assert np.any(res.data % 257 != 0)


def test_grey_image_on_rgb_model_is_replicated():
    p = Predictor.from_model(build("_ToyCNN"))
    grey = np.random.default_rng(0).random((24, 20), dtype=np.float32)
    out = p.restore(grey)
    rgb_out = p.predict(np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_allclose(out, rgb_out.mean(axis=2), atol=1e-6)


def test_gray_model_on_colour_image_per_channel():
    p = Predictor.from_model(build("_ToyCNN", channels=1))
    assert p.options.resolved_color == "gray"
    img = np.random.default_rng(0).random((20, 26, 3), dtype=np.float32)
    out = p.predict(img)
    assert out.shape == img.shape
    for c in range(3):
        np.testing.assert_allclose(out[..., c], p.predict(img[..., c])[..., 0], atol=1e-6)


def test_self_ensemble_identity_for_equivariant_model():
    img = np.random.default_rng(0).random((17, 23, 3), dtype=np.float32)
    p = Predictor.from_model(build("_ToySymmetric"))
    single = p.predict(img)
    p.options.self_ensemble = True
    np.testing.assert_allclose(p.predict(img), single, atol=1e-5)
    # a model that is not equivariant gives a different (averaged) result
    q = Predictor.from_model(build("_ToyCNN"))
    a = q.predict(img)
    q.options.self_ensemble = True
    assert np.abs(q.predict(img) - a).max() > 1e-4


def test_super_resolution_size_and_alpha():
    p = Predictor.from_model(build("_ToySR"))
    rgba = np.dstack([rand_u8(15, 22, 3), rand_u8(15, 22, 1, seed=3)])
    out = p.restore(rgba)
    assert out.shape == (30, 44, 4)


def test_tiled_predictor_matches_whole_image():
    m = build("_ToyCNN")  # radius 3
    whole = Predictor.from_model(m).predict(
        np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)
    )
    tiled = Predictor.from_model(m, tile=24, tile_overlap=12)
    got = tiled.predict(np.random.default_rng(0).random((50, 70, 3), dtype=np.float32))
    np.testing.assert_allclose(got, whole, atol=1e-5)


def test_tile_auto_uses_memory_estimate():
    m = build("_ToyCNN")
    p = Predictor.from_model(
        m, tile="auto", mem_per_pixel=1000.0, max_memory=20 * 20 * 1000.0, tile_overlap=4
    )
    assert p._resolve_tile(64, 64) == 20
    p.options.max_memory = 1e9
    assert p._resolve_tile(64, 64) is None  # fits: whole image
    out = Predictor.from_model(
        m, tile="auto", mem_per_pixel=1000.0, max_memory=4e5, tile_overlap=8
    ).predict(np.random.default_rng(0).random((40, 50, 3), dtype=np.float32))
    assert out.shape == (40, 50, 3)


def test_from_config_needs_weights(tmp_path):
    cfg = {"model": {"type": "_ToyCNN"}}
    with pytest.raises(WeightsError, match="no weights"):
        Predictor.from_config(cfg, None)
    with pytest.raises(WeightsError, match="not found"):
        Predictor.from_config(cfg, str(tmp_path / "missing.pdparams"))


def test_from_config_and_restore_api(tmp_path):
    import yaml

    from ppRestore.inference import restore

    m = build("_ToyDownUp", seed=3)
    save_weights(m.state_dict(), str(tmp_path / "w.pdparams"))
    cfg_path = tmp_path / "toy.yml"
    cfg_path.write_text(
        yaml.safe_dump({"model": {"type": "_ToyDownUp"}, "infer": {"tile_overlap": 8}})
    )
    p = Predictor.from_config(str(cfg_path), str(tmp_path / "w.pdparams"))
    assert p.options.pad_multiple == 4 and p.options.tile_overlap == 8
    img = rand_u8(13, 18, 3)
    write_image(str(tmp_path / "in.png"), img)
    ref = Predictor.from_model(m).restore(img)
    np.testing.assert_array_equal(p.restore(img), ref)  # the loaded weights are the saved ones
    out = restore(
        str(tmp_path / "in.png"), config=str(cfg_path), model_path=str(tmp_path / "w.pdparams")
    )
    np.testing.assert_array_equal(out.data, ref)
    import ppRestore  # the top-level lazy alias gives the same result

    np.testing.assert_array_equal(
        ppRestore.restore(img, config=str(cfg_path), model_path=str(tmp_path / "w.pdparams")), ref
    )
    assert read_image(str(tmp_path / "in.png")).data.shape == out.data.shape


def test_options_validation():
    with pytest.raises(ValueError, match="color"):
        InferOptions.merge({"color": "bgr"})
    with pytest.raises(ValueError, match="tile"):
        InferOptions.merge({"tile": "big"})
    assert InferOptions.merge({"tile": "256"}).tile == 256
    assert InferOptions.merge({"upsample_input": True, "scale": 3}).net_scale == 1


def test_color_y_pipeline():
    from ppRestore.data.color import rgb2ycbcr

    p = Predictor.from_model(build("_ToyIdentity", channels=1), color="y")
    img = np.random.default_rng(0).random((16, 24, 3), dtype=np.float32)
    out = p.predict(img)
    np.testing.assert_allclose(out, img, atol=1e-5)  # identity on Y -> the same RGB
    # Y really goes through the network: a model changing Y changes the luma only
    q = Predictor.from_model(build("_ToyCNN", channels=1), color="y")
    img = 0.3 + 0.4 * img  # mid-range colours: the new RGB stays inside [0, 1]
    out = q.predict(img)
    ycc_in, ycc_out = rgb2ycbcr(img.astype(np.float64)), rgb2ycbcr(out.astype(np.float64))
    assert np.abs(ycc_out[..., 0] - ycc_in[..., 0]).max() > 1e-3
    # chroma is kept (except where the new RGB had to be clipped into [0, 1])
    assert np.mean(np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]) < 1e-4) > 0.95


def test_color_none_passes_other_channel_counts_unclipped():
    # e.g. PmrNet's packed 4-channel raw: no colour conversion, no clipping
    p = Predictor.from_model(build("_ToyCNN", channels=4))
    assert p.options.resolved_color == "none"
    x = np.random.default_rng(0).random((9, 14, 4), dtype=np.float32) * 3.0
    out = p.predict(x)
    assert out.shape == (9, 14, 4) and out.max() > 1.0
    with pytest.raises(ValueError, match="H x W x 4"):
        p.predict(x[..., :3])


def test_restore_works_in_a_thread_other_than_the_one_that_imported_paddle(tmp_path):
    """Paddle turns dygraph mode on only in the thread that imports it; a web UI worker
    thread importing it first left the main thread in static mode (a TypeError)."""
    import os
    import subprocess
    import sys

    from skimage import data as skdata

    from ppRestore.data.io import write_image

    write_image(str(tmp_path / "c.png"), skdata.chelsea()[:32, :48])
    code = (
        "import threading, ppRestore\n"
        "from ppRestore.inference import restore\n"
        f"args = ({str(tmp_path / 'c.png')!r},)\n"
        "kw = dict(config='configs/srcnn/srcnn_x3.yml', model_path='srcnn_x3')\n"
        "t = threading.Thread(target=lambda: restore(*args, **kw)); t.start(); t.join()\n"
        "print(restore(*args, **kw).data.shape)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(96, 144, 3)" in r.stdout
