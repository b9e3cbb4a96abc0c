"""MATLAB-compatible colour conversion (ppRestore.data.color) and bicubic imresize
(ppRestore.data.resize)."""

import numpy as np
import pytest
from PIL import Image

from ppRestore.data.color import rgb2y, rgb2ycbcr, ycbcr2rgb
from ppRestore.data.resize import cubic, imresize, resize_weights


def test_rgb2ycbcr_matlab_values_uint8():
    # MATLAB: rgb2ycbcr(uint8([255 255 255; 0 0 0; 255 0 0])) (as a 3x1 RGB image)
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)
    out = rgb2ycbcr(rgb)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [[235, 128, 128], [16, 128, 128], [81, 90, 240]])
    np.testing.assert_array_equal(rgb2y(rgb)[0], [235, 16, 81])


def test_ycbcr_roundtrip_float_and_uint8():
    rng = np.random.default_rng(0)
    f = rng.random((7, 5, 3))
    ycc = rgb2ycbcr(f)
    assert ycc[..., 0].min() >= 16 / 255 - 1e-12 and ycc[..., 0].max() <= 235 / 255 + 1e-12
    np.testing.assert_allclose(ycbcr2rgb(ycc), f, atol=1e-12)
    np.testing.assert_allclose(rgb2y(f), ycc[..., 0], atol=1e-12)
    u = rng.integers(0, 256, (9, 4, 3)).astype(np.uint8)
    back = ycbcr2rgb(rgb2ycbcr(u)).astype(int)
    # 8-bit YCbCr has fewer codes than RGB: MATLAB's round trip is off by at most 1-2.
    assert np.abs(back - u).max() <= 2
    assert ycbcr2rgb(rgb2ycbcr(f.astype(np.float32))).dtype == np.float32


def test_color_rejects_bad_shapes():
    with pytest.raises(ValueError):
        rgb2ycbcr(np.zeros((4, 4, 2)))
    with pytest.raises(TypeError):
        rgb2ycbcr(np.zeros((4, 4, 3), dtype=np.int32))


def test_cubic_kernel_values():
    # Keys a = -0.5 at hand-checked points.
    np.testing.assert_allclose(
        cubic(np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5])),
        [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0],
    )


def test_imresize_upscale_hand_computed():
    # x2 upscale of [1 2 3 4]: output 1 samples u = 0.75 -> taps (mirrored) a, a, b
    # with weights 0.2265625 + 0.8671875 on a and -0.0703125 - 0.0234375 on b.
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize(x, (1, 2))
    assert out.shape == (1, 8)
    assert out[0, 0] == pytest.approx(1.09375 * 1 - 0.09375 * 2)
    # output 2 samples u = 1.25: -0.0703125*a(mirror) + 0.8671875*a + 0.2265625*b - 0.0234375*c
    assert out[0, 1] == pytest.approx(0.796875 * 1 + 0.2265625 * 2 - 0.0234375 * 3)
    # symmetric image: output is mirror-symmetric too
    np.testing.assert_allclose(out[0] + out[0, ::-1], 5.0)


def test_imresize_downscale_hand_computed_antialias():
    # /2 with antialiasing: the kernel is stretched to width 8 and halved; output 1
    # (u = 1.5) = 0.5 * (1.09375 a + 0.796875 b + 0.203125 c - 0.09375 d) after mirroring.
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize(x, (1, 0.5))
    assert out.shape == (1, 2)
    assert out[0, 0] == pytest.approx(
        0.5 * (1.09375 * 1 + 0.796875 * 2 + 0.203125 * 3 - 0.09375 * 4)
    )
    assert out[0, 1] == pytest.approx(5.0 - out[0, 0])


def test_imresize_weights_sum_to_one_and_indices_in_range():
    for n_in, scale in [(10, 0.25), (7, 3.0), (33, 1 / 3), (5, 0.5)]:
        n_out = int(np.ceil(n_in * scale))
        w, idx = resize_weights(n_in, n_out, scale)
        np.testing.assert_allclose(w.sum(1), 1.0)
        assert idx.min() >= 0 and idx.max() < n_in


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2, 3, 4])
def test_imresize_matches_pil_float_interior(scale):
    # PIL's float ('F') bicubic uses the same a = -0.5 kernel and the same antialias
    # stretching; only the border handling differs (PIL renormalises, MATLAB mirrors),
    # so away from the border both must agree to float32 precision.
    rng = np.random.default_rng(1)
    a = rng.random((24, 36)).astype(np.float32)
    out = imresize(a, scale)
    assert out.shape == (int(np.ceil(24 * scale)), int(np.ceil(36 * scale)))
    assert out.dtype == np.float32
    ref = np.asarray(Image.fromarray(a, "F").resize(out.shape[::-1], Image.BICUBIC))
    m = int(max(3, 2 * scale + 1))
    np.testing.assert_allclose(out[m:-m, m:-m], ref[m:-m, m:-m], atol=2e-6)
    assert np.abs(out - ref).max() > 1e-4  # the border really is MATLAB's, not PIL's


def test_imresize_properties():
    c = np.full((12, 9, 3), 0.3)
    np.testing.assert_allclose(imresize(c, 0.25), 0.3)
    np.testing.assert_allclose(imresize(c, 3), 0.3)
    # Cubic convolution reproduces linear ramps away from the border.
    ramp = np.tile(np.arange(20, dtype=np.float64), (6, 1))
    up = imresize(ramp, (1, 2))
    u = np.arange(1, 41) / 2 + 0.5 * (1 - 1 / 2) - 1  # 0-based sample positions
    np.testing.assert_allclose(up[:, 4:-4], np.tile(u[4:-4], (6, 1)), atol=1e-12)
    # uint8 stays uint8 and in range; MATLAB rounds and saturates after each 1-D pass, so
    # it differs from the float result by the propagated rounding (<= 0.5 * (1 + sum|w|))
    # plus intermediate saturation of overshoots, a couple of grey levels at most.
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (16, 20, 3)).astype(np.uint8)
    out8 = imresize(img, 0.5)
    assert out8.dtype == np.uint8 and out8.shape == (8, 10, 3)
    outf = imresize(img.astype(np.float64), 0.5)
    assert np.abs(out8.astype(float) - np.clip(outf, 0, 255)).max() <= 2.0
    # channels are resized independently
    np.testing.assert_allclose(
        imresize(img.astype(float), 0.5)[..., 1], imresize(img[..., 1].astype(float), 0.5)
    )
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 2)
    assert imresize(np.zeros((10, 10)), output_shape=(4, 7)).shape == (4, 7)


@pytest.mark.shared_data
def test_set5_bicubic_baseline_matches_papers(shared_data):
    """Bicubic x3/x4 on Set5 (Y, border = scale, uint8 like MATLAB) reproduces the
    baseline the SR papers table: 30.39 / 28.42 dB (e.g. SRCNN, TPAMI 2016, Set5 results)."""
    import os

    from ppRestore.data.io import list_images, read_image

    for scale, paper in ((3, 30.39), (4, 28.42)):
        psnrs = []
        for path in list_images(os.path.join(shared_data, "set5")):
            hr = read_image(path).data
            hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
            up = imresize(imresize(hr, 1 / scale), scale)
            b = slice(scale, -scale)
            y_hr = rgb2ycbcr(hr)[b, b, 0].astype(np.float64)
            y_up = rgb2ycbcr(up)[b, b, 0].astype(np.float64)
            psnrs.append(10 * np.log10(255.0**2 / np.mean((y_hr - y_up) ** 2)))
        assert np.mean(psnrs) == pytest.approx(paper, abs=0.01)
