"""int8 vs fp32 latency of exported models on ONNX Runtime and OpenVINO, interleaved.

    python benchmarks/int8_latency.py EXPORT_DIR [EXPORT_DIR ...] --size 256 --threads 1 \
        --rounds 7 [--engines ort_fp32 ort_int8 openvino_fp32 openvino_bf16 openvino_int8]

Each export (``tools/export.py --quantize int8``) is loaded on every engine; one
``1 x C x size x size`` network input (C from ``deploy.yaml``) is timed round by round,
all engines in turn, so that they share the machine's load; the median per engine, its
ratio to ONNX Runtime fp32 and the 1-minute load average are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ENGINES = {
    "ort_fp32": ("onnx", "fp32"),
    "ort_int8": ("onnx", "int8"),
    "openvino_fp32": ("openvino", "fp32"),
    "openvino_bf16": ("openvino", "bf16"),
    "openvino_int8": ("openvino", "int8"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dirs", nargs="+")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    args = p.parse_args(argv)

    import numpy as np

    from ppRestore.inference.predictor import Predictor, load_deploy_yaml

    print("| export | " + " | ".join(args.engines) + " | load (1 min) |")
    print("|---|" + "---|" * (len(args.engines) + 1))
    for d in args.export_dirs:
        c = int(load_deploy_yaml(d).get("in_channels", 3))
        x = np.random.default_rng(0).random((1, c, args.size, args.size), dtype=np.float32)
        runs = {}
        for e in args.engines:
            be, prec = ENGINES[e]
            runs[e] = Predictor.from_exported(
                d, backend=be, precision=prec, cpu_threads=args.threads
            )
            runs[e].backend.run(x)  # warm-up: OpenVINO compiles the shape here
        times = {e: [] for e in args.engines}
        loads = []
        for _ in range(args.rounds):
            for e, pr in runs.items():
                t = time.perf_counter()
                pr.backend.run(x)
                times[e].append(time.perf_counter() - t)
            loads.append(os.getloadavg()[0])
        med = {e: float(np.median(v)) for e, v in times.items()}
        base = med.get("ort_fp32") or next(iter(med.values()))
        cells = [f"{med[e] * 1000:.1f} ms ({med[e] / base:.2f}x)" for e in args.engines]
        name = os.path.normpath(d).split(os.sep)
        name = "/".join(name[-2:]) if name[-1] == "export" else name[-1]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {np.mean(loads):.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
