"""Image-quality metrics as pure numpy functions (float64), BasicSR/MATLAB conventions.

* PSNR: ``10 log10(max_val^2 / MSE)`` over the (optionally border-cropped) image.
* SSIM: Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error
  visibility to structural similarity", IEEE TIP 2004 -- 11x11 Gaussian window with
  sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over 'valid' windows only, averaged over
  channels (what BasicSR's ``calculate_ssim`` and the MATLAB ``ssim_index`` do).
* Y channel: ITU-R BT.601 luma in the studio range 16-235 (MATLAB ``rgb2ycbcr``), which
  is what super-resolution papers report.

Images are ``H x W`` or ``H x W x C`` arrays (RGB channel order) with values in
``[0, max_val]``; ``max_val`` defaults to 255 (uint8 images). For float images in
``[0, 1]`` pass ``max_val=1.0``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calculate_psnr", "calculate_ssim", "rgb_to_y", "crop_border_of"]


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {img.shape}")
    return img.astype(np.float64)


def rgb_to_y(img: np.ndarray, max_val: float = 255.0) -> np.ndarray:
    """BT.601 studio-range luma of an RGB image, in the same ``[0, max_val]`` scale.

    Uses MATLAB ``rgb2ycbcr``'s coefficients: Y = 16 + (65.481 R + 128.553 G + 24.966 B)
    with R, G, B in [0, 1] and Y in [0, 255]; the result is rescaled to ``max_val``.
    """
    img = _as_hwc(img)
    if img.shape[2] != 3:
        raise ValueError(f"rgb_to_y needs 3 channels, got {img.shape[2]}")
    x = img / max_val
    y = 16.0 + x[..., 0] * 65.481 + x[..., 1] * 128.553 + x[..., 2] * 24.966
    return (y * (max_val / 255.0))[..., None]


def crop_border_of(img: np.ndarray, crop_border: int) -> np.ndarray:
    """Drop ``crop_border`` pixels on each side (SR papers crop ``scale`` pixels)."""
    if crop_border <= 0:
        return img
    if img.shape[0] <= 2 * crop_border or img.shape[1] <= 2 * crop_border:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {img.shape[:2]} image")
    return img[crop_border:-crop_border, crop_border:-crop_border, ...]


def _prepare(img, img2, crop_border, test_y_channel, max_val):
    a, b = _as_hwc(img), _as_hwc(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if test_y_channel and a.shape[2] == 3:
        a, b = rgb_to_y(a, max_val), rgb_to_y(b, max_val)
    return crop_border_of(a, crop_border), crop_border_of(b, crop_border)


def calculate_psnr(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    test_y_channel: bool = False,
    max_val: float = 255.0,
) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images).

    Args:
        img, img2: images of equal shape with values in ``[0, max_val]``.
        crop_border: pixels removed on each side before comparing.
        test_y_channel: compare the BT.601 Y channel of RGB images.
        max_val: the peak value (255 for 8-bit, 1.0 for float images).
    """
    a, b = _prepare(img, img2, crop_border, test_y_channel, max_val)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(max_val**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2.0 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_single(a: np.ndarray, b: np.ndarray, max_val: float) -> float:
    import cv2

    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    win = _gaussian_window()

    def filt(x: np.ndarray) -> np.ndarray:
        # 'valid' filtering: keep only windows fully inside the image (border 5 dropped).
        return cv2.filter2D(x, -1, win, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = filt(a * a) - mu1_sq
    s2 = filt(b * b) - mu2_sq
    s12 = filt(a * b) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def calculate_ssim(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    test_y_channel: bool = False,
    max_val: float = 255.0,
) -> float:
    """Structural similarity (Wang et al. 2004), mean over channels.

    Args: as :func:`calculate_psnr`. Images must be at least 11 x 11 after cropping.
    """
    a, b = _prepare(img, img2, crop_border, test_y_channel, max_val)
    if a.shape[0] < 11 or a.shape[1] < 11:
        raise ValueError(f"SSIM needs at least 11 x 11 pixels, got {a.shape[:2]}")
    return float(np.mean([_ssim_single(a[..., c], b[..., c], max_val) for c in range(a.shape[2])]))
