"""Measuring a model's memory per input pixel, and the tile size it implies (``--tile auto``).

A network's peak memory grows linearly with the number of pixels it sees, so one number,
bytes per input pixel, predicts whether an image fits and which tile size does. It is
measured by sampling the process's resident set size (``/proc/self/statm``) in a thread
while the model runs at two sizes: ``(peak(s2) - peak(s1)) / (s2^2 - s1^2)``. Taking the
difference cancels what does not scale (weights, code, allocator pools).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import tiling

__all__ = ["current_rss", "peak_rss", "PeakSampler", "measure_mem_per_pixel", "resolve_tile"]

# Without ``tile`` the image runs whole when it fits the memory budget. To know that
# without measuring the network (seconds to minutes), images small enough to fit even at
# this many bytes per input pixel skip the measurement: the heaviest model measured here,
# CMFNet, needs 16.4 KB (DnCNN-S 3.1 KB, U-Net demo 1.7 KB; docs/reliability.md).
SAFE_MEM_PER_PIXEL = 32 << 10
# Bytes per input pixel the pipeline holds outside the network and outside tiles (float
# copies of input and output, blend weights, the clipped/rounded result); measured 60 B
# with an identity network, kept free of the tile budget.
PIPELINE_BYTES_PER_PIXEL = 64

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss() -> int:
    """Peak resident set size of this process so far, bytes.

    ``VmHWM`` from ``/proc/self/status`` first: ``ru_maxrss`` survives ``fork``+``exec``
    on Linux, so a child started by a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):
        return current_rss()


class PeakSampler:
    """Context manager recording the peak RSS while its body runs (5 ms sampling)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = current_rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


def measure_mem_per_pixel(
    run: Callable[[np.ndarray], np.ndarray],
    in_channels: int,
    sizes: Sequence[int] = (128, 256),
    multiple: int = 1,
    floor: float = 64.0,
) -> float:
    """Bytes of peak memory per input pixel of ``run`` (``N x C x H x W`` -> array).

    Args:
        run: the backend's run function.
        in_channels: the network's input channels.
        sizes: two square sizes (rounded up to ``multiple``); a tiny warm-up run first
            allocates what does not scale.
        floor: lower bound, so noise never yields a zero/negative estimate.
    """
    m = max(1, multiple)
    s1, s2 = (-(-int(s) // m) * m for s in sizes)
    rng = np.random.default_rng(0)
    run(rng.random((1, in_channels, m * 4, m * 4), dtype=np.float32))
    peaks = []
    for s in (s1, s2):
        x = rng.random((1, in_channels, s, s), dtype=np.float32)
        with PeakSampler() as ps:
            run(x)
        peaks.append(ps.peak)
    mpp = (peaks[1] - peaks[0]) / float(s2 * s2 - s1 * s1)
    return float(max(mpp, floor))


# --- the tile decision (Predictor._resolve_tile) ------------------------------------------


def memory_budget(options: Any, h: int, w: int) -> int:
    """Bytes one forward pass may use: ``max_memory``, else half of what is still
    available once the pipeline's own whole-image arrays are set aside, at most
    4 GiB (bigger tiles are not faster on CPU)."""
    o = options
    if o.max_memory:
        return int(o.max_memory)
    s = o.net_scale
    reserve = PIPELINE_BYTES_PER_PIXEL * h * w * s * s
    return int(max(min((tiling.available_memory() - reserve) // 2, 4 << 30), 64 << 20))


def resolve_tile(
    options: Any, h: int, w: int, run: Callable[[np.ndarray], np.ndarray]
) -> int | None:
    """The tile side for an ``h x w`` (padded) input under ``options``
    (:class:`~ppRestore.inference.options.InferOptions`), or None for the whole image.

    ``tile: auto`` / unset measures the model through ``run`` once (the number is kept
    in ``options.mem_per_pixel``), unless the image fits even at
    :data:`SAFE_MEM_PER_PIXEL`."""
    o = options
    if o.tile == "off":
        return None
    if o.tile is None or o.tile == "auto":
        budget = memory_budget(o, h, w)
        if o.tile is None and o.mem_per_pixel is None and h * w * SAFE_MEM_PER_PIXEL <= budget:
            return None  # fits whatever the model: no need to measure it
        if o.mem_per_pixel is None:
            o.mem_per_pixel = measure_mem_per_pixel(run, o.in_channels, multiple=o.pad_multiple)
        # the network sees net_scale-times larger feature maps for SR models; the
        # measured number already includes that.
        return tiling.choose_tile_size(
            h, w, o.mem_per_pixel, o.pad_multiple, o.tile_overlap, budget
        )
    return int(o.tile)
