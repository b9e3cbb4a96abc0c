"""Measuring a model's memory per input pixel (for ``--tile auto``).

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
from typing import Callable, Sequence

import numpy as np

__all__ = ["current_rss", "peak_rss", "PeakSampler", "measure_mem_per_pixel"]

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
