"""Encoding an image array into file bytes, and embedding an ICC colour profile.

:func:`encode_image` writes through OpenCV, except grey + alpha (OpenCV would expand it
to RGBA: 8-bit through Pillow, 16-bit PNG by hand); :func:`embed_icc` inserts the
input's profile into PNG and JPEG results. :mod:`ppRestore.data.io` re-exports
:func:`encode_image` and writes files atomically with it.
"""

from __future__ import annotations

import io

import numpy as np

from .image_types import IMAGE_EXTENSIONS, ImageWriteError

__all__ = ["encode_image", "embed_icc"]

# Formats without an alpha channel: alpha is dropped when writing them (explicitly here,
# rather than by whatever each OpenCV encoder happens to do).
_NO_ALPHA = (".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm")
_EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp", ".pbm")

_LA_EXTS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}


def _encode_la(ext: str, grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """Grey + alpha as such: 8-bit through Pillow (PNG/TIFF), 16-bit PNG by hand."""
    from PIL import Image as PILImage

    if alpha.shape != grey.shape:
        raise ImageWriteError(f"alpha of shape {alpha.shape} does not fit image {grey.shape}")
    if grey.dtype == np.uint16:
        return _png_la16(grey, alpha if alpha.dtype == np.uint16 else alpha.astype(np.uint16) * 257)
    if alpha.dtype != np.uint8:
        alpha = (alpha.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(np.dstack([grey, alpha]), "LA").save(buf, _LA_EXTS[ext])
    return buf.getvalue()


def _png_la16(grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """16-bit grey+alpha PNG (colour type 4, depth 16), which neither OpenCV nor Pillow
    writes. The format is a signature and three chunks (PNG spec, sections 5 and 11):
    IHDR, one zlib IDAT of big-endian rows each behind filter byte 0, IEND."""
    import struct
    import zlib

    h, w = grey.shape
    samples = np.dstack([grey, alpha]).astype(">u2").reshape(h, 2 * w)  # G A G A ...
    raw = np.zeros((h, 1 + 4 * w), np.uint8)  # column 0: filter type 0 (None)
    raw[:, 1:] = samples.view(np.uint8)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def encode_image(ext: str, data: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """Encode ``H x W x C`` RGB/grey (uint8/uint16) to the format named by ``ext``.

    16-bit data is rounded to 8 bits for formats that cannot hold it (JPEG, BMP, WebP);
    alpha is dropped for formats that cannot hold it (JPEG, BMP, PPM/PGM).

    Raises:
        ImageWriteError: unknown extension, or data the format cannot represent.
    """
    import cv2

    ext = ext.lower()
    arr = np.asarray(data)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"cannot encode {arr.dtype} pixels; expected uint8 or uint16")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or 0 in arr.shape:
        raise ImageWriteError(f"cannot encode an image of shape {tuple(np.shape(data))}")
    if ext in _NO_ALPHA:
        alpha = None
    if (
        alpha is not None
        and arr.ndim == 2
        and ext in _LA_EXTS
        and (arr.dtype == np.uint8 or ext == ".png")
    ):
        # OpenCV has no grey+alpha writer (it would expand to RGBA): a grey+alpha input
        # comes back grey+alpha (16-bit TIFF still goes the RGBA way below).
        return _encode_la(ext, arr, np.asarray(alpha))
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif ext == ".ppm" or alpha is not None:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if ext in (".pgm", ".pbm") and arr.ndim == 3:
        raise ImageWriteError(f"'{ext}' holds grey images only; save colour as .png")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != arr.shape[:2]:
            raise ImageWriteError(
                f"alpha of shape {alpha.shape} does not fit image {arr.shape[:2]}"
            )
        if alpha.dtype != arr.dtype:  # same depth as the colour data, full range kept
            alpha = (
                alpha.astype(np.uint16) * 257
                if arr.dtype == np.uint16
                else (alpha.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
            )
        arr = np.dstack([arr, alpha])
    if arr.dtype == np.uint16 and ext in _EIGHT_BIT_ONLY:
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    try:
        ok, buf = cv2.imencode(ext, arr)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageWriteError(
            f"cannot encode image as '{ext}' (use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    return buf.tobytes()


def _png_with_icc(png: bytes, icc: bytes) -> bytes:
    """Insert an ``iCCP`` chunk (PNG spec 11.3.3.3: name, 0, method 0, zlib data) right
    after IHDR, where the spec wants it (before PLTE and IDAT)."""
    import struct
    import zlib

    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return png
    end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4  # length, type, data, CRC
    body = b"ICC Profile\0\0" + zlib.compress(icc, 9)
    chunk = (
        struct.pack(">I", len(body))
        + b"iCCP"
        + body
        + struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    )
    return png[:end] + chunk + png[end:]


def _jpeg_with_icc(jpg: bytes, icc: bytes) -> bytes:
    """Insert ICC ``APP2`` segments (ICC.1 spec, annex B: ``ICC_PROFILE\\0``, sequence
    number, count, at most 65519 bytes each) after SOI and the JFIF APP0 segment."""
    import struct

    if jpg[:2] != b"\xff\xd8":
        return jpg
    pos = 2
    if jpg[2:4] == b"\xff\xe0":  # JFIF APP0 comes first
        pos = 4 + struct.unpack(">H", jpg[4:6])[0]
    size = 65519
    parts = [icc[i : i + size] for i in range(0, len(icc), size)]
    if not parts or len(parts) > 255:
        return jpg
    segs = b"".join(
        b"\xff\xe2"
        + struct.pack(">H", 2 + 14 + len(p))
        + b"ICC_PROFILE\0"
        + bytes([i + 1, len(parts)])
        + p
        for i, p in enumerate(parts)
    )
    return jpg[:pos] + segs + jpg[pos:]


def embed_icc(ext: str, blob: bytes, icc_profile: bytes | None) -> bytes:
    """``blob`` (encoded as ``ext``) with ``icc_profile`` embedded where the format has a
    place for it (PNG, JPEG); other formats and an empty profile return ``blob``."""
    if icc_profile:
        if ext.lower() == ".png":
            return _png_with_icc(blob, icc_profile)
        if ext.lower() in (".jpg", ".jpeg"):
            return _jpeg_with_icc(blob, icc_profile)
    return blob
