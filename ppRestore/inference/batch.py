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
from typing import Any, Callable, Dict, List, Set, Tuple

import numpy as np

from ..data.io import (
    IMAGE_EXTENSIONS,
    Image,
    ImageReadError,
    ImageWriteError,
    list_images,
    read_image,
    write_image,
)
from ..files import atomic_write, list_folder
from .compare import compare_image, raw_compare_image

__all__ = [
    "BatchResult",
    "output_path",
    "run_batch",
    "run_raw_batch",
    "list_raw_files",
    "compare_image",
    "check_save_dir",
    "check_collisions",
]

# Formats cv2 writes at 16 bits; others are 8-bit only.
_SIXTEEN_BIT_EXTS = (".png", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class BatchResult:
    restored: List[Tuple[str, str]] = field(default_factory=list)  # (input, output)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)
    seconds: float = 0.0
    # paddle.distributed.launch runs (ppRestore.inference.shard): this rank's plan, and
    # whether this result is the one to report (rank 0 after shard.gather)
    shard: Any = None
    is_primary: bool = True

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        s = f"{len(self.restored)} restored, {len(self.failed)} failed"
        if self.failed:
            s += ": " + ", ".join(os.path.basename(p) for p, _ in self.failed)
        procs = getattr(self.shard, "world", 1)
        if procs > 1 and not self.is_primary:
            s = f"rank {self.shard.rank}: {s} (the run's summary is on rank 0)"
        return s + f" ({self.seconds:.1f} s" + (f", {procs} processes)" if procs > 1 else ")")


def output_path(in_path: str, save_dir: str, dtype: np.dtype = np.uint8, suffix: str = "") -> str:
    """Where the result of ``in_path`` goes: same name/extension in ``save_dir``; ``.png``
    for 16-bit data in an 8-bit-only format and for inputs ppRestore reads but does not
    write (GIF, ...)."""
    stem, ext = os.path.splitext(os.path.basename(in_path))
    ext = ext.lower() if ext else ".png"
    if np.dtype(dtype) == np.uint16 and ext not in _SIXTEEN_BIT_EXTS:
        ext = ".png"
    if ext in (".pgm", ".ppm") or ext not in IMAGE_EXTENSIONS:
        # cv2 cannot write grey as .ppm nor colour as .pgm, nor GIF at all; PNG holds all
        ext = ".png"
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


def _reason(path: str, e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, MemoryError):
        msg = "out of memory (try a smaller --tile, e.g. --tile 256, or --max_memory)"
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
    from .shard import shard_plan

    files, shard = shard_plan(list_images(image_spec))  # this rank's share under a launcher

    def job(f: str, check_dst: Callable[[str], str], log: Callable[[str], None]) -> str:
        img = read_image(f)
        if img.frames > 1:  # an animation or multi-page file: say what is restored
            log(f"NOTE {f}: {img.frames} frames; only the first is restored")
        dst = check_dst(output_path(f, save_dir, img.data.dtype))
        out = restore_fn(img)
        # the colour profile travels with the image (a restore_fn may drop it)
        write_image(dst, out.data, out.alpha, out.icc_profile or img.icc_profile)
        if compare:
            stem = os.path.splitext(os.path.basename(f))[0]
            write_image(os.path.join(save_dir, stem + "_compare.png"), compare_image(img, out))
        return dst

    def plan(f: str) -> List[str]:
        stem = os.path.splitext(os.path.basename(f))[0]
        out = [output_path(f, save_dir)]
        return out + [os.path.join(save_dir, stem + "_compare.png")] if compare else out

    res = _run_files(files, job, save_dir, overwrite, progress, log, plan)
    res.shard = shard
    return res


def check_collisions(files: List[str], plan: Callable[[str], List[str]]) -> None:
    """Refuse, before anything is written, a batch in which two inputs would be written
    to one output (``a.PNG`` and ``a.png``; ``c.pgm`` and ``c.png``, as .pgm results are
    saved as .png) or a result would replace *another* input (``--overwrite`` with the
    input folder as ``save_dir``; replacing its own input is what ``--overwrite`` allows).

    Raises:
        ValueError: one line naming the first clash and how many there are.
    """
    inputs = {os.path.realpath(f): f for f in files}
    owner: dict = {}
    clashes = []
    for f in files:
        own = os.path.realpath(f)
        for dst in plan(f):
            real = os.path.realpath(dst)
            if real in owner and owner[real] != f:
                clashes.append(f"{owner[real]} and {f} would both be saved as {dst}")
            elif real in inputs and real != own:
                clashes.append(f"the result of {f} would replace another input, {inputs[real]}")
            owner.setdefault(real, f)
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise ValueError(
            f"output name clash, nothing written: {clashes[0]}{more}; rename the inputs or "
            "choose another --save_dir"
        )


def _check_batch(
    files: List[str], save_dir: str, overwrite: bool, plan: Callable[[str], List[str]] | None
) -> None:
    """Before any file is touched: the input folder as ``save_dir`` without
    ``overwrite``, output name clashes (:func:`check_collisions`), an unwritable
    ``save_dir``; each a one-line error."""
    in_dirs = {os.path.dirname(os.path.realpath(f)) for f in files}
    if not overwrite and os.path.realpath(save_dir) in in_dirs:
        raise ValueError(
            f"--save_dir {save_dir} is the input folder: results would replace the inputs; "
            "choose another folder or pass --overwrite"
        )
    if plan is not None:
        check_collisions(files, plan)
    check_save_dir(save_dir)


def _progress(
    n: int, progress: bool, log: Callable[[str], None] | None
) -> Tuple[Any, Callable[[str], None]]:
    """A tqdm bar for ``n`` files (or None) and the ``log`` that writes around it."""
    bar = None
    # A bar only for a person watching: piped or logged stderr gets the summary lines.
    if progress and n > 1 and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, unit="img", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            bar = None
    if log is not None:
        return bar, log
    if bar is not None:
        from tqdm import tqdm

        return bar, lambda m: tqdm.write(m, file=sys.stderr)
    return bar, lambda m: print(m, file=sys.stderr, flush=True)


def _dst_checker(
    f: str, inputs: Set[str], used: Dict[str, str], overwrite: bool
) -> Callable[[str], str]:
    """``check_dst`` for file ``f``: refuses an output that would replace an input
    (without ``overwrite``) or the output of another file of this batch."""

    def check_dst(dst: str) -> str:
        real = os.path.realpath(dst)
        if real in inputs and not overwrite:
            raise ImageWriteError(
                f"{f}: output {dst} would overwrite an input; pass --overwrite to allow"
            )
        if real in used:
            raise ImageWriteError(
                f"{f}: output {dst} is also the output of {used[real]}; rename one of them"
            )
        return dst

    return check_dst


def _run_files(
    files: List[str],
    job: Callable[[str, Callable[[str], str], Callable[[str], None]], str],
    save_dir: str,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None] | None,
    plan: Callable[[str], List[str]] | None = None,
) -> BatchResult:
    """The per-file loop shared by images and raw frames: overwrite protection, one
    FAILED line per bad file, progress bar, summary. ``job(file, check_dst, log)``
    restores one file and returns its main output path; it must pass that path through
    ``check_dst`` (which raises when it would replace an input or another result)
    before writing anything, and may ``log`` one-line notes. ``plan(file)`` lists the
    outputs a file will get (known from its name), checked by :func:`check_collisions`
    before the first file is touched."""
    t0 = time.perf_counter()
    _check_batch(files, save_dir, overwrite, plan)
    bar, log = _progress(len(files), progress, log)
    inputs = {os.path.realpath(f) for f in files}
    result = BatchResult()
    used: Dict[str, str] = {}
    for f in files:
        try:
            dst = job(f, _dst_checker(f, inputs, used, overwrite), log)
            used[os.path.realpath(dst)] = f
            result.restored.append((f, dst))
        except Exception as e:  # noqa: BLE001 - one bad image must not end the batch
            # (MemoryError included; Ctrl-C still stops the run)
            msg = _reason(f, e)
            result.failed.append((f, msg))
            log(f"FAILED {msg.splitlines()[0] if msg else f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def list_raw_files(spec: str) -> List[str]:
    """Like :func:`~ppRestore.data.io.list_images` for raw frames: a file or glob as
    given, a folder's ``.npy`` and camera raw files (other files are skipped)."""
    from ..data.raw_io import RAW_EXTENSIONS

    spec = os.fspath(spec)
    if os.path.isdir(spec):
        exts = (".npy",) + RAW_EXTENSIONS
        try:
            files = list_folder(spec, exts)
        except OSError as e:
            raise ImageReadError(f"{spec}: cannot list folder ({e.strerror or e})") from None
        if not files:
            raise ImageReadError(f"{spec}: folder has no raw files (looked for {', '.join(exts)})")
        return files
    return list_images(spec)


def _save_raw_result(
    raw: Any, den: np.ndarray, dst: str, png: str, compare_path: str | None
) -> None:
    """Write one denoised frame: ``dst`` (.npy in the input's dtype and levels, else
    float32), the ``png`` preview and, when asked, the ``compare_path`` image."""
    from ..data.isp import gray_world_gains, save_raw_preview

    out = raw.to_stored(den)  # same dtype and levels as the input (.npy), else float32
    try:  # atomic like the images: an interrupted run leaves no truncated .npy
        atomic_write(dst, lambda f: np.save(f, out, allow_pickle=False), fsync=False)
    except OSError as e:
        raise ImageWriteError(f"{dst}: cannot write ({e.strerror or e})") from None
    # one white balance for both previews so the comparison is fair
    gains = raw.wb_gains or gray_world_gains(den, raw.pattern)
    save_raw_preview(png, den, raw.pattern, wb_gains=gains)
    if compare_path:
        write_image(compare_path, raw_compare_image(raw.bayer, den, raw.pattern, gains))


def run_raw_batch(
    restore_raw: Callable[..., np.ndarray],
    raw_spec: str,
    save_dir: str,
    iso: float,
    pattern: str = "RGGB",
    black_level: float | None = None,
    white_level: float | None = None,
    overwrite: bool = False,
    compare: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = None,
) -> BatchResult:
    """Denoise every Bayer frame of ``raw_spec`` (``.npy``/``.dng``..., file, folder or
    glob) into ``save_dir``, with the same per-file handling as :func:`run_batch`.

    Each frame gives ``NAME.npy``, the denoised Bayer in the input's convention (a
    ``.npy`` keeps its dtype and black/white levels; a camera raw file gives float32 in
    ``[0, 1]``), and ``NAME.png``, a preview through the simple ISP
    (:func:`~ppRestore.data.isp.save_raw_preview`); ``compare=True`` adds
    ``NAME_compare.png`` (noisy | denoised previews, same white balance).

    Args:
        restore_raw: ``(bayer01, iso, pattern) -> bayer01`` (``Predictor.restore_raw``).
        iso: capture ISO of the frames.
        pattern: CFA pattern of ``.npy`` frames (camera raw files carry theirs).
        black_level, white_level: levels of integer ``.npy`` frames (default 0 and the
            dtype maximum); for float frames only when given.
    """
    from ..data.bayer import check_pattern
    from ..data.raw_io import read_raw
    from .shard import shard_plan

    pattern = check_pattern(pattern)
    if iso is None or not float(iso) > 0:
        raise ValueError(f"--iso must be a positive number, got {iso}")
    files, shard = shard_plan(list_raw_files(raw_spec))

    def job(f: str, check_dst: Callable[[str], str], log: Callable[[str], None]) -> str:
        stem = os.path.splitext(os.path.basename(f))[0]
        dst = check_dst(os.path.join(save_dir, stem + ".npy"))
        png = check_dst(os.path.join(save_dir, stem + ".png"))
        is_npy = f.lower().endswith(".npy")
        # -> [0, 1] float32 plus the file's dtype and levels; one-line RawError when unreadable
        raw = read_raw(f, pattern if is_npy else None, black_level, white_level)
        den = restore_raw(raw.bayer, float(iso), raw.pattern)
        side = os.path.join(save_dir, stem + "_compare.png") if compare else None
        _save_raw_result(raw, den, dst, png, side)
        return dst

    def plan(f: str) -> List[str]:
        stem = os.path.splitext(os.path.basename(f))[0]
        out = [os.path.join(save_dir, stem + e) for e in (".npy", ".png")]
        return out + [os.path.join(save_dir, stem + "_compare.png")] if compare else out

    # read_raw and the raw stage raise RawError, a ValueError: caught per file by _run_files.
    res = _run_files(files, job, save_dir, overwrite, progress, log, plan)
    res.shard = shard
    return res
