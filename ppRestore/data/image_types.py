"""The image value and its errors, shared by :mod:`.image_decode`, :mod:`.image_encode`
and :mod:`.io` (which re-exports all of them: import them from ``ppRestore.data.io``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "Image", "ImageReadError", "ImageWriteError"]

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
