"""Parameter count and dynamic-graph CPU latency of every ppRestore model.

Each model in its default/paper configuration gets a 1 x C x 256 x 256 input (for
SRCNNPixelShuffle that is the low-resolution input; its output is 768 x 768; for the raw
PmrNet the packed 4 x 128 x 128 of a 256 x 256 Bayer frame). One
warm-up run, then the median of ``--runs`` timed runs under ``paddle.no_grad()``.

Run:  python benchmarks/latency_models.py [--threads 2] [--only DnCNN]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = [
    ("CMFNet (official size, RGB)", {"type": "CMFNet"}),
    ("PmrNet (raw, 4 x 128 x 128)", {"type": "PmrNet", "in_channels": 4}),
    ("PmrNet (RGB)", {"type": "PmrNet", "in_channels": 3}),
    ("SRCNN 9-1-5 (x3, Y)", {"type": "SRCNN"}),
    ("SRCNN 9-1-5 replicate pad (shipped)", {"type": "SRCNN", "padding_mode": "replicate"}),
    ("SRCNN 9-5-5 (x3, Y)", {"type": "SRCNN", "kernel_sizes": [9, 5, 5]}),
    ("SRCNNPixelShuffle x3 (Y)", {"type": "SRCNNPixelShuffle", "scale": 3}),
    ("DnCNN-S (17, grey)", {"type": "DnCNN", "num_layers": 17}),
    ("DnCNN-B (20, grey)", {"type": "DnCNN", "num_layers": 20}),
    ("DnCNN-S32 (17 x 32, grey)", {"type": "DnCNN", "num_layers": 17, "features": 32}),
    ("UNet (32, depth 4, RGB)", {"type": "UNet"}),
    ("DMCNN (default, RGB)", {"type": "DMCNN"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="substring of the model names to run")
    ap.add_argument("--threads", type=int, default=0, help="paddle CPU math threads (0 = default)")
    a = ap.parse_args()

    import numpy as np
    import paddle

    from ppRestore.builder import build_model

    paddle.set_device("cpu")
    if a.threads:
        paddle.set_num_threads(a.threads) if hasattr(paddle, "set_num_threads") else None
    for name, cfg in MODELS:
        if a.only and a.only not in name:
            continue
        m = build_model(cfg)
        m.eval()
        n_params = sum(int(np.prod(p.shape)) for p in m.parameters())
        side = a.size // 2 if m.in_channels == 4 else a.size  # packed Bayer: half size
        x = paddle.rand([1, m.in_channels, side, side])
        times = []
        with paddle.no_grad():
            m(x)  # warm-up
            for _ in range(a.runs):
                t = time.perf_counter()
                y = m(x)
                _ = y.numpy()  # force completion
                times.append(time.perf_counter() - t)
        print(
            f"{name:28s} params {n_params:>9,d}  out {tuple(y.shape)}  "
            f"median {statistics.median(times) * 1000:8.0f} ms  (runs: {', '.join(f'{t:.2f}' for t in times)} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
