"""Decoding image bytes into an :class:`~ppRestore.data.image_types.Image`.

What :func:`decode_image` handles, and why not ``cv2.imread``: see :mod:`ppRestore.data.io`
(which re-exports :func:`decode_image`). Here: the decode-size limit, EXIF orientation,
alpha splitting, and the readers that keep 16-bit samples where Pillow would reduce
them to 8 bits (PNG/TIFF colour through OpenCV, binary PGM/PPM by hand).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from .image_types import Image, ImageReadError

__all__ = ["MAX_IMAGE_PIXELS", "max_image_pixels", "decode_image"]

# Largest image decoded, in pixels (env PPRESTORE_MAX_PIXELS overrides): above every
# camera sold (Fujifilm GFX100: 102 MP) and below Pillow's own limits (a warning at 89 MP,
# an error only at 179 MP). Restoring costs ~64 bytes per pixel outside the network even
# when tiled (float copies of input and output), so 120 MP already needs ~8 GB.
MAX_IMAGE_PIXELS = 120_000_000


def max_image_pixels() -> int:
    """The decode limit in pixels: ``PPRESTORE_MAX_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    try:
        return int(os.environ.get("PPRESTORE_MAX_PIXELS", MAX_IMAGE_PIXELS))
    except ValueError:
        return MAX_IMAGE_PIXELS


def _too_large(path: str, w: int, h: int, limit: int) -> str:
    return (
        f"{path}: refused, image too large: {w}x{h} is {w * h / 1e6:.1f} MP, above the decode limit of "
        f"{limit / 1e6:g} MP (set PPRESTORE_MAX_PIXELS to raise it)"
    )


def _exif_orientation(pil_img) -> int:
    try:
        return int(pil_img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF must not stop a restore
        return 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    # EXIF orientation values 2-8 -> flips/rotations (see the EXIF 2.3 spec, tag 0x0112).
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    fn = ops.get(orientation)
    return np.ascontiguousarray(fn(arr)) if fn else arr


def _split_alpha(arr: np.ndarray) -> tuple:
    if arr.ndim == 2:
        return arr[..., None], None
    if arr.shape[2] == 2:  # grey + alpha
        return arr[..., :1], arr[..., 1]
    if arr.shape[2] == 4:
        return arr[..., :3], arr[..., 3]
    return arr, None


def _is_16bit(pil, data: bytes) -> bool:
    """True for a PNG/TIFF whose samples are 16-bit (Pillow reduces 16-bit colour to 8)."""
    if pil.format == "PNG" and len(data) > 24 and data[12:16] == b"IHDR":
        return data[24] == 16  # IHDR bit depth (PNG spec 11.2.2)
    if pil.format == "TIFF":
        try:
            bits = pil.tag_v2.get(258, 8)  # BitsPerSample
            return max(bits if isinstance(bits, (tuple, list)) else (bits,)) == 16
        except Exception:  # noqa: BLE001 - malformed tags: let Pillow's decode decide
            return False
    return False


def _png_colour_type(data: bytes) -> int | None:
    """A PNG's IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[12:16] == b"IHDR":
        return data[25]
    return None


def _decode_16bit_colour(data: bytes, pil_mode: str) -> np.ndarray | None:
    """16-bit colour/alpha PNG or TIFF at full depth via OpenCV (RGB order), or None."""
    import cv2

    try:
        dec = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if dec is None or dec.dtype != np.uint16:
        return None
    if dec.ndim == 3 and dec.shape[2] == 4:
        dec = cv2.cvtColor(dec, cv2.COLOR_BGRA2RGBA)
        if pil_mode.startswith("LA") or _png_colour_type(data) == 4:
            # grey + alpha, expanded to BGRA by the decoder (Pillow calls a 16-bit
            # grey+alpha PNG "RGBA", so the PNG header decides)
            dec = np.ascontiguousarray(dec[..., [0, 3]])
    elif dec.ndim == 3 and dec.shape[2] == 3:
        dec = cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
    return dec


def _pnm_header(data: bytes) -> tuple | None:
    """``(magic, width, height, maxval, raster_offset)`` of a binary PGM/PPM (P5/P6),
    else None (netpbm spec: whitespace-separated fields, ``#`` comments, one whitespace
    byte before the raster)."""
    if data[:2] not in (b"P5", b"P6"):
        return None
    fields, i, n = [], 2, len(data)
    while len(fields) < 3:
        while i < n and data[i : i + 1].isspace():
            i += 1
        if i < n and data[i : i + 1] == b"#":
            while i < n and data[i : i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        j = i
        while j < n and data[j : j + 1].isdigit():
            j += 1
        if j == i:
            return None
        fields.append(int(data[i:j]))
        i = j
    if i >= n or not data[i : i + 1].isspace():
        return None
    return data[:2].decode(), fields[0], fields[1], fields[2], i + 1


def _decode_pnm16(data: bytes, path: str) -> np.ndarray | None:
    """A 16-bit binary PGM/PPM (maxval 256..65535) at full depth, scaled to 0..65535;
    None for other files. Pillow reduces 16-bit colour PPM to 8 bits."""
    hdr = _pnm_header(data)
    if hdr is None or not 255 < hdr[3] <= 65535:
        return None
    magic, w, h, maxval, off = hdr
    c = 3 if magic == "P6" else 1
    need = w * h * c * 2
    if len(data) - off < need:
        raise ImageReadError(
            f"{path}: corrupt or truncated image ({len(data) - off} of {need} raster bytes)"
        )
    arr = np.frombuffer(data, ">u2", count=w * h * c, offset=off).reshape(h, w, c)
    if maxval != 65535:  # e.g. 10/12-bit data: the pipeline reads uint16 as x / 65535
        arr = np.rint(np.minimum(arr, maxval) * (65535.0 / maxval))
    arr = arr.astype(np.uint16)
    return arr[..., 0] if c == 1 else arr


def decode_image(data: bytes, path: str = "<bytes>") -> Image:
    """Decode image bytes; see :mod:`ppRestore.data.io` for what is handled.

    Raises:
        ImageReadError: for anything that is not a complete, supported image; the
            message is one line naming ``path``.
    """
    if len(data) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    pil, is16 = _open_and_load(data, path)
    fmt = pil.format
    orientation = _exif_orientation(pil)
    try:  # counting frames seeks through the file: a bad later frame must not stop the first
        frames = int(getattr(pil, "n_frames", 1) or 1)
        pil.seek(0)
    except Exception:  # noqa: BLE001
        frames = 1
    arr = _pixels(pil, data, path, is16)
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
        raise ImageReadError(f"{path}: unsupported pixel layout {arr.dtype} {arr.shape} ({fmt})")
    arr = _apply_orientation(arr, orientation)
    rgb, alpha = _split_alpha(arr)
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    icc = pil.info.get("icc_profile")
    return Image(
        np.ascontiguousarray(rgb),
        None if alpha is None else np.ascontiguousarray(alpha),
        path,
        frames,
        icc if isinstance(icc, bytes) and icc else None,
    )


def _open_and_load(data: bytes, path: str) -> tuple:
    """``(pil, is16)``: the file opened and fully decoded by Pillow after the size check,
    every Pillow failure turned into one :class:`ImageReadError` line."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            # our own limit (below) replaces Pillow's DecompressionBombWarning
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data))
        w, h = pil.size
        if w * h > limit:  # before any decode, by Pillow or OpenCV
            raise ImageReadError(_too_large(path, w, h, limit))
        is16 = _is_16bit(pil, data)
        pil.load()  # forces a full decode: truncated PNG/JPEG raise here
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (unrecognised format)") from None
    except PILImage.DecompressionBombError:
        raise ImageReadError(
            f"{path}: refused, image too large: above the decode limit of {limit / 1e6:g} MP"
        ) from None
    except MemoryError:
        raise ImageReadError(f"{path}: refused, image too large to decode in memory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        raise ImageReadError(f"{path}: corrupt or truncated image ({msg})") from None
    except Exception as e:  # noqa: BLE001 - crafted files can make decoders raise anything
        raise ImageReadError(f"{path}: corrupt image ({type(e).__name__}: {e})") from None
    return pil, is16


def _pixels(pil, data: bytes, path: str, is16: bool) -> np.ndarray:
    """The first frame's samples at full depth: 16-bit PPM/PGM and 16-bit colour by our
    own readers (Pillow would reduce them to 8 bits), everything else through Pillow."""
    try:
        arr = _decode_pnm16(data, path) if pil.format == "PPM" else None
        if arr is None and is16 and not pil.mode.startswith("I"):
            arr = _decode_16bit_colour(data, pil.mode)
        if arr is None:
            arr = _pil_to_array(pil, path)
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a palette index out of range
        raise ImageReadError(f"{path}: corrupt image ({type(e).__name__}: {e})") from None
    return arr


def _pil_to_array(pil, path: str) -> np.ndarray:
    """A loaded Pillow image as uint8/uint16 grey, grey+alpha, RGB or RGBA."""
    mode = pil.mode
    if mode.startswith("I;16"):
        return np.asarray(pil).astype(np.uint16)  # also fixes big-endian I;16B
    if mode == "I":
        a = np.asarray(pil)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageReadError(
                f"{path}: 32-bit integer samples outside 0..65535 are not supported"
            )
        return a.astype(np.uint16)
    if mode == "F":
        raise ImageReadError(
            f"{path}: floating-point images are not supported; convert it to 8- or 16-bit PNG/TIFF"
        )
    if mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
    elif mode == "PA":
        pil = pil.convert("RGBA")
    elif mode == "1":
        pil = pil.convert("L")
    elif mode == "La":  # premultiplied alpha
        pil = pil.convert("LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa, ...
        pil = pil.convert("RGBA" if mode == "RGBa" else "RGB")
    return np.asarray(pil)
