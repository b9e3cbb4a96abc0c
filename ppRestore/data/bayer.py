"""Bayer maths for PmrNet: CFA patterns, packing, k-sigma transform, noise, levels, padding.

Follows the official PMRID benchmark code (https://github.com/MegEngine/PMRID,
``run_benchmark.py`` / ``utils.py``) of Wang et al., "Practical Deep Raw Image Denoising
on Mobile Devices", ECCV 2020, and documents where this module differs.

Conventions
-----------
* A Bayer image is an ``H x W`` float array in ``[0, 1]`` (black level subtracted,
  divided by ``white - black``); integer arrays are normalised by :func:`normalize_bayer`.
* ``pattern`` names the 2x2 colour filter cell read row by row: ``RGGB``, ``BGGR``,
  ``GRBG`` or ``GBRG``.
* :func:`pack_bayer` always returns channels in the order **R, G1, G2, B**, where G1 is
  the green on the red rows and G2 the green on the blue rows, so every pattern packs to
  the channel order the official network was trained on.
* :func:`to_rggb` turns any pattern into RGGB by flipping (BGGR: both axes, GRBG:
  left-right, GBRG: up-down) as the official benchmark does for BGGR. Unlike picking
  pixels by offset, a flip keeps each red pixel at the top-left of its cell, the geometry
  the network saw in training; :func:`~ppRestore.data.raw_denoise.denoise_raw` uses it.

Noise model (paper Sec. 3): a raw value ``x`` (in DN, ``x = x01 * V`` with ``V = 959``)
is ``k * Poisson(x / k) + N(0, sigma2)``, with the system gain ``k`` and read-noise
variance ``sigma2`` polynomials of the ISO calibrated for the paper's phone (OPPO Reno
10x). The k-sigma transform maps an image at any ISO to the noise level of the anchor
ISO 1600, so one network serves every ISO.

Related modules: :mod:`.raw_io` (``read_raw`` -> :class:`~.raw_io.RawImage`), :mod:`.isp`
(previews), :mod:`.raw_denoise` (the pre/post-processing around a network),
:mod:`.raw_dataset` (synthetic training pairs); :mod:`ppRestore.data.raw` re-exports
them all under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PACKED_CHANNELS = ("R", "G1", "G2", "B")

# (row, col) of R, G1, G2, B inside the 2x2 cell, per pattern.
_OFFSETS = {
    "RGGB": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "BGGR": ((1, 1), (1, 0), (0, 1), (0, 0)),
    "GRBG": ((0, 1), (0, 0), (1, 1), (1, 0)),
    "GBRG": ((1, 0), (1, 1), (0, 0), (0, 1)),
}
# (flip rows, flip cols) that turn an even-sized image of the pattern into RGGB.
_FLIPS = {
    "RGGB": (False, False),
    "BGGR": (True, True),
    "GRBG": (False, True),
    "GBRG": (True, False),
}

# Official constants (run_benchmark.py: run_benchmark() and Denoiser).
K_COEFF = (0.0005995267, 0.00868861)
B_COEFF = (7.11772e-7, 6.514934e-4, 0.11492713)
ANCHOR_ISO = 1600.0
WHITE_DN = 959.0  # V: the white level minus black level of the calibrated sensor, in DN
INP_SCALE = 256.0  # the official network sees k-sigma images multiplied by this


class RawError(ValueError):
    """A raw input is unreadable or inconsistent (shape, pattern, levels)."""


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` upper-cased, or raise for an unknown one."""
    p = str(pattern).upper()
    if p not in _OFFSETS:
        raise RawError(f"unknown Bayer pattern '{pattern}'; use one of {', '.join(BAYER_PATTERNS)}")
    return p


def _check_2d(bayer: np.ndarray) -> np.ndarray:
    bayer = np.asarray(bayer)
    if bayer.ndim != 2:
        raise RawError(f"a Bayer image must be 2-D (H x W), got shape {bayer.shape}")
    if min(bayer.shape) < 2:
        raise RawError(f"a Bayer image needs at least 2x2 pixels, got {bayer.shape}")
    return bayer


def pad_to_even(bayer: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by one row/column, keeping the CFA phase.

    Mode ``reflect`` copies row ``H-2`` (same colour as the missing row ``H``); ``edge``
    would copy row ``H-1``, a different colour.
    """
    bayer = _check_2d(bayer)
    ph, pw = bayer.shape[0] % 2, bayer.shape[1] % 2
    if ph or pw:
        bayer = np.pad(bayer, ((0, ph), (0, pw)), mode="reflect")
    return bayer


def pack_bayer(bayer: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """``H x W`` Bayer -> ``4 x ceil(H/2) x ceil(W/2)`` in R, G1, G2, B order."""
    pattern = check_pattern(pattern)
    bayer = pad_to_even(bayer)
    return np.stack([bayer[r::2, c::2] for r, c in _OFFSETS[pattern]], axis=0)


def unpack_bayer(
    packed: np.ndarray, pattern: str = "RGGB", shape: Tuple[int, int] | None = None
) -> np.ndarray:
    """Inverse of :func:`pack_bayer`; ``shape`` crops back an odd original size."""
    pattern = check_pattern(pattern)
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise RawError(f"a packed Bayer image must be 4 x h x w, got shape {packed.shape}")
    _, h, w = packed.shape
    out = np.empty((2 * h, 2 * w), dtype=packed.dtype)
    for ch, (r, c) in enumerate(_OFFSETS[pattern]):
        out[r::2, c::2] = packed[ch]
    if shape is not None:
        H, W = int(shape[0]), int(shape[1])
        if not (2 * h - 1 <= H <= 2 * h and 2 * w - 1 <= W <= 2 * w):
            raise RawError(f"shape {shape} does not fit a packed image of {h}x{w}")
        out = out[:H, :W]
    return out


def to_rggb(bayer: np.ndarray, pattern: str) -> np.ndarray:
    """Flip an even-sized Bayer image of ``pattern`` into RGGB (its own inverse)."""
    pattern = check_pattern(pattern)
    bayer = _check_2d(bayer)
    if bayer.shape[0] % 2 or bayer.shape[1] % 2:
        raise RawError(f"to_rggb needs an even size, got {bayer.shape}; use pad_to_even first")
    fr, fc = _FLIPS[pattern]
    return np.ascontiguousarray(bayer[:: -1 if fr else 1, :: -1 if fc else 1])


from_rggb = to_rggb  # flips are involutions


@dataclass(frozen=True)
class KSigma:
    """The k-sigma transform and the ISO noise model of PMRID (official values).

    ``k(iso)`` is the system gain (DN per electron) and ``sigma2(iso)`` the read-noise
    variance in DN^2. The transform maps an image at ``iso`` to the noise statistics of
    the anchor ISO: ``f(x) = x * k_a / k + (sigma2 / k^2 - sigma2_a / k_a^2) * k_a`` in DN.
    """

    k_coeff: Tuple[float, ...] = K_COEFF
    b_coeff: Tuple[float, ...] = B_COEFF
    anchor: float = ANCHOR_ISO
    v: float = WHITE_DN

    def k(self, iso: float) -> float:
        return float(np.polyval(self.k_coeff, iso))

    def sigma2(self, iso: float) -> float:
        return float(np.polyval(self.b_coeff, iso))

    def _affine(self, iso: float) -> Tuple[float, float]:
        if not np.isfinite(iso) or iso <= 0:
            raise RawError(f"ISO must be a positive number, got {iso}")
        k, s = self.k(iso), self.sigma2(iso)
        ka, sa = self.k(self.anchor), self.sigma2(self.anchor)
        return ka / k, (s / k**2 - sa / ka**2) * ka

    def forward(self, x01: np.ndarray, iso: float) -> np.ndarray:
        """``[0, 1]`` image at ``iso`` -> k-sigma space (still divided by ``V``)."""
        a, b = self._affine(iso)
        return ((np.asarray(x01) * self.v) * a + b) / self.v

    def inverse(self, y: np.ndarray, iso: float) -> np.ndarray:
        """Inverse of :meth:`forward`."""
        a, b = self._affine(iso)
        return ((np.asarray(y) * self.v) - b) / a / self.v

    def __call__(self, x: np.ndarray, iso: float, inverse: bool = False) -> np.ndarray:
        return self.inverse(x, iso) if inverse else self.forward(x, iso)


DEFAULT_KSIGMA = KSigma()


def add_raw_noise(
    clean01: np.ndarray,
    iso: float,
    rng: np.random.Generator | None = None,
    noise_model: KSigma = DEFAULT_KSIGMA,
    clip: bool = False,
) -> np.ndarray:
    """Synthesise Poisson-Gaussian sensor noise (the paper's model) on a clean raw image.

    Args:
        clean01: clean Bayer (or packed) image in ``[0, 1]``.
        iso: the ISO whose ``k`` and ``sigma2`` to use.
        rng: numpy Generator (seed it for reproducible pairs).
        clip: clip the result to ``[0, 1]`` (real raw keeps small negatives).
    """
    rng = rng if rng is not None else np.random.default_rng()
    k, s2 = noise_model.k(iso), noise_model.sigma2(iso)
    electrons = np.clip(np.asarray(clean01, np.float64), 0, None) * noise_model.v / k
    dn = rng.poisson(electrons) * k + rng.normal(0.0, np.sqrt(s2), size=electrons.shape)
    out = (dn / noise_model.v).astype(np.float32)
    return np.clip(out, 0, 1) if clip else out


PadMode = str  # "reflect" | "constant" | "official" | "end"


def pad_to_multiple(
    x: np.ndarray, multiple: int = 32, mode: PadMode = "reflect"
) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Pad the last two axes of ``x`` to a multiple of ``multiple``, centred.

    Modes:
        ``reflect``: the minimal padding, mirrored content (no dark border for the
            network to "denoise"); the default.
        ``constant``: the minimal padding with zeros.
        ``official``: as ``run_benchmark.py``: zeros, ``multiple - n % multiple`` in total
            (a full extra ``multiple`` when already aligned), split evenly. The official
            code pads ``(32 - n % 32) // 2`` on both sides, which is wrong when
            ``n % 32`` is odd (not a multiple) or 31 (nothing to crop); here the odd
            pixel goes to the bottom/right instead, and the result is identical whenever
            the official one is valid.
        ``end``: the minimal padding, mirrored, all at the bottom/right: what the
            :class:`~ppRestore.inference.predictor.Predictor` does for every model.

    Returns:
        The padded array and ``(top, bottom, left, right)`` for :func:`crop_padding`.
    """
    x = np.asarray(x)
    h, w = x.shape[-2:]
    if mode == "official":
        th, tw = multiple - h % multiple, multiple - w % multiple
    elif mode in ("reflect", "constant", "end"):
        th, tw = (-h) % multiple, (-w) % multiple
    else:
        raise RawError(f"unknown pad mode '{mode}'; use reflect, constant, official or end")
    if mode == "end":
        pads, mode = (0, th, 0, tw), "reflect"
    else:
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    widths = [(0, 0)] * (x.ndim - 2) + [(pads[0], pads[1]), (pads[2], pads[3])]
    if mode == "reflect":
        # numpy's reflect cannot pad wider than the image in one go; symmetric can
        # repeat, so tiny inputs fall back to it.
        ok = pads[0] < h and pads[1] < h and pads[2] < w and pads[3] < w
        return np.pad(x, widths, mode="reflect" if ok else "symmetric"), pads
    return np.pad(x, widths, mode="constant"), pads


def crop_padding(x: np.ndarray, pads: Tuple[int, int, int, int]) -> np.ndarray:
    """Undo :func:`pad_to_multiple` on the last two axes."""
    t, b, left, r = pads
    h, w = x.shape[-2:]
    return x[..., t : h - b, left : w - r]


def normalize_bayer(
    bayer: np.ndarray,
    black_level: Union[float, Sequence[float]] = 0.0,
    white_level: float | None = None,
    pattern: str = "RGGB",
) -> np.ndarray:
    """Subtract the black level and scale to ``[0, 1]`` (float32, clipped).

    Args:
        bayer: ``H x W`` raw values (integer or float).
        black_level: one value, or four per CFA site in R, G1, G2, B order.
        white_level: saturation value; default: the integer dtype's maximum, or 1.0 for
            floats.
        pattern: needed only for per-channel black levels.
    """
    bayer = _check_2d(bayer)
    if white_level is None:
        white_level = (
            float(np.iinfo(bayer.dtype).max) if np.issubdtype(bayer.dtype, np.integer) else 1.0
        )
    black = np.asarray(black_level, np.float64).ravel()
    x = bayer.astype(np.float64)
    if black.size == 4:
        H, W = x.shape
        packed = pack_bayer(x, pattern) - black[:, None, None]
        x = unpack_bayer(packed, pattern, (H, W))
        black_ref = float(black.mean())
    elif black.size == 1:
        x = x - black[0]
        black_ref = float(black[0])
    else:
        raise RawError(f"black_level must be one value or four, got {black_level!r}")
    if white_level <= black_ref:
        raise RawError(f"white level {white_level} must exceed the black level {black_ref}")
    return np.clip(x / (white_level - black_ref), 0, 1).astype(np.float32)
