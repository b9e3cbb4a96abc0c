"""Robust image reading and writing.

Why not ``cv2.imread``: it cannot open non-ASCII paths on every platform, ignores
truncation of JPEGs (returns a half-grey image with a warning), drops EXIF orientation
with ``IMREAD_UNCHANGED`` and does not read CMYK or palette files consistently. Here a
file is read as bytes, checked and decoded by Pillow (truncation is an error, EXIF
orientation is applied, CMYK/palette/bilevel are converted), and 16-bit files are
decoded by OpenCV, which keeps their full depth where Pillow would not.

Every failure is an :class:`ImageReadError` / :class:`ImageWriteError` whose message names
the file and the problem in one line.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from dataclasses import dataclass
from typing import List

import numpy as np

from ..files import atomic_write, list_folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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


class ImageReadError(ValueError):
    """An input image is missing, empty, corrupt or of an unsupported kind."""


class ImageWriteError(OSError):
    """An output image could not be written."""


@dataclass
class Image:
    """A decoded image.

    Attributes:
        data: ``H x W x C`` array, C = 1 (grey) or 3 (RGB), dtype uint8 or uint16.
        alpha: ``H x W`` alpha channel of the same dtype, or None. Restoration models see
            only ``data``; the alpha is re-attached unchanged when writing.
        path: where it came from (for messages).
        frames: frames in the file (animated GIF/WebP/APNG, multi-page TIFF); ``data``
            is the first one, and the batch CLIs say so when there are more.
        icc_profile: the embedded ICC colour profile (bytes) or None; restoring keeps
            the colours' meaning, so results carry it (PNG and JPEG outputs), otherwise
            a Display-P3 or Adobe RGB photo would be shown as sRGB.
    """

    data: np.ndarray
    alpha: np.ndarray | None = None
    path: str = ""
    frames: int = 1
    icc_profile: bytes | None = None

    @property
    def max_value(self) -> int:
        return 65535 if self.data.dtype == np.uint16 else 255

    def to_float(self) -> np.ndarray:
        """``H x W x C`` float32 in [0, 1]."""
        return self.data.astype(np.float32) / self.max_value


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
    """Decode image bytes; see the module docstring for what is handled.

    Raises:
        ImageReadError: for anything that is not a complete, supported image; the
            message is one line naming ``path``.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if len(data) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            # our own limit (below) replaces Pillow's DecompressionBombWarning
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data))
        fmt, mode = pil.format, pil.mode
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
    orientation = _exif_orientation(pil)
    try:  # counting frames seeks through the file: a bad later frame must not stop the first
        frames = int(getattr(pil, "n_frames", 1) or 1)
        pil.seek(0)
    except Exception:  # noqa: BLE001
        frames = 1
    try:
        arr = _decode_pnm16(data, path) if fmt == "PPM" else None
        if arr is None and is16 and not mode.startswith("I"):
            arr = _decode_16bit_colour(data, mode)
        if arr is None:
            arr = _pil_to_array(pil, path)
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a palette index out of range
        raise ImageReadError(f"{path}: corrupt image ({type(e).__name__}: {e})") from None
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


# Largest file read_image will load into memory: far above any real photo, and stops
# ``--image_path /dev/zero``-style mistakes before they eat all memory.
MAX_FILE_BYTES = 1 << 30
# Formats without an alpha channel: alpha is dropped when writing them (explicitly here,
# rather than by whatever each OpenCV encoder happens to do).
_NO_ALPHA = (".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm")
_EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp", ".pbm")


def read_image(path: str) -> Image:
    """Read an image file (any path, including non-ASCII names) into an :class:`Image`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    if not os.path.isfile(path):  # a FIFO or device would block or never end
        raise ImageReadError(f"{path}: not a regular file")
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImageReadError(f"{path}: file too large ({size} bytes)")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, path)


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


def write_image(
    path: str,
    data: np.ndarray,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
) -> str:
    """Atomically write ``data`` (+ optional alpha) to ``path``; returns the path.

    ``icc_profile`` (an input's :attr:`Image.icc_profile`) is embedded in PNG and JPEG
    outputs; other formats are written without it.

    The bytes go to a temporary file in the target folder that is renamed over ``path``
    only when complete, so an interrupted run never leaves a half-written image (and
    overwriting an input in place is safe up to the rename).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1] or ".png"
    try:
        blob = encode_image(ext, data, alpha)
    except ImageWriteError as e:
        raise ImageWriteError(f"{path}: {e}") from None
    if icc_profile:
        if ext.lower() == ".png":
            blob = _png_with_icc(blob, icc_profile)
        elif ext.lower() in (".jpg", ".jpeg"):
            blob = _jpeg_with_icc(blob, icc_profile)
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ImageWriteError(f"{path}: is a folder")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write to folder {d} ({e.strerror or e})") from None
    try:
        return atomic_write(path, lambda f: f.write(blob), suffix=ext, fsync=False)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})") from None


def is_image_file(name: str) -> bool:
    """Whether ``name`` has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(spec: str) -> List[str]:
    """Expand a file, a folder or a glob pattern into a sorted list of image paths.

    A folder contributes its files with an image extension (any case; hidden files and
    sub-folders are skipped, as PaddleSeg's ``get_image_list`` skips non-images), so a
    ``README.txt`` next to the images is not an error; a file named like an image but
    not decodable is, later, when it is read. A single file or a glob is taken as given.
    """
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        try:
            files = list_folder(spec, IMAGE_EXTENSIONS)
        except OSError as e:
            raise ImageReadError(f"{spec}: cannot list folder ({e.strerror or e})") from None
        if not files:
            what = "is empty" if not os.listdir(spec) else "has no image files"
            raise ImageReadError(
                f"{spec}: folder {what} (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return files
    if any(c in spec for c in "*?["):
        files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
        if not files:
            raise ImageReadError(f"{spec}: no file matches this pattern")
        return files
    raise ImageReadError(f"{spec}: no such file or folder")
