"""Raw pipeline: packing, k-sigma, padding, noise synthesis, ISP, and the official pipeline."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppRestore.data import raw

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "pmrnet_parity.npz")


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(2, 13),
    w=st.integers(2, 13),
    pattern=st.sampled_from(raw.BAYER_PATTERNS),
    seed=st.integers(0, 2**16),
)
def test_pack_unpack_round_trip(h: int, w: int, pattern: str, seed: int) -> None:
    bayer = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    packed = raw.pack_bayer(bayer, pattern)
    assert packed.shape == (4, (h + 1) // 2, (w + 1) // 2)
    np.testing.assert_array_equal(raw.unpack_bayer(packed, pattern, (h, w)), bayer)


@pytest.mark.parametrize("pattern", raw.BAYER_PATTERNS)
def test_pack_channel_order_is_r_g1_g2_b(pattern: str) -> None:
    # Paint each CFA site with its colour's code and check the packed order.
    codes = {"R": 1.0, "G": 2.0, "B": 4.0}
    cell = np.array(
        [[codes[pattern[0]], codes[pattern[1]]], [codes[pattern[2]], codes[pattern[3]]]]
    )
    bayer = np.tile(cell, (3, 4))
    # Mark the green on the red row by adding 0.5 so G1 and G2 are distinguishable.
    red_row = 0 if "R" in pattern[:2] else 1
    bayer[red_row::2][bayer[red_row::2] == 2.0] = 2.5
    packed = raw.pack_bayer(bayer, pattern)
    assert [float(np.unique(c)[0]) for c in packed] == [1.0, 2.5, 2.0, 4.0]
    assert all(np.unique(c).size == 1 for c in packed)


@pytest.mark.parametrize("pattern", raw.BAYER_PATTERNS)
def test_flip_to_rggb_agrees_with_packing(pattern: str) -> None:
    bayer = np.random.default_rng(0).random((6, 8))
    flipped = raw.to_rggb(bayer, pattern)
    # Same pixels per channel (the flip only mirrors their positions).
    a = raw.pack_bayer(flipped, "RGGB")
    b = raw.pack_bayer(bayer, pattern)
    fr, fc = raw._FLIPS[pattern]
    b = b[:, :: -1 if fr else 1, :: -1 if fc else 1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(raw.from_rggb(flipped, pattern), bayer)


def test_odd_padding_keeps_cfa_phase() -> None:
    bayer = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]]), (3, 3))[:5, :5]
    padded = raw.pad_to_even(bayer)
    assert padded.shape == (6, 6)
    np.testing.assert_array_equal(padded, np.tile(np.array([[1.0, 2.0], [3.0, 4.0]]), (3, 3)))


def test_bad_inputs_raise() -> None:
    with pytest.raises(raw.RawError, match="pattern"):
        raw.pack_bayer(np.zeros((4, 4)), "RGBG")
    with pytest.raises(raw.RawError, match="2-D"):
        raw.pack_bayer(np.zeros((4, 4, 3)))
    with pytest.raises(raw.RawError, match="ISO"):
        raw.KSigma().forward(np.zeros(3), -5)
    with pytest.raises(raw.RawError, match="pad mode"):
        raw.pad_to_multiple(np.zeros((4, 4)), 32, "wrap")


@settings(max_examples=30, deadline=None)
@given(iso=st.floats(50, 25600), seed=st.integers(0, 1000))
def test_ksigma_inverse_round_trip(iso: float, seed: int) -> None:
    ks = raw.KSigma()
    x = np.random.default_rng(seed).random((3, 5)).astype(np.float64)
    np.testing.assert_allclose(ks.inverse(ks.forward(x, iso), iso), x, atol=1e-9)


def test_ksigma_is_identity_at_anchor_and_matches_official() -> None:
    ks = raw.KSigma()
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(ks.forward(x, 1600), x, atol=1e-12)
    with np.load(FIXTURE) as f:
        np.testing.assert_allclose(
            ks.forward(f["raw_ksigma_in"], float(f["raw_iso"])), f["raw_ksigma_out"], rtol=1e-6
        )


def test_ksigma_equalises_noise_variance() -> None:
    # The point of the transform: after it, the noise at any ISO has the anchor's statistics.
    ks = raw.KSigma()
    rng = np.random.default_rng(0)
    clean = np.full(200_000, 0.2)
    ref = raw.add_raw_noise(clean, 1600, rng).var()
    for iso in (400, 6400):
        noisy = raw.add_raw_noise(clean, iso, rng)
        mapped = ks.forward(noisy, iso) - ks.forward(clean, iso)
        # k-sigma makes the variance affine in the signal with the anchor's slope/offset;
        # with the same mapped signal level the variance should match the anchor's
        # variance at that level.
        level = float(ks.forward(clean[:1], iso)[0])
        anchor = raw.add_raw_noise(np.full(200_000, level), 1600, rng).var()
        assert abs(mapped.var() / anchor - 1) < 0.03, (iso, mapped.var(), anchor, ref)


def test_noise_model_statistics() -> None:
    ks = raw.KSigma()
    rng = np.random.default_rng(1)
    x = 0.3
    noisy = raw.add_raw_noise(np.full(300_000, x), 3200, rng)
    k, s2 = ks.k(3200), ks.sigma2(3200)
    expected_var = (k * x * ks.v + s2) / ks.v**2  # shot (k * signal) + read variance
    assert abs(noisy.mean() - x) < 1e-3
    assert abs(noisy.var() / expected_var - 1) < 0.02
    a = raw.add_raw_noise(np.full(10, x), 3200, np.random.default_rng(5))
    b = raw.add_raw_noise(np.full(10, x), 3200, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["reflect", "constant", "official"])
@pytest.mark.parametrize("h,w", [(46, 66), (64, 32), (5, 3), (33, 95)])
def test_pad_crop_round_trip(mode: str, h: int, w: int) -> None:
    x = np.random.default_rng(2).random((4, h, w))
    padded, pads = raw.pad_to_multiple(x, 32, mode)
    assert padded.shape[1] % 32 == 0 and padded.shape[2] % 32 == 0
    if mode != "official":
        assert padded.shape[1] - h < 32 and padded.shape[2] - w < 32
    np.testing.assert_array_equal(raw.crop_padding(padded, pads), x)


def test_official_pad_matches_reference_formula() -> None:
    # run_benchmark.py pads (32 - n % 32) // 2 zeros on both sides (valid for even n % 32).
    for n in (46, 64, 66, 90):
        x = np.ones((1, n, n))
        padded, pads = raw.pad_to_multiple(x, 32, "official")
        ph = (32 - n % 32) // 2
        assert pads == (ph, ph, ph, ph)
        assert padded[0, :ph].sum() == 0


def test_normalize_bayer_levels() -> None:
    arr = np.array([[64, 1023], [500, 0]], np.uint16)
    out = raw.normalize_bayer(arr, 64, 1023)
    np.testing.assert_allclose(out, [[0, 1], [436 / 959, 0]], atol=1e-6)
    per = raw.normalize_bayer(np.full((2, 2), 100, np.uint16), [100, 90, 80, 70], 1000, "RGGB")
    np.testing.assert_allclose(per.ravel(), np.array([0, 10, 20, 30]) / (1000 - 85), atol=1e-6)


def test_read_raw_npy_and_missing_rawpy(tmp_path) -> None:
    arr = (np.random.default_rng(3).random((6, 8)) * 1023).astype(np.uint16)
    p = tmp_path / "x.npy"
    np.save(p, arr)
    img = raw.read_raw(str(p), pattern="bggr", black_level=0, white_level=1023)
    assert img.pattern == "BGGR"
    np.testing.assert_allclose(img.bayer, arr / 1023, atol=1e-6)
    bad = tmp_path / "x.npy.txt"
    bad.write_text("nope")
    with pytest.raises(raw.RawError, match="unsupported"):
        raw.read_raw(str(bad))
    dng = tmp_path / "x.dng"
    dng.write_bytes(b"II*\x00 not really a dng")
    try:
        import rawpy  # noqa: F401
    except ImportError:
        with pytest.raises(raw.RawError, match="rawpy"):
            raw.read_raw(str(dng))
    else:
        with pytest.raises(raw.RawError):
            raw.read_raw(str(dng))


@pytest.mark.parametrize("pattern", raw.BAYER_PATTERNS)
def test_isp_demosaic_code_per_pattern(pattern: str) -> None:
    # A pure-red scene mosaicked in each pattern must come out red.
    rgb_scene = np.zeros((16, 16, 3))
    rgb_scene[..., 0] = 0.8
    bayer = np.zeros((16, 16))
    for ch, (r, c) in zip((0, 1, 1, 2), raw._OFFSETS[pattern]):
        bayer[r::2, c::2] = rgb_scene[r::2, c::2, ch]
    rgb = raw.raw_to_rgb(bayer, pattern, wb_gains=(1, 1, 1), gamma=1.0)
    centre = rgb[6:10, 6:10].reshape(-1, 3).mean(0)
    assert centre[0] > 0.75 and centre[1] < 0.05 and centre[2] < 0.05


def test_isp_preview_writes_png(tmp_path) -> None:
    from ppRestore.data.io import read_image

    bayer = np.random.default_rng(4).random((20, 30)).astype(np.float32)
    path = raw.save_raw_preview(str(tmp_path / "p.png"), bayer, "GRBG", gamma="srgb")
    img = read_image(path)
    assert img.data.shape == (20, 30, 3) and img.data.dtype == np.uint8


def _seeded_pmrnet(fx):
    import paddle

    from ppRestore.registry import CONVERTERS, MODELS
    from ppRestore.weights.safe_load import load_state_dict

    spec = importlib.util.spec_from_file_location(
        "pmrnet_seeded", os.path.join(os.path.dirname(__file__), "fixtures", "pmrnet_seeded.py")
    )
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    seeded_state = seeded.seeded_state

    model = MODELS.get("PmrNet")(in_channels=4)
    model.eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = seeded_state(shapes, int(fx["random_seed"]))
    load_state_dict(model, CONVERTERS.get("pmrnet:torch")(state, model))
    return paddle, model


def test_denoise_raw_matches_official_pipeline() -> None:
    # run_benchmark.Denoiser.run on a random RGGB image, recorded by the fixture script
    # with the official network carrying the seeded weights.
    with np.load(FIXTURE) as f:
        fx = {k: f[k] for k in f.files}
    _, model = _seeded_pmrnet(fx)
    out = raw.denoise_raw(
        fx["raw_bayer"], float(fx["raw_iso"]), model, "RGGB", pad="official", clip=False
    )
    ref = fx["raw_out"]
    assert out.shape == ref.shape == fx["raw_bayer"].shape
    assert np.abs(out - ref).max() <= 2e-6 * np.abs(ref).max()


def test_denoise_raw_patterns_sizes_and_levels() -> None:
    # A callable model: identity in k-sigma space must give back the (clipped) input for
    # every pattern, odd sizes and integer input: proves the pre/post-processing inverts.
    seen = []

    def identity(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x

    rng = np.random.default_rng(6)
    for pattern in raw.BAYER_PATTERNS:
        for h, w in ((37, 50), (64, 64), (9, 15)):
            bayer = rng.random((h, w)).astype(np.float32)
            out = raw.denoise_raw(bayer, 2000, identity, pattern)
            np.testing.assert_allclose(out, bayer, atol=1e-5)
    assert all(s[1] == 4 and s[2] % 32 == 0 and s[3] % 32 == 0 for s in seen)
    u16 = (rng.random((10, 12)) * 959 + 64).astype(np.uint16)
    out = raw.denoise_raw(u16, 800, identity, "BGGR", black_level=64, white_level=1023)
    np.testing.assert_allclose(out, (u16.astype(np.float64) - 64) / 959, atol=1e-5)
    with pytest.raises(raw.RawError, match="shape"):
        raw.denoise_raw(u16, 800, lambda x: x[:, :3], "BGGR", black_level=64, white_level=1023)


def test_model_inp_scale_is_equivalent_to_external_scaling() -> None:
    # PmrNet(inp_scale=256) on [0, 1] data == official net(x * 256) / 256, and denoise_raw
    # must not apply the factor twice.
    with np.load(FIXTURE) as f:
        fx = {k: f[k] for k in f.files}
    paddle, model = _seeded_pmrnet(fx)
    model.inp_scale = 256.0
    out = raw.denoise_raw(
        fx["raw_bayer"], float(fx["raw_iso"]), model, "RGGB", pad="official", clip=False
    )
    ref = fx["raw_out"]
    assert np.abs(out - ref).max() <= 2e-6 * np.abs(ref).max()


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ppRestore.data.raw, ppRestore.data.documents; print('paddle' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_synthetic_raw_dataset(tmp_path) -> None:
    from ppRestore.data.io import write_image
    from ppRestore.registry import DATASETS

    rng = np.random.default_rng(8)
    for i in range(2):
        write_image(str(tmp_path / f"{i}.png"), (rng.random((40, 52, 3)) * 255).astype(np.uint8))
    cfg = {
        "type": "SyntheticRawDataset",
        "dataset_root": str(tmp_path),
        "patch_size": 32,
        "mode": "train",
    }
    ds = DATASETS.build(dict(cfg, iso_range=[3200, 3200]))
    lq, gt, idx = ds[1]
    assert lq.shape == gt.shape == (4, 16, 16) and lq.dtype == np.float32 and int(idx) == 1
    np.testing.assert_array_equal(ds[1][0], lq)  # a pure function of the key
    assert not np.array_equal(ds[3][0], lq)  # next epoch: new crop/noise
    # Back in raw units (inverse k-sigma), the noise grows with the ISO.
    ks = raw.KSigma()
    stds = []
    for iso in (400, 6400):
        lq, gt, _ = DATASETS.build(dict(cfg, iso_range=[iso, iso], mode="val"))[0]
        stds.append(np.std(ks.inverse(lq, iso) - ks.inverse(gt, iso)))
    assert 0 < stds[0] < stds[1] / 2
    with pytest.raises(ValueError, match="patch_size"):
        DATASETS.build(dict(cfg, patch_size=31))


def test_unprocess_then_isp_recovers_colour() -> None:
    # unprocess_rgb followed by raw_to_rgb with the same gains and exposure restores a
    # flat colour patch (the ISP is the approximate inverse).
    rgb = np.zeros((16, 16, 3))
    rgb[:] = (0.7, 0.5, 0.3)
    bayer, gains = raw.unprocess_rgb(rgb, np.random.default_rng(0))
    exposure = float(np.median(bayer[0::2, 1::2])) / 0.5**2.2
    back = raw.raw_to_rgb(np.clip(bayer / exposure, 0, 1), "RGGB", wb_gains=gains, gamma=2.2)
    np.testing.assert_allclose(back[4:12, 4:12].reshape(-1, 3).mean(0), (0.7, 0.5, 0.3), atol=0.01)


def test_denoise_raw_bggr_follows_official_flip() -> None:
    # run_benchmark.py denoises BGGR data by flipping both axes to RGGB and back.
    import paddle

    from ppRestore.registry import MODELS

    paddle.seed(3)
    model = MODELS.get("PmrNet")(in_channels=4, width=0.25)
    model.eval()
    bayer = np.random.default_rng(9).random((96, 96)).astype(np.float32)
    a = raw.denoise_raw(bayer, 3200, model, "BGGR", clip=False)
    b = raw.denoise_raw(bayer[::-1, ::-1].copy(), 3200, model, "RGGB", clip=False)[::-1, ::-1]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert not np.allclose(a, bayer, atol=1e-3)  # the random network did change the image


# ---- the raw stage of the Predictor and RawImage's value convention (issue 17 item 1)


def test_predictor_raw_stage_pads_once_and_matches_denoise_raw_end() -> None:
    import paddle

    from ppRestore.inference.predictor import Predictor

    seen = []

    class Net(paddle.nn.Layer):
        pad_multiple, scale, in_channels, out_channels = 32, 1, 4, 4

        def forward(self, x):
            seen.append(tuple(x.shape))
            # a global mean: the output depends on where the padding went
            return x * 0.5 + x[:, :, :5, :5].mean()

    rng = np.random.default_rng(5)
    bayer = rng.random((52, 70)).astype(np.float32)
    net = Net()
    pred = Predictor.from_model(net, infer_cfg={"color": "raw", "pad_multiple": 32})
    got = pred.restore_raw(bayer, 1600, "GRBG")
    # one padding step: the packed 26 x 35 frame reaches the network as 32 x 64
    assert seen == [(1, 4, 32, 64)]
    ref = raw.denoise_raw(bayer, 1600, net, "GRBG", pad="end")
    np.testing.assert_allclose(got, ref, atol=1e-6)
    centred = raw.denoise_raw(bayer, 1600, net, "GRBG", pad="reflect")
    assert np.abs(ref - centred).max() > 1e-3  # so the match above says where it padded


@pytest.mark.parametrize(
    "dtype, black, white",
    [(np.uint16, 64, 1023), (np.uint16, [60, 64, 64, 70], 1023), (np.float32, None, None)],
)
def test_read_raw_remembers_dtype_and_levels(tmp_path, dtype, black, white) -> None:
    rng = np.random.default_rng(1)
    if dtype is np.float32:
        arr = rng.random((10, 12)).astype(np.float32)
    else:
        arr = rng.integers(100, 1000, (10, 12)).astype(dtype)
    np.save(tmp_path / "f.npy", arr)
    img = raw.read_raw(str(tmp_path / "f.npy"), "BGGR", black, white)
    assert img.dtype == arr.dtype and img.bayer.dtype == np.float32
    back = img.to_stored(img.bayer)
    assert back.dtype == arr.dtype
    np.testing.assert_allclose(
        back.astype(np.float64), arr.astype(np.float64), atol=0.5 if dtype is np.uint16 else 1e-6
    )
