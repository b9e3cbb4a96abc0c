"""Robust image reading and writing.

Why not ``cv2.imread``: it cannot open non-ASCII paths on every platform, ignores
truncation of JPEGs (returns a half-grey image with a warning), drops EXIF orientation
with ``IMREAD_UNCHANGED`` and does not read CMYK or palette files consistently. Here a
file is read as bytes, checked and decoded by Pillow (truncation is an error, EXIF
orientation is applied, CMYK/palette/bilevel are converted), and 16-bit files are
decoded by OpenCV, which keeps their full depth where Pillow would not.

Every failure is an :class:`ImageReadError` / :class:`ImageWriteError` whose message names
the file and the problem in one line.

This module reads and writes files; the work is in :mod:`.image_decode` (bytes to
:class:`Image`: size limit, EXIF, 16-bit readers), :mod:`.image_encode` (array to bytes,
ICC profiles) and :mod:`.image_types` (``Image``, the errors, ``IMAGE_EXTENSIONS``),
whose public names are re-exported here.
"""

from __future__ import annotations

import glob
import os
from typing import List

import numpy as np

from ..files import atomic_write, list_folder
from .image_decode import MAX_IMAGE_PIXELS, decode_image, max_image_pixels
from .image_encode import (
    _png_with_icc,  # noqa: F401 - tests import it from here
    embed_icc,
    encode_image,
)
from .image_types import IMAGE_EXTENSIONS, Image, ImageReadError, ImageWriteError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MAX_FILE_BYTES",
    "Image",
    "ImageReadError",
    "ImageWriteError",
    "decode_image",
    "encode_image",
    "is_image_file",
    "list_images",
    "max_image_pixels",
    "read_image",
    "write_image",
]

# Largest file read_image will load into memory: far above any real photo, and stops
# ``--image_path /dev/zero``-style mistakes before they eat all memory.
MAX_FILE_BYTES = 1 << 30


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
    blob = embed_icc(ext, blob, icc_profile)
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
