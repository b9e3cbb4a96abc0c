"""The raw (Bayer) pipeline under its old import path (``ppRestore.data.raw``).

The code lives in :mod:`.bayer` (patterns, packing, k-sigma, noise, levels, padding),
:mod:`.raw_io` (``read_raw``, :class:`RawImage`), :mod:`.isp` (previews),
:mod:`.raw_denoise` (``denoise_raw`` and the network pre/post-processing) and
:mod:`.raw_dataset` (``SyntheticRawDataset``); notebooks, docs and user code that import
from here keep working. The Predictor's raw stage is :mod:`ppRestore.inference.raw_stage`.
"""

from .bayer import (  # noqa: F401
    _FLIPS,
    _OFFSETS,
    ANCHOR_ISO,
    B_COEFF,
    BAYER_PATTERNS,
    DEFAULT_KSIGMA,
    INP_SCALE,
    K_COEFF,
    PACKED_CHANNELS,
    WHITE_DN,
    KSigma,
    PadMode,
    RawError,
    _check_2d,
    add_raw_noise,
    check_pattern,
    crop_padding,
    from_rggb,
    normalize_bayer,
    pack_bayer,
    pad_to_even,
    pad_to_multiple,
    to_rggb,
    unpack_bayer,
)
from .isp import _cv_demosaic_code, gray_world_gains, raw_to_rgb, save_raw_preview  # noqa: F401
from .raw_dataset import SyntheticRawDataset, unprocess_rgb  # noqa: F401
from .raw_denoise import (  # noqa: F401
    NetworkInput,
    _as_callable,
    denoise_raw,
    from_network,
    to_network,
)
from .raw_io import RAW_EXTENSIONS, RawImage, _read_camera_raw, read_raw  # noqa: F401
