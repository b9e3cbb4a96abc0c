"""Padding to a model's size multiple and tiled inference with seamless blending.

Why tiles: a full-size restoration network holds many feature maps of the image's size,
so a 12-megapixel photo needs tens of gigabytes in one pass. Tiles bound the memory;
the question is how to join them without seams.

How tiles are joined: neighbouring tiles overlap by at least ``overlap`` pixels. In an
overlap of width ``ov`` each tile's weight is 0 on the outer quarter (pixels that saw
the tile border, i.e. zero padding instead of real neighbours), a raised-cosine ramp
over the middle half, and 1 beyond; the two ramps sum to one, and every pixel is the
weighted mean of the tiles covering it. So for a CNN whose receptive-field *radius*
``r`` satisfies ``ov // 4 >= r`` (``ov >= 4 r``, about twice the receptive-field size)
the tiled output equals the whole-image output everywhere (up to float rounding); for a
smaller overlap it equals it away from tile borders, and the ramp hides the residual
difference near them. Networks with global context (channel attention over the whole
image, as in CMFNet) cannot be exact under tiling; the ramp keeps them seam-free.

Tile positions and sizes are multiples of the model's ``pad_multiple`` on the padded
image, so down-sampling grids inside the network line up with the whole-image run.
"""

from __future__ import annotations

import math
from typing import Callable, List, Tuple

import numpy as np

__all__ = [
    "pad_to_multiple",
    "tile_starts",
    "blend_window",
    "tiled_forward",
    "align_tile",
    "choose_tile_size",
    "available_memory",
]

RunFn = Callable[[np.ndarray], np.ndarray]


def pad_to_multiple(
    x: np.ndarray, multiple: int, mode: str = "reflect"
) -> Tuple[np.ndarray, int, int]:
    """Pad the last two axes of ``x`` (``N x C x H x W``) at the bottom/right to multiples.

    Reflect padding (as the official CMFNet demo does) keeps image statistics at the
    border; numpy's reflect also works when the pad is larger than the image.

    Returns:
        ``(padded, H, W)`` with the original height and width for cropping back.
    """
    h, w = x.shape[-2:]
    m = max(1, int(multiple))
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, h, w
    if mode == "reflect" and (h == 1 or w == 1):
        mode = "edge"  # a 1-pixel axis has nothing to reflect
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode=mode), h, w


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Tiles are spread evenly (so no sliver tile at the end) with consecutive overlaps of
    at least ``overlap``; offsets are multiples of ``multiple`` when ``length`` and
    ``tile`` are.
    """
    if tile >= length:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((length - tile) / stride) + 1
    span = length - tile
    m = max(1, multiple)
    starts = sorted({int(round(i * span / (n - 1) / m)) * m for i in range(n)})
    starts[-1] = span  # exact end even if rounding moved it
    return starts


def _ramp(n: int) -> np.ndarray:
    """Raised-cosine ramp of ``n`` strictly positive values rising towards 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * t)


def blend_window(size: int, ov_before: int, ov_after: int) -> np.ndarray:
    """1-D weights for a tile of ``size`` overlapping ``ov_before``/``ov_after`` pixels
    with its neighbours (0 = image border, weight 1 there)."""
    w = np.ones(size, dtype=np.float64)
    for ov, side in ((ov_before, 0), (ov_after, 1)):
        if ov <= 0:
            continue
        margin = ov // 4
        ramp_len = ov - 2 * margin
        # A tiny floor instead of exact zero: weights never sum to zero even in odd
        # layouts, and its contribution (1e-8 x error) is far below float32 precision.
        seg = np.full(ov, 1e-8)
        seg[margin : margin + ramp_len] = np.maximum(_ramp(ramp_len), 1e-8)
        seg[margin + ramp_len :] = 1.0
        if side == 0:
            w[:ov] = np.minimum(w[:ov], seg)
        else:
            w[size - ov :] = np.minimum(w[size - ov :], seg[::-1])
    return w


def _windows(starts: List[int], tile: int, scale: int) -> List[np.ndarray]:
    out = []
    for i, s in enumerate(starts):
        before = (starts[i - 1] + tile - s) if i > 0 else 0
        after = (s + tile - starts[i + 1]) if i + 1 < len(starts) else 0
        out.append(blend_window(tile * scale, max(0, before) * scale, max(0, after) * scale))
    return out


def align_tile(tile: int, overlap: int, multiple: int) -> Tuple[int, int]:
    """Round ``tile`` down and ``overlap`` up to multiples of ``multiple``, with
    ``overlap <= tile // 2`` so at most two tiles overlap along an axis."""
    m = max(1, int(multiple))
    tile = max(m, (int(tile) // m) * m)
    overlap = max(0, -(-int(overlap) // m) * m)
    while overlap > tile // 2 and overlap > 0:
        overlap -= m
    return tile, max(0, overlap)


def tiled_forward(
    run: RunFn,
    x: np.ndarray,
    tile: int,
    overlap: int,
    scale: int = 1,
    multiple: int = 1,
    out_channels: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``run`` on overlapping tiles of ``x`` (``N x C x H x W``, H/W multiples of
    ``multiple``) and blend the results (see the module docstring).

    Args:
        run: maps an ``N x C x h x w`` array to ``N x C' x h*scale x w*scale``.
        tile: tile side in input pixels (aligned to ``multiple`` by :func:`align_tile`).
        overlap: minimum overlap between neighbouring tiles, input pixels.
        scale: output/input size ratio of ``run``.
        out_channels: C' (taken from the first tile's output when None).
        progress: optional ``callback(done, total)``.
    """
    n, _, h, w = x.shape
    tile, overlap = align_tile(tile, overlap, multiple)
    th, tw = min(tile, h), min(tile, w)
    ys = tile_starts(h, th, overlap, multiple)
    xs = tile_starts(w, tw, overlap, multiple)
    wy, wx = _windows(ys, th, scale), _windows(xs, tw, scale)
    out = None
    wsum = np.zeros((h * scale, w * scale), dtype=np.float32)
    total, done = len(ys) * len(xs), 0
    for iy, y0 in enumerate(ys):
        for ix, x0 in enumerate(xs):
            pred = run(np.ascontiguousarray(x[:, :, y0 : y0 + th, x0 : x0 + tw]))
            if pred.shape[-2:] != (th * scale, tw * scale):
                raise RuntimeError(
                    f"model returned {pred.shape[-2:]} for a {th}x{tw} tile; expected "
                    f"{th * scale}x{tw * scale} (scale {scale})"
                )
            if out is None:
                c = out_channels or pred.shape[1]
                out = np.zeros((n, c, h * scale, w * scale), dtype=np.float32)
            win = np.outer(wy[iy], wx[ix]).astype(np.float32)
            oy, ox = y0 * scale, x0 * scale
            out[:, :, oy : oy + th * scale, ox : ox + tw * scale] += pred * win
            wsum[oy : oy + th * scale, ox : ox + tw * scale] += win
            done += 1
            if progress is not None:
                progress(done, total)
    out /= wsum
    return out


def available_memory() -> int:
    """Bytes of memory this process can still use: the smallest of the system's
    ``MemAvailable``, the container (cgroup) limit minus its current usage and the
    address-space rlimit (``RLIMIT_AS``) minus the process's virtual size."""
    avail = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    # cgroup v2 / v1 limits: containers often report the host's memory in /proc/meminfo.
    for limit_f, usage_f in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_f) as f:
                raw = f.read().strip()
            if raw == "max":
                continue
            limit = int(raw)
            with open(usage_f) as f:
                usage = int(f.read().strip())
            if limit < (1 << 60):
                free = max(0, limit - usage)
                avail = free if avail is None else min(avail, free)
        except (OSError, ValueError):
            continue
    # an address-space rlimit (ulimit -v, a batch scheduler's cap) counts virtual memory
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status") as f:
                vm = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
            free = max(0, soft - vm)
            avail = free if avail is None else min(avail, free)
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return int(avail if avail is not None else 4 << 30)


def choose_tile_size(
    h: int,
    w: int,
    mem_per_pixel: float,
    multiple: int = 1,
    overlap: int = 32,
    budget: int | None = None,
    max_budget: int = 4 << 30,
) -> int | None:
    """Pick a tile side for ``--tile auto``; None when the whole image fits.

    Args:
        mem_per_pixel: bytes the model needs per input pixel (measured, see
            :mod:`ppRestore.inference.memory`, or given in ``deploy.yaml``).
        budget: bytes allowed for one forward pass; default half the available memory,
            capped at ``max_budget`` (bigger tiles are not faster on CPU).
    """
    if budget is None:
        budget = min(available_memory() // 2, max_budget)
    if h * w * mem_per_pixel <= budget:
        return None
    side = int(math.sqrt(budget / max(mem_per_pixel, 1.0)))
    m = max(1, multiple)
    side = max((side // m) * m, 2 * overlap + m, m)
    return side
