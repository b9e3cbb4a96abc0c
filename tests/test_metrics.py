"""PSNR/SSIM against scikit-image and a hand-computed Y-channel value."""

import math

import numpy as np
import pytest

from ppRestore.metrics import calculate_psnr, calculate_ssim, rgb_to_y

skm = pytest.importorskip("skimage.metrics")


def _pair(seed=0, shape=(40, 52, 3)):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_skimage(seed):
    a, b = _pair(seed)
    ours = calculate_psnr(a, b)
    ref = skm.peak_signal_noise_ratio(a, b, data_range=255)
    assert abs(ours - ref) <= 1e-6  # measured: 0.0 (identical formula, float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_skimage_rgb(seed):
    a, b = _pair(seed)
    ours = calculate_ssim(a, b)
    ref = skm.structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2,
    )
    assert abs(ours - ref) <= 1e-4  # measured: 0.0 -- same 11x11 window and valid region


def test_ssim_grey_and_float_scale():
    a, b = _pair(3, (30, 30))
    ref = skm.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert abs(calculate_ssim(a, b) - ref) <= 1e-6
    # the same images as floats in [0, 1] with max_val=1 give the same SSIM/PSNR
    assert abs(calculate_ssim(a / 255.0, b / 255.0, max_val=1.0) - ref) <= 1e-6
    assert abs(calculate_psnr(a / 255.0, b / 255.0, max_val=1.0) - calculate_psnr(a, b)) <= 1e-9


def test_y_channel_hand_value():
    # Pure red vs pure blue: Y = 16 + 65.481 = 81.481 and Y = 16 + 24.966 = 40.966
    # (MATLAB rgb2ycbcr); the difference is 40.515, so PSNR = 20 log10(255 / 40.515).
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 255
    assert np.allclose(rgb_to_y(red), 81.481)
    assert np.allclose(rgb_to_y(blue), 40.966)
    expected = 20 * math.log10(
        255 / 40.515
    )  # = 15.97849 (255 / 40.515 = 6.29396, log10 = 0.798924)
    assert abs(calculate_psnr(red, blue, test_y_channel=True) - expected) < 1e-9
    assert abs(expected - 15.978487) < 1e-5


def test_crop_border_and_identity():
    a, b = _pair(4)
    a2 = a.copy()
    a2[:2] = 0  # corrupt a 2-pixel border: cropping 2 pixels makes the PSNR ignore it
    assert calculate_psnr(a2, a, crop_border=2) == float("inf")
    assert calculate_psnr(a2, a) < 40
    assert calculate_ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_psnr(a, a[:10])
