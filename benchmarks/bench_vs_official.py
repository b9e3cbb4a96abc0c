"""Exported CMFNet (Paddle Inference fp32/bf16, ONNX Runtime) vs the official PyTorch
CMFNet in eager mode, interleaved so that both see the same machine load.

    # the official code stays outside the repo:
    mkdir -p /tmp/official_cmfnet && git -C FanChiMao+CMFNet archive HEAD model utils | tar -x -C /tmp/official_cmfnet
    python tools/export.py -c configs/cmfnet/cmfnet_deblur.yml --model_path W --save_dir /tmp/cmf_export --format onnx
    python benchmarks/bench_vs_official.py --export_dir /tmp/cmf_export \
        --official_dir /tmp/official_cmfnet --torch_python /work/venv-torch/bin/python --size 256 --rounds 3

Each round times one pass of every engine on the same ``1 x 3 x size x size`` input
(after a warm-up), and one official PyTorch pass in a fresh ``torch_python`` process
(model built, one warm-up, one timed pass, ``torch.set_num_threads(threads)``). Medians
over rounds are printed as JSON. Timing needs no meaningful weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Runs in the torch interpreter; imports the official model from --official_dir.
_TORCH_SNIPPET = r"""
import sys, time, types
sys.path.insert(0, sys.argv[1])
# the official model imports thop and utils only for parameter counting
sys.modules.setdefault("thop", types.SimpleNamespace(profile=None))
utils = types.ModuleType("utils"); utils.network_parameters = lambda m: 0
sys.modules["utils"] = utils
import torch
from model.CMFNet import CMFNet
torch.set_num_threads(int(sys.argv[3]))
m = CMFNet().eval()
x = torch.rand(1, 3, int(sys.argv[2]), int(sys.argv[2]))
with torch.no_grad():
    m(x)
    t = time.perf_counter(); m(x); print("TORCH", time.perf_counter() - t)
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--export_dir", required=True)
    p.add_argument(
        "--official_dir", required=True, help="folder holding the official model/ package"
    )
    p.add_argument("--torch_python", default=sys.executable)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import numpy as np

    from ppRestore.inference.predictor import Predictor

    engines = {
        "paddle_fp32": Predictor.from_exported(args.export_dir, cpu_threads=args.threads),
        "paddle_bf16": Predictor.from_exported(
            args.export_dir, cpu_threads=args.threads, precision="bf16"
        ),
    }
    if os.path.isfile(os.path.join(args.export_dir, "model.onnx")):
        engines["onnxruntime"] = Predictor.from_exported(
            args.export_dir, backend="onnx", cpu_threads=args.threads
        )
    x = np.random.default_rng(1).random((1, 3, args.size, args.size), dtype=np.float32)
    ref = None
    for name, pr in engines.items():
        out = pr.backend.run(x)  # warm-up
        ref = out if ref is None else ref
        print(
            f"{name}: max |diff| vs paddle_fp32 = {float(np.abs(out - ref).max()):.2e}",
            file=sys.stderr,
        )
    times = {k: [] for k in [*engines, "torch_eager"]}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for r in range(args.rounds):
        for name, pr in engines.items():
            t = time.perf_counter()
            pr.backend.run(x)
            times[name].append(time.perf_counter() - t)
        out = subprocess.run(
            [
                args.torch_python,
                "-c",
                _TORCH_SNIPPET,
                args.official_dir,
                str(args.size),
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd="/tmp",
        )
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("TORCH")]
        if not line:
            print(
                f"official PyTorch run failed: {out.stderr.strip().splitlines()[-1:]}",
                file=sys.stderr,
            )
            return 1
        times["torch_eager"].append(float(line[0].split()[1]))
        print(
            f"round {r}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
            + f" (load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
        )
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(json.dumps({"size": args.size, "threads": args.threads, "median_s": med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
