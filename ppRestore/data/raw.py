"""Raw (Bayer) image pipeline for PmrNet: packing, k-sigma transform, noise, a simple ISP.

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
  the network saw in training; :func:`denoise_raw` uses it.

Noise model (paper Sec. 3): a raw value ``x`` (in DN, ``x = x01 * V`` with ``V = 959``)
is ``k * Poisson(x / k) + N(0, sigma2)``, with the system gain ``k`` and read-noise
variance ``sigma2`` polynomials of the ISO calibrated for the paper's phone (OPPO Reno
10x). The k-sigma transform maps an image at any ISO to the noise level of the anchor
ISO 1600, so one network serves every ISO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Tuple, Union

import numpy as np

from ..registry import DATASETS

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


PadMode = str  # "reflect" | "constant" | "official"


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

    Returns:
        The padded array and ``(top, bottom, left, right)`` for :func:`crop_padding`.
    """
    x = np.asarray(x)
    h, w = x.shape[-2:]
    if mode == "official":
        th, tw = multiple - h % multiple, multiple - w % multiple
    elif mode in ("reflect", "constant"):
        th, tw = (-h) % multiple, (-w) % multiple
    else:
        raise RawError(f"unknown pad mode '{mode}'; use reflect, constant or official")
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


@dataclass
class RawImage:
    """A decoded raw file: a ``[0, 1]`` Bayer image and what is known about it."""

    bayer: np.ndarray
    pattern: str = "RGGB"
    wb_gains: Tuple[float, float, float] | None = None  # R, G, B multipliers
    iso: float | None = None
    path: str = ""


RAW_EXTENSIONS = (".dng", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw")


def read_raw(
    path: str,
    pattern: str | None = None,
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
) -> RawImage:
    """Read ``.npy`` (a 2-D Bayer array) or a camera raw file (``.dng`` ...) via rawpy.

    For ``.npy``: float arrays are taken as already normalised unless levels are given;
    integer arrays are normalised with ``black_level`` (default 0) and ``white_level``
    (default the dtype maximum). ``pattern`` defaults to RGGB. Camera raw files take
    their pattern, levels and white balance from the file (needs ``pip install rawpy``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RawError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise RawError(f"{path}: not a readable .npy array ({e})") from None
        if arr.ndim != 2:
            raise RawError(f"{path}: expected a 2-D Bayer array, got shape {arr.shape}")
        pat = check_pattern(pattern or "RGGB")
        if np.issubdtype(arr.dtype, np.floating) and black_level is None and white_level is None:
            bayer = np.clip(arr.astype(np.float32), 0, 1)
        else:
            bayer = normalize_bayer(
                arr, 0.0 if black_level is None else black_level, white_level, pat
            )
        return RawImage(bayer, pat, path=path)
    if ext in RAW_EXTENSIONS:
        return _read_camera_raw(path, pattern, black_level, white_level)
    raise RawError(
        f"{path}: unsupported raw format '{ext}' (use .npy or {', '.join(RAW_EXTENSIONS)})"
    )


def _read_camera_raw(path: str, pattern, black_level, white_level) -> RawImage:
    try:
        import rawpy
    except ImportError:
        raise RawError(
            f"{path}: reading camera raw files needs rawpy (pip install rawpy, or "
            "pip install ppRestore[raw]); or save the Bayer array as .npy"
        ) from None
    try:
        with rawpy.imread(path) as raw:
            data = np.array(raw.raw_image_visible)
            desc = (
                raw.color_desc.decode()
                if isinstance(raw.color_desc, bytes)
                else str(raw.color_desc)
            )
            cell = raw.raw_pattern[:2, :2]
            # color_desc is e.g. "RGBG" (two greens): any non-R/B colour is a green site.
            file_pattern = "".join(
                c if c in "RB" else "G" for c in (desc[int(i)] for i in cell.ravel())
            )
            blacks = [float(b) for b in raw.black_level_per_channel]
            # black_level_per_channel is indexed by colour index; reorder to R, G1, G2, B.
            idx = cell.ravel()
            site_black = [blacks[int(i)] for i in idx]
            white = float(raw.white_level)
            wb = [float(g) for g in raw.camera_whitebalance[:3]]
    except RawError:
        raise
    except Exception as e:  # rawpy raises its own LibRawError family
        raise RawError(f"{path}: cannot decode raw file ({type(e).__name__}: {e})") from None
    pat = check_pattern(pattern or file_pattern)
    if black_level is None:
        # site_black is in cell (row-major) order; map to R, G1, G2, B via the offsets.
        by_pos = {
            (0, 0): site_black[0],
            (0, 1): site_black[1],
            (1, 0): site_black[2],
            (1, 1): site_black[3],
        }
        black_level = [by_pos[o] for o in _OFFSETS[pat]]
    bayer = normalize_bayer(data, black_level, white_level or white, pat)
    gains = None
    if wb[1] > 0:
        gains = (wb[0] / wb[1], 1.0, wb[2] / wb[1])
    return RawImage(bayer, pat, gains, path=path)


# ------------------------------------------------------------------------------------
# A minimal ISP, to look at results
# ------------------------------------------------------------------------------------


def _cv_demosaic_code(pattern: str) -> int:
    import cv2

    # OpenCV names a Bayer layout after the 2x2 cell starting at (1, 1), so an RGGB
    # image is "BayerBG" (checked in tests/test_raw.py with a pure-red scene).
    return {
        "RGGB": cv2.COLOR_BayerBG2RGB_EA,
        "BGGR": cv2.COLOR_BayerRG2RGB_EA,
        "GRBG": cv2.COLOR_BayerGB2RGB_EA,
        "GBRG": cv2.COLOR_BayerGR2RGB_EA,
    }[pattern]


def gray_world_gains(bayer01: np.ndarray, pattern: str = "RGGB") -> Tuple[float, float, float]:
    """White-balance gains that make the mean R and B equal the mean green."""
    p = pack_bayer(np.asarray(bayer01, np.float64), pattern).reshape(4, -1).mean(axis=1)
    g = max((p[1] + p[2]) / 2, 1e-8)
    return (float(g / max(p[0], 1e-8)), 1.0, float(g / max(p[3], 1e-8)))


def raw_to_rgb(
    bayer01: np.ndarray,
    pattern: str = "RGGB",
    wb_gains: Sequence[float] | None = None,
    ccm: np.ndarray | None = None,
    gamma: Union[float, str] = 2.2,
) -> np.ndarray:
    """White balance, demosaic (OpenCV edge-aware), colour matrix and gamma.

    Args:
        bayer01: ``H x W`` Bayer in ``[0, 1]`` (even size).
        wb_gains: R, G, B multipliers; ``None`` estimates them by gray world.
        ccm: optional 3x3 camera-to-sRGB matrix (rows = output channels).
        gamma: a power (2.2 as the official ``RawUtils.bayer2rgb``) or ``"srgb"``.

    Returns:
        ``H x W x 3`` float32 RGB in ``[0, 1]``.
    """
    import cv2

    pattern = check_pattern(pattern)
    bayer01 = pad_to_even(np.asarray(bayer01, np.float32))
    gains = np.asarray(
        wb_gains if wb_gains is not None else gray_world_gains(bayer01, pattern), np.float32
    )
    packed = pack_bayer(bayer01, pattern) * gains[[0, 1, 1, 2], None, None]
    bayer = unpack_bayer(np.clip(packed, 0, 1), pattern)
    u16 = np.round(bayer * 65535).astype(np.uint16)
    rgb = cv2.cvtColor(u16, _cv_demosaic_code(pattern)).astype(np.float32) / 65535
    if ccm is not None:
        rgb = np.clip(rgb @ np.asarray(ccm, np.float32).T, 0, 1)
    if gamma == "srgb":
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    else:
        rgb = np.power(rgb, 1.0 / float(gamma))
    return np.clip(rgb, 0, 1).astype(np.float32)


def save_raw_preview(path: str, bayer01: np.ndarray, pattern: str = "RGGB", **isp: Any) -> str:
    """Render ``bayer01`` with :func:`raw_to_rgb` and write an 8-bit image (via data.io)."""
    from .io import write_image

    rgb = raw_to_rgb(bayer01, pattern, **isp)[: bayer01.shape[0], : bayer01.shape[1]]
    return write_image(path, (rgb * 255 + 0.5).astype(np.uint8))


# ------------------------------------------------------------------------------------
# Denoising
# ------------------------------------------------------------------------------------


def _as_callable(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A paddle Layer or any callable ``NCHW float32 -> NCHW`` array."""
    try:
        import paddle
    except ImportError:  # a numpy callable (e.g. an inference predictor) still works
        paddle = None
    if paddle is not None and isinstance(model, paddle.nn.Layer):

        def run(x: np.ndarray) -> np.ndarray:
            with paddle.no_grad():
                return model(paddle.to_tensor(x)).numpy()

        return run
    if not callable(model):
        raise TypeError(
            f"model must be a paddle.nn.Layer or a callable, got {type(model).__name__}"
        )
    return lambda x: np.asarray(model(x))


def denoise_raw(
    bayer: np.ndarray,
    iso: float,
    model: Any,
    pattern: str = "RGGB",
    black_level: Union[float, Sequence[float], None] = None,
    white_level: float | None = None,
    pad: PadMode = "reflect",
    noise_model: KSigma = DEFAULT_KSIGMA,
    inp_scale: float = INP_SCALE,
    clip: bool = True,
) -> np.ndarray:
    """Denoise a Bayer image with a packed-raw PmrNet, as the official benchmark does.

    Steps: normalise (integer input or given levels) -> flip to RGGB -> pack to
    ``4 x H/2 x W/2`` -> clip to ``[0, 1]`` -> pad to 32 -> k-sigma at ``iso`` -> times
    ``inp_scale`` -> network -> divide, inverse k-sigma -> crop, unpack, flip back.

    Args:
        bayer: ``H x W`` float in ``[0, 1]``, or integer raw values with levels.
        iso: the capture ISO (selects the noise level through the k-sigma transform).
        model: a ``PmrNet(in_channels=4)`` in eval mode, or a callable on NCHW arrays.
        pattern: the CFA pattern of ``bayer``.
        black_level, white_level: see :func:`normalize_bayer`; for float input they are
            applied only when given.
        pad: ``reflect`` (default), ``constant`` or ``official`` (bit-for-bit the
            reference pipeline); see :func:`pad_to_multiple`.
        noise_model: the ISO noise model behind the k-sigma transform.
        inp_scale: the factor on the k-sigma image the network was trained with
            (official: 256); a model's own ``inp_scale`` attribute counts towards it.
        clip: clip the result to ``[0, 1]`` (the official code does not).

    Returns:
        The denoised ``H x W`` float32 Bayer image, same pattern as the input.
    """
    pattern = check_pattern(pattern)
    bayer = _check_2d(bayer)
    if np.issubdtype(bayer.dtype, np.integer) or black_level is not None or white_level is not None:
        bayer = normalize_bayer(
            bayer, 0.0 if black_level is None else black_level, white_level, pattern
        )
    bayer = np.asarray(bayer, np.float32)
    if not np.all(np.isfinite(bayer)):
        raise RawError("the Bayer image contains NaN or infinite values")
    H, W = bayer.shape
    rggb = to_rggb(pad_to_even(bayer), pattern)
    packed = np.clip(pack_bayer(rggb, "RGGB"), 0, 1)
    padded, pads = pad_to_multiple(packed, 32, pad)
    # A PmrNet built with inp_scale applies that part of the factor itself.
    scale = inp_scale / float(getattr(model, "inp_scale", 1.0) or 1.0)
    inp = (noise_model.forward(padded, iso) * scale).astype(np.float32)[None]
    out = _as_callable(model)(np.ascontiguousarray(inp))
    out = np.asarray(out, np.float32)
    if out.shape != inp.shape:
        raise RawError(
            f"the model returned shape {out.shape} for input {inp.shape}; is it a 4-channel PmrNet?"
        )
    pred = noise_model.inverse(out[0] / scale, iso)
    pred = unpack_bayer(crop_padding(pred, pads), "RGGB")
    pred = from_rggb(pred, pattern)[:H, :W].astype(np.float32)
    return np.clip(pred, 0, 1) if clip else pred


# ------------------------------------------------------------------------------------
# Training data
# ------------------------------------------------------------------------------------


def unprocess_rgb(
    rgb01: np.ndarray, rng: np.random.Generator, gamma: float = 2.2
) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """Invert the simple ISP of :func:`raw_to_rgb` on an sRGB image -> RGGB Bayer.

    Undoes the gamma, divides by random white-balance gains (R in [1.6, 2.4], B in
    [1.4, 2.2]) and a random exposure in [0.1, 1] (the paper targets low light), and
    mosaics to RGGB, in the spirit of Brooks et al., "Unprocessing Images for Learned Raw
    Denoising", CVPR 2019. Returns the ``H x W`` Bayer (even size) and the gains.
    """
    lin = np.power(np.clip(np.asarray(rgb01, np.float64), 0, 1), gamma)
    if lin.ndim == 2 or lin.shape[2] == 1:
        lin = np.repeat(lin.reshape(lin.shape[0], lin.shape[1], 1), 3, axis=2)
    gains = (float(rng.uniform(1.6, 2.4)), 1.0, float(rng.uniform(1.4, 2.2)))
    lin = lin / np.array(gains) * rng.uniform(0.1, 1.0)
    h, w = lin.shape[0] - lin.shape[0] % 2, lin.shape[1] - lin.shape[1] % 2
    packed = np.stack(
        [lin[0:h:2, 0:w:2, 0], lin[0:h:2, 1:w:2, 1], lin[1:h:2, 0:w:2, 1], lin[1:h:2, 1:w:2, 2]]
    )
    return unpack_bayer(packed.astype(np.float32), "RGGB"), gains


@DATASETS.register
class SyntheticRawDataset:
    """Noisy/clean packed-raw pairs synthesised from clean sRGB images.

    Each sample: crop (random in ``train``, centre in ``val``) -> flips/rot90 (train) ->
    :func:`unprocess_rgb` -> Poisson-Gaussian noise (:func:`add_raw_noise`) at an ISO
    drawn log-uniformly from ``iso_range`` -> pack both to ``4 x p/2 x p/2`` -> clip the
    noisy one as the official pre-processing does -> k-sigma transform both at that ISO.
    So ``lq``/``gt`` live in the anchor-ISO k-sigma space in ``[0, 1]`` units; train
    ``PmrNet(in_channels=4, inp_scale=256)`` on them to match the official scaling.

    Samples are ``(lq, gt, index)``; randomness comes from ``(seed, epoch, index)``
    (``(seed, index)`` in ``val``), like the other ppRestore datasets.

    Args:
        dataset_root: folder of clean images (colour preferred; grey is replicated).
        patch_size: Bayer patch size (even; the packed patch is half of it).
        iso_range: ``[low, high]`` ISO range (a single ISO when equal).
        mode: ``train`` or ``val``.
        seed: base seed.
        repeat: times each image appears per epoch.
    """

    def __init__(
        self,
        dataset_root: str,
        patch_size: int = 256,
        iso_range: Sequence[float] = (400, 6400),
        mode: str = "train",
        seed: int = 0,
        repeat: int = 1,
    ) -> None:
        from ..files import list_folder
        from .io import IMAGE_EXTENSIONS

        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if patch_size < 4 or patch_size % 2:
            raise ValueError(f"patch_size must be even and >= 4, got {patch_size}")
        lo, hi = float(iso_range[0]), float(iso_range[-1])
        if not 0 < lo <= hi:
            raise ValueError(f"iso_range must be 0 < low <= high, got {iso_range}")
        if not os.path.isdir(dataset_root):
            raise FileNotFoundError(f"dataset folder not found: {dataset_root}")
        self.root = dataset_root
        self.names = [os.path.basename(p) for p in list_folder(dataset_root, IMAGE_EXTENSIONS)]
        if not self.names:
            raise FileNotFoundError(f"no images in {dataset_root}")
        self.patch, self.iso_range, self.mode = int(patch_size), (lo, hi), mode
        self.seed, self.repeat = int(seed), max(1, int(repeat))

    def __len__(self) -> int:
        return len(self.names) * self.repeat

    def __getitem__(self, key: int):
        from .io import read_image

        epoch, index = divmod(int(key), len(self))
        train = self.mode == "train"
        rng = np.random.default_rng([self.seed, epoch, index] if train else [self.seed, index])
        img = read_image(os.path.join(self.root, self.names[index % len(self.names)])).to_float()
        p = self.patch
        ph, pw = max(0, p - img.shape[0]), max(0, p - img.shape[1])
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        H, W = img.shape[:2]
        if train:
            y, x = int(rng.integers(0, H - p + 1)), int(rng.integers(0, W - p + 1))
        else:
            y, x = (H - p) // 2, (W - p) // 2
        img = img[y : y + p, x : x + p]
        if train:
            if rng.random() < 0.5:
                img = img[:, ::-1]
            img = np.rot90(img, int(rng.integers(4)))
        clean, _ = unprocess_rgb(img, rng)
        lo, hi = self.iso_range
        iso = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        noisy = add_raw_noise(clean, iso, rng)
        gt = DEFAULT_KSIGMA.forward(pack_bayer(clean, "RGGB"), iso)
        lq = DEFAULT_KSIGMA.forward(np.clip(pack_bayer(noisy, "RGGB"), 0, 1), iso)
        return lq.astype(np.float32), gt.astype(np.float32), np.int64(index)
