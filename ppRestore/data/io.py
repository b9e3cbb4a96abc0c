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
import tempfile
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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
    """

    data: np.ndarray
    alpha: Optional[np.ndarray] = None
    path: str = ""

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


def decode_image(data: bytes, path: str = "<bytes>") -> Image:
    """Decode image bytes; see the module docstring for what is handled."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if len(data) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        pil = PILImage.open(io.BytesIO(data))
        pil.load()  # forces a full decode: truncated PNG/JPEG raise here
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        raise ImageReadError(f"{path}: corrupt or truncated image ({msg})") from None
    except PILImage.DecompressionBombError as e:
        raise ImageReadError(f"{path}: refused, image too large ({e})") from None
    orientation = _exif_orientation(pil)
    arr = None
    if pil.mode in ("I;16", "I;16B", "I;16L", "I", "RGB", "RGBA") or pil.mode.startswith("I;16"):
        # OpenCV keeps 16-bit colour PNG/TIFF at full depth (Pillow would cut RGB to 8 bits).
        import cv2

        dec = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if dec is not None and dec.dtype == np.uint16:
            if dec.ndim == 3:
                dec = cv2.cvtColor(dec, cv2.COLOR_BGRA2RGBA if dec.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            arr = dec
    if arr is None:
        mode = pil.mode
        if mode == "P":
            pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            pil = pil.convert("RGB")
        elif mode in ("1",):
            pil = pil.convert("L")
        elif mode == "PA":
            pil = pil.convert("RGBA")
        elif mode in ("I", "F"):
            a = np.asarray(pil, dtype=np.float64)
            pil = None
            arr = np.clip(a, 0, 65535).astype(np.uint16)
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            pil = pil.convert("RGB")
        if arr is None:
            arr = np.asarray(pil)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")
    arr = _apply_orientation(arr, orientation)
    rgb, alpha = _split_alpha(arr)
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return Image(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), path)


def read_image(path: str) -> Image:
    """Read an image file (any path, including non-ASCII names) into an :class:`Image`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, path)


def encode_image(ext: str, data: np.ndarray, alpha: Optional[np.ndarray] = None) -> bytes:
    """Encode ``H x W x C`` RGB/grey (uint8/uint16) to the format named by ``ext``."""
    import cv2

    arr = data
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        if arr.ndim == 2:
            arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
        arr = np.dstack([arr, alpha.astype(arr.dtype)])
    ext = ext.lower()
    if arr.dtype == np.uint16 and ext in (".jpg", ".jpeg", ".bmp", ".webp"):
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(ext, arr)
    if not ok:
        raise ImageWriteError(f"cannot encode image as '{ext}'")
    return buf.tobytes()


def _chmod_default(path: str) -> None:
    # mkstemp creates 0600 files; give outputs the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_image(path: str, data: np.ndarray, alpha: Optional[np.ndarray] = None) -> str:
    """Atomically write ``data`` (+ optional alpha) to ``path``; returns the path."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1] or ".png"
    blob = encode_image(ext, data, alpha)
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext, dir=d)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write to folder {d} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        _chmod_default(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise ImageWriteError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def list_images(spec: str) -> List[str]:
    """Expand a file, a folder (its images, sorted) or a glob pattern into image paths."""
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        files = sorted(
            os.path.join(spec, f)
            for f in os.listdir(spec)
            if not f.startswith(".") and os.path.isfile(os.path.join(spec, f))
        )
        if not files:
            raise ImageReadError(f"{spec}: folder is empty")
        return files
    if any(c in spec for c in "*?["):
        files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
        if not files:
            raise ImageReadError(f"{spec}: no file matches this pattern")
        return files
    raise ImageReadError(f"{spec}: no such file or folder")
