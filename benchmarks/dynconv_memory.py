"""Peak host memory of DMCNN's dynamic convolution: tap loop vs unfold (inference, CPU).

Each implementation runs in a fresh subprocess on x = 1 x C x H x W with per-pixel
kernels (G groups, k x k) under ``paddle.no_grad()``; the peak resident set size
(``ru_maxrss``) is reported minus the baseline after the inputs are allocated.

Run:  PYTHONPATH=. python benchmarks/dynconv_memory.py [--size 512 --channels 32 --k 5 --groups 4]
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
import paddle
from ppRestore.models.dmcnn import dynamic_conv2d, dynamic_conv2d_unfold
paddle.seed(0)
x = paddle.rand([1, {c}, {s}, {s}])
kern = paddle.rand([1, {g} * {k} * {k}, {s}, {s}])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn = dynamic_conv2d if {impl!r} == "loop" else dynamic_conv2d_unfold
t = time.perf_counter()
with paddle.no_grad():
    y = fn(x, kern, {k}, {g})
    y.numpy()
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{{(peak - base) / 1024:.0f}} {{dt:.2f}}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--groups", type=int, default=4)
    a = ap.parse_args()
    mb = a.channels * a.size * a.size * 4 / 2**20
    print(
        f"input {a.channels}x{a.size}x{a.size} float32 = {mb:.0f} MiB, k={a.k}, groups={a.groups}"
    )
    for impl in ("loop", "unfold"):
        code = CHILD.format(root=ROOT, c=a.channels, s=a.size, g=a.groups, k=a.k, impl=impl)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        extra, secs = out.stdout.split()[-2:]
        print(f"{impl:7s} peak extra RSS {extra:>6s} MiB  time {secs} s", flush=True)


if __name__ == "__main__":
    main()
