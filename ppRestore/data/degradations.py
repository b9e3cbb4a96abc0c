"""Synthetic degradations (registered in :data:`ppRestore.registry.DEGRADATIONS`).

Each degradation is a callable ``deg(img, rng) -> img`` on an ``H x W x C`` float32
image in [0, 1] with an explicit ``np.random.Generator``: the dataset derives ``rng``
from ``(seed, index)`` (validation) or ``(seed, epoch, index)`` (training), so every
degraded image is reproducible whatever the worker count, and a resumed run sees the
same data as an uninterrupted one. A parameter given as ``[lo, hi]`` is drawn
uniformly per image; a scalar is fixed.

YAML::

    degradations:
      - {type: GaussianBlur, sigma: [0.5, 3.0]}
      - {type: GaussianNoise, sigma: 25}
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import numpy as np

from ..registry import DEGRADATIONS

Number = Union[float, int, Sequence[float]]


def _draw(v: Number, rng: np.random.Generator) -> float:
    """A fixed value, or a uniform draw from ``[lo, hi]``."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2 or v[0] > v[1]:
            raise ValueError(f"a range must be [lo, hi] with lo <= hi, got {v}")
        return float(rng.uniform(v[0], v[1]))
    return float(v)


def _check_range(name: str, v: Number, lo: float, hi: float) -> None:
    vals = v if isinstance(v, (list, tuple)) else [v]
    for x in vals:
        if not lo <= float(x) <= hi:
            raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    out = cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)
    return out.reshape(img.shape)


@DEGRADATIONS.register
class GaussianNoise:
    """Additive white Gaussian noise, ``sigma`` on the 0-255 scale (DnCNN's sigma=25).

    Args:
        sigma: fixed value or ``[lo, hi]`` range.
        gray_prob: probability that the same noise is added to every channel ("gray
            noise", Real-ESRGAN); 0 gives independent colour noise.
        clip: clip the result to [0, 1].
    """

    def __init__(self, sigma: Number = 25, gray_prob: float = 0.0, clip: bool = True) -> None:
        _check_range("sigma", sigma, 0, 255)
        self.sigma, self.gray_prob, self.clip = sigma, gray_prob, clip

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = _draw(self.sigma, rng) / 255.0
        gray = rng.random() < self.gray_prob
        shape = img.shape[:2] + (1,) if gray else img.shape
        out = img + rng.standard_normal(shape).astype(np.float32) * s
        return np.clip(out, 0, 1) if self.clip else out.astype(np.float32)


@DEGRADATIONS.register
class SaltPepperNoise:
    """Impulse noise: a fraction ``amount`` of pixels set to 0 or 1 (all channels)."""

    def __init__(self, amount: Number = 0.05, salt_ratio: float = 0.5) -> None:
        _check_range("amount", amount, 0, 1)
        self.amount, self.salt_ratio = amount, salt_ratio

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        amount = _draw(self.amount, rng)
        out = img.copy()
        u = rng.random(img.shape[:2])
        out[u < amount * self.salt_ratio] = 1.0
        out[(u >= amount * self.salt_ratio) & (u < amount)] = 0.0
        return out


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised isotropic ``size x size`` Gaussian kernel."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2.0 * max(sigma, 1e-6) ** 2))
    k = np.outer(g, g)
    return k / k.sum()


@DEGRADATIONS.register
class GaussianBlur:
    """Isotropic Gaussian blur; ``kernel_size`` odd (default ``2*ceil(3*sigma)+1``)."""

    def __init__(self, sigma: Number = 2.0, kernel_size: int = 0) -> None:
        _check_range("sigma", sigma, 0.01, 50)
        if kernel_size and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.sigma, self.kernel_size = sigma, kernel_size

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = _draw(self.sigma, rng)
        size = self.kernel_size or 2 * int(np.ceil(3 * s)) + 1
        return _filter(img, gaussian_kernel(size, s))


def motion_kernel(length: float, angle_deg: float, size: int) -> np.ndarray:
    """A line of ``length`` pixels at ``angle_deg`` drawn anti-aliased in a ``size`` kernel."""
    k = np.zeros((size, size), np.float64)
    c = (size - 1) / 2.0
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, max(int(length * 4), 2))
    a = np.deg2rad(angle_deg)
    xs, ys = c + t * np.cos(a), c - t * np.sin(a)
    for x, y in zip(xs, ys):  # bilinear splat keeps sub-pixel angles smooth
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dy, dx, w in (
            (0, 0, (1 - fx) * (1 - fy)),
            (0, 1, fx * (1 - fy)),
            (1, 0, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            yy, xx = y0 + dy, x0 + dx
            if 0 <= yy < size and 0 <= xx < size:
                k[yy, xx] += w
    return k / k.sum()


@DEGRADATIONS.register
class MotionBlur:
    """Linear motion blur of ``length`` pixels at ``angle`` degrees (random in [0, 180) if None)."""

    def __init__(self, length: Number = 15, angle: Any = None) -> None:
        _check_range("length", length, 1, 201)
        self.length, self.angle = length, angle

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length = _draw(self.length, rng)
        angle = rng.uniform(0, 180) if self.angle is None else _draw(self.angle, rng)
        size = int(np.ceil(length)) | 1
        return _filter(img, motion_kernel(length, angle, size))


@DEGRADATIONS.register
class BicubicDownscale:
    """MATLAB-compatible bicubic downscaling (antialiased), as SR papers build LR images.

    Calls :func:`ppRestore.data.resize.imresize`. The image is first cropped to a
    multiple of ``scale`` (``modcrop``) so HR and LR sizes match exactly; the dataset
    crops its GT the same way (see ``SyntheticDataset``).
    """

    changes_size = True
    #: no random draw: the same image always gives the same LR (cacheable).
    deterministic = True

    def __init__(self, scale: int = 4) -> None:
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.scale = int(scale)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from .resize import imresize

        h, w = img.shape[0] - img.shape[0] % self.scale, img.shape[1] - img.shape[1] % self.scale
        out = imresize(img[:h, :w], 1.0 / self.scale)
        return (
            np.clip(out, 0, 1)
            .astype(np.float32)
            .reshape(h // self.scale, w // self.scale, img.shape[2])
        )


@DEGRADATIONS.register
class JPEGCompression:
    """JPEG round trip through ``cv2.imencode`` at ``quality`` (1-100, or a range)."""

    def __init__(self, quality: Number = 30) -> None:
        _check_range("quality", quality, 1, 100)
        self.quality = quality

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        q = int(round(_draw(self.quality, rng)))
        u8 = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(
            ".jpg", u8[..., ::-1] if u8.shape[2] == 3 else u8[..., 0], [cv2.IMWRITE_JPEG_QUALITY, q]
        )
        if not ok:
            raise RuntimeError("cv2.imencode failed for JPEG")
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        dec = dec[..., ::-1] if dec.ndim == 3 else dec[..., None]
        return dec.astype(np.float32) / 255.0


@DEGRADATIONS.register
class RainStreaks:
    """Synthetic rain: sparse seeds motion-blurred into streaks, screen-blended.

    Args:
        density: fraction of pixels that seed a streak.
        length: streak length in pixels.
        angle: streak angle in degrees from the vertical (range or fixed).
        intensity: streak brightness.
    """

    def __init__(
        self,
        density: Number = (0.002, 0.01),
        length: Number = (10, 30),
        angle: Number = (-20, 20),
        intensity: Number = (0.6, 1.0),
    ) -> None:
        self.density, self.length, self.angle, self.intensity = density, length, angle, intensity

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        seeds = (rng.random((h, w)) < _draw(self.density, rng)).astype(np.float32)
        seeds *= rng.uniform(0.5, 1.0, (h, w)).astype(np.float32)
        seeds = cv2.GaussianBlur(seeds, (3, 3), 0.5)
        length = _draw(self.length, rng)
        k = motion_kernel(length, 90.0 + _draw(self.angle, rng), int(np.ceil(length)) | 1)
        streak = cv2.filter2D(seeds, -1, (k * length).astype(np.float32))
        streak = np.clip(streak * _draw(self.intensity, rng), 0, 1)[..., None]
        return (1.0 - (1.0 - img) * (1.0 - streak)).astype(np.float32)


def _smooth_field(h: int, w: int, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1] (upsampled low-res noise), a stand-in for depth."""
    import cv2

    low = rng.random((cells, cells)).astype(np.float32)
    f = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    f = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
    return f


@DEGRADATIONS.register
class Haze:
    """Atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    The depth-like map ``d`` grows towards the top of the image (a typical outdoor
    scene) plus a smooth random field, normalised to [0, 1].

    Args:
        beta: scattering coefficient (haze density).
        airlight: global atmospheric light ``A``.
    """

    def __init__(self, beta: Number = (0.5, 1.5), airlight: Number = (0.7, 1.0)) -> None:
        self.beta, self.airlight = beta, airlight

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
        d = 0.6 * ramp + 0.4 * _smooth_field(h, w, rng)
        t = np.exp(-_draw(self.beta, rng) * d)[..., None].astype(np.float32)
        a = _draw(self.airlight, rng)
        return np.clip(img * t + a * (1.0 - t), 0, 1).astype(np.float32)


@DEGRADATIONS.register
class PoissonGaussianNoise:
    """Raw-sensor noise: ``y = a * Poisson(x / a) + N(0, b^2)`` (shot + read noise).

    Args:
        a: shot-noise gain (variance ``a * x``), fixed or range.
        b: read-noise standard deviation, fixed or range.
    """

    def __init__(
        self, a: Number = (0.001, 0.01), b: Number = (0.001, 0.02), clip: bool = True
    ) -> None:
        self.a, self.b, self.clip = a, b, clip

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a, b = max(_draw(self.a, rng), 1e-8), _draw(self.b, rng)
        shot = rng.poisson(np.clip(img, 0, None) / a).astype(np.float32) * a
        out = shot + rng.standard_normal(img.shape).astype(np.float32) * b
        return np.clip(out, 0, 1) if self.clip else out


class DegradationPipeline:
    """Apply degradations in order with one generator."""

    def __init__(self, cfgs: List[Dict[str, Any]]) -> None:
        self.ops = [DEGRADATIONS.build(c) for c in (cfgs or [])]

    @property
    def deterministic(self) -> bool:
        """True when no op draws from the generator (ops declare ``deterministic``)."""
        return all(getattr(op, "deterministic", False) for op in self.ops)

    @property
    def scale(self) -> int:
        s = 1
        for op in self.ops:
            s *= getattr(op, "scale", 1) if getattr(op, "changes_size", False) else 1
        return s

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for op in self.ops:
            img = op(img, rng)
        return img.astype(np.float32)
