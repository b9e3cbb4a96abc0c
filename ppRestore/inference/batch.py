"""Restore a file, a folder or a glob of images and save the results.

Shared by ``tools/infer.py`` (dynamic graph) and ``deploy/python/infer.py`` (Paddle
Inference) so both behave the same:

* each output keeps its input's name and extension and exact size (times ``scale``); a
  16-bit image whose format cannot hold 16 bits (JPEG, BMP, WebP) is saved as ``.png``
  so no precision is lost;
* a file that fails (unreadable, corrupt, out of memory...) prints ONE line naming it
  and the problem; the run carries on and ends with a summary; the exit code is 1 when
  any file failed;
* an input is never overwritten (``save_dir`` equal to the input folder, or an output
  path equal to an input path) unless ``overwrite=True``;
* ``compare=True`` also writes ``NAME_compare.png``: ``input | output`` side by side.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Tuple

import numpy as np

from ..data.io import Image, ImageReadError, ImageWriteError, list_images, read_image, write_image

__all__ = ["BatchResult", "output_path", "run_batch", "compare_image", "check_save_dir"]

# Formats cv2 writes at 16 bits; others are 8-bit only.
_SIXTEEN_BIT_EXTS = (".png", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class BatchResult:
    restored: List[Tuple[str, str]] = field(default_factory=list)  # (input, output)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        s = f"{len(self.restored)} restored, {len(self.failed)} failed"
        if self.failed:
            s += ": " + ", ".join(os.path.basename(p) for p, _ in self.failed)
        return s + f" ({self.seconds:.1f} s)"


def output_path(in_path: str, save_dir: str, dtype: np.dtype = np.uint8, suffix: str = "") -> str:
    """Where the result of ``in_path`` goes: same name/extension in ``save_dir``
    (``.png`` for 16-bit data in an 8-bit-only format)."""
    stem, ext = os.path.splitext(os.path.basename(in_path))
    ext = ext.lower() if ext else ".png"
    if np.dtype(dtype) == np.uint16 and ext not in _SIXTEEN_BIT_EXTS:
        ext = ".png"
    if ext in (".pgm", ".ppm"):
        ext = ".png"  # cv2 cannot write grey as .ppm nor colour as .pgm; PNG holds both
    return os.path.join(save_dir, stem + suffix + ext)


def check_save_dir(save_dir: str) -> None:
    """Create ``save_dir`` and prove it writable; raise ImageWriteError (one line) if not."""
    try:
        os.makedirs(save_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=save_dir)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ImageWriteError(
            f"{save_dir}: cannot write results there ({e.strerror or e})"
        ) from None


def compare_image(inp: Image, out: Image) -> np.ndarray:
    """``input | output`` side by side (input nearest-upscaled to the output size)."""
    a, b = inp.data, out.data
    if a.shape[:2] != b.shape[:2]:
        sy, sx = b.shape[0] // a.shape[0], b.shape[1] // a.shape[1]
        a = np.repeat(np.repeat(a, sy, axis=0), sx, axis=1)[: b.shape[0], : b.shape[1]]
    gap = np.full((b.shape[0], 8, b.shape[2]), np.iinfo(b.dtype).max, dtype=b.dtype)
    return np.concatenate([a.astype(b.dtype), gap, b], axis=1)


def _reason(path: str, e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, MemoryError):
        msg = "out of memory (try --tile 512 or --tile auto)"
    # ImageReadError/ImageWriteError messages already start with the path.
    if msg.startswith(path):
        return msg
    return (
        f"{path}: {type(e).__name__}: {msg}"
        if not isinstance(e, (ImageReadError, ImageWriteError))
        else f"{path}: {msg}"
    )


def run_batch(
    restore_fn: Callable[[Image], Image],
    image_spec: str,
    save_dir: str,
    overwrite: bool = False,
    compare: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = None,
) -> BatchResult:
    """Restore every image of ``image_spec`` (file, folder or glob) into ``save_dir``.

    Args:
        restore_fn: ``Image -> Image`` (e.g. ``Predictor.restore_image``).
        overwrite: allow replacing an input file with its result.
        compare: also write ``NAME_compare.png``.
        progress: tqdm bar for more than one image.
        log: where one-line messages go (default: stderr, through tqdm when active).

    Raises:
        ImageReadError: the spec matches nothing; ImageWriteError: save_dir unusable;
        ValueError: save_dir is the input folder without ``overwrite``.
    """
    t0 = time.perf_counter()
    files = list_images(image_spec)
    inputs = {os.path.realpath(f) for f in files}
    in_dirs = {os.path.dirname(p) for p in inputs}
    if not overwrite and os.path.realpath(save_dir) in in_dirs:
        raise ValueError(
            f"--save_dir {save_dir} is the input folder: results would replace the inputs; "
            "choose another folder or pass --overwrite"
        )
    check_save_dir(save_dir)
    bar = None
    if progress and len(files) > 1:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(files), unit="img", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            bar = None
    if log is None:
        if bar is not None:
            from tqdm import tqdm

            def log(m: str) -> None:
                tqdm.write(m, file=sys.stderr)
        else:

            def log(m: str) -> None:
                print(m, file=sys.stderr, flush=True)

    result = BatchResult()
    used: dict = {}
    for f in files:
        try:
            img = read_image(f)
            dst = output_path(f, save_dir, img.data.dtype)
            real = os.path.realpath(dst)
            if real in inputs and not overwrite:
                raise ImageWriteError(
                    f"{f}: output {dst} would overwrite an input; pass --overwrite to allow"
                )
            if real in used:
                raise ImageWriteError(
                    f"{f}: output {dst} is also the output of {used[real]}; rename one of them"
                )
            out = restore_fn(img)
            write_image(dst, out.data, out.alpha)
            used[real] = f
            if compare:
                stem = os.path.splitext(os.path.basename(f))[0]
                write_image(os.path.join(save_dir, stem + "_compare.png"), compare_image(img, out))
            result.restored.append((f, dst))
        except (
            ImageReadError,
            ImageWriteError,
            ValueError,
            RuntimeError,
            MemoryError,
            OSError,
        ) as e:
            msg = _reason(f, e)
            result.failed.append((f, msg))
            log(f"FAILED {msg.splitlines()[0] if msg else f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result
