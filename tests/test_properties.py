"""Property tests (hypothesis): round trips that must hold for every size and value."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ppRestore.config import load_config, save_config
from ppRestore.data import io as pio
from ppRestore.data import raw
from ppRestore.weights.safe_load import load_weights, save_weights

PROPS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

sizes = st.integers(1, 40)


# ---------------------------------------------------------------- pad / crop


@PROPS
@given(
    st.integers(1, 3),
    sizes,
    sizes,
    st.sampled_from([1, 2, 4, 8, 16, 32]),
    st.sampled_from(["reflect", "constant", "official"]),
)
def test_pad_crop_round_trip(c, h, w, multiple, mode):
    x = np.random.default_rng(h * 100 + w).random((c, h, w)).astype(np.float32)
    padded, pads = raw.pad_to_multiple(x, multiple, mode)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[0] == c
    if mode != "official":  # minimal padding
        assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    np.testing.assert_array_equal(raw.crop_padding(padded, pads), x)


# ---------------------------------------------------------------- Bayer


@PROPS
@given(st.integers(2, 30), st.integers(2, 30), st.sampled_from(raw.BAYER_PATTERNS))
def test_bayer_pack_unpack_round_trip(h, w, pattern):
    bayer = np.random.default_rng(h * 31 + w).integers(0, 1024, (h, w)).astype(np.uint16)
    packed = raw.pack_bayer(bayer, pattern)
    assert packed.shape == (4, (h + 1) // 2, (w + 1) // 2)
    np.testing.assert_array_equal(raw.unpack_bayer(packed, pattern, shape=(h, w)), bayer)


@PROPS
@given(st.integers(1, 15), st.integers(1, 15), st.sampled_from(raw.BAYER_PATTERNS))
def test_bayer_pattern_flip_is_an_involution_and_puts_red_first(h2, w2, pattern):
    h, w = 2 * h2, 2 * w2
    bayer = np.random.default_rng(h * 13 + w).random((h, w)).astype(np.float32)
    rggb = raw.to_rggb(bayer, pattern)
    np.testing.assert_array_equal(raw.from_rggb(rggb, pattern), bayer)
    # The red samples of the original pattern are the R channel of the RGGB packing.
    np.testing.assert_array_equal(
        np.sort(raw.pack_bayer(rggb, "RGGB")[0].ravel()),
        np.sort(raw.pack_bayer(bayer, pattern)[0].ravel()),
    )


# ---------------------------------------------------------------- image encode / decode


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    c = draw(st.sampled_from([1, 3]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    data = draw(arrays(dtype, (h, w, c)))
    alpha = draw(st.one_of(st.none(), arrays(dtype, (h, w))))
    return data, alpha


@PROPS
@given(images(), st.sampled_from([".png", ".tif"]))
def test_lossless_encode_decode_round_trip(img, ext):
    data, alpha = img
    out = pio.decode_image(pio.encode_image(ext, data, alpha))
    if alpha is not None and data.shape[2] == 1 and data.dtype == np.uint16 and ext == ".tif":
        # 16-bit grey + alpha TIFF is written as RGBA (neither OpenCV nor Pillow writes
        # 16-bit LA; PNG has ppRestore's own colour-type-4 encoder): the grey comes back
        # replicated in three channels
        np.testing.assert_array_equal(out.data, np.repeat(data, 3, axis=2))
    else:
        np.testing.assert_array_equal(out.data, data)
    if alpha is None:
        assert out.alpha is None
    else:
        np.testing.assert_array_equal(out.alpha, alpha)


@PROPS
@given(arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9))), st.integers(1, 8))
def test_orientation_matches_pillow_transpose(arr, orientation):
    from PIL import Image, ImageOps

    img = Image.fromarray(arr, "L")
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    got = pio.decode_image(buf.getvalue()).data[..., 0]
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- weights / config files


state_dicts = st.dictionaries(
    st.text(min_size=1, max_size=12),
    arrays(
        st.sampled_from(
            [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]
        ),
        st.lists(st.integers(0, 4), max_size=3).map(tuple),
    ),
    max_size=5,
)


@PROPS
@given(state_dicts, st.sampled_from([".pdparams", ".safetensors"]))
def test_weights_round_trip(tmp_path_factory, state, ext):
    p = tmp_path_factory.mktemp("w") / f"w{ext}"
    save_weights(state, p)
    got = load_weights(p)
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=10),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    ),
    max_leaves=10,
)


@PROPS
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=6).filter(lambda k: k not in ("_inherited_", "type")),
        trees,
        max_size=4,
    ),
    st.integers(1, 10**6),
)
def test_config_save_load_round_trip(tmp_path_factory, args, iters):
    # model: takes any keys (its constructor checks them); train: keys are checked now
    cfg = {"iters": iters, "model": {"type": "AnyNet", **args}, "task": "demo"}
    p = tmp_path_factory.mktemp("c") / "c.yml"
    save_config(cfg, str(p))
    assert load_config(str(p)) == cfg


# ---------------------------------------------------------------- predictor padding / tiling


@PROPS
@given(
    sizes,
    sizes,
    st.sampled_from([1, 2, 3, 4, 8, 16]),
    st.sampled_from(["reflect", "edge", "constant"]),
)
def test_predictor_pad_crop_round_trip(h, w, multiple, mode):
    from ppRestore.inference import tiling

    x = np.random.default_rng(h * 41 + w).random((1, 3, h, w)).astype(np.float32)
    xp, h0, w0 = tiling.pad_to_multiple(x, multiple, mode)
    assert (h0, w0) == (h, w)
    assert xp.shape[-2] % multiple == 0 and xp.shape[-1] % multiple == 0
    assert xp.shape[-2] - h < multiple and xp.shape[-1] - w < multiple
    np.testing.assert_array_equal(xp[..., :h0, :w0], x)


@PROPS
@given(
    st.integers(1, 48), st.integers(1, 48), st.integers(1, 40), st.integers(0, 16),
    st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]),
)  # fmt: skip
def test_tiled_forward_equals_whole_image(h, w, tile, overlap, multiple, scale):
    """A per-pixel model gives the same result tiled or whole (blend weights sum to 1)."""
    from ppRestore.inference import tiling

    h, w = (
        -(-h // multiple) * multiple,
        -(-w // multiple) * multiple,
    )  # aligned, as the predictor pads

    def run(t):
        y = np.tanh(3.0 * t - 1.0)
        return np.repeat(np.repeat(y, scale, axis=2), scale, axis=3) if scale > 1 else y

    x = np.random.default_rng(h * 53 + w).random((1, 2, h, w)).astype(np.float32)
    got = tiling.tiled_forward(
        run, x, tile=max(tile, multiple), overlap=overlap, scale=scale, multiple=multiple
    )
    np.testing.assert_allclose(got, run(x), rtol=0, atol=2e-6)


@PROPS
@given(st.integers(1, 500), st.integers(1, 200), st.integers(0, 64), st.sampled_from([1, 2, 4, 8]))
def test_tile_starts_cover_the_axis(length, tile, overlap, multiple):
    from ppRestore.inference import tiling

    length = -(-length // multiple) * multiple  # the predictor pads H, W to the multiple first
    tile, overlap = tiling.align_tile(tile, overlap, multiple)
    tile = min(tile, length)  # as tiled_forward does
    starts = tiling.tile_starts(length, tile, overlap, multiple)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + tile >= length  # the end is covered
    assert all(s % multiple == 0 for s in starts)
    for a, b in zip(starts, starts[1:]):
        assert b - a <= tile  # no gap between neighbouring tiles
        assert b - a <= tile - overlap or b == starts[-1]  # the overlap is kept
