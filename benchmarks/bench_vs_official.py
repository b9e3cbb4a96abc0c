"""Exported CMFNet on every ppRestore engine x precision vs the official PyTorch CMFNet
(eager NCHW, channels_last fp32, channels_last + bf16 autocast), interleaved round by
round so that every engine sees the same machine load.

    # the official code stays outside the repo:
    mkdir -p /tmp/official_cmfnet && git -C FanChiMao+CMFNet archive HEAD model utils | tar -x -C /tmp/official_cmfnet
    python tools/export.py -c configs/cmfnet/cmfnet_deblur.yml --model_path W --save_dir /tmp/cmf_export \
        --format onnx --quantize int8 --calib_dir CALIB_IMAGES
    python benchmarks/bench_vs_official.py --export_dir /tmp/cmf_export \
        --official_dir /tmp/official_cmfnet --torch_python /work/venv-torch/bin/python \
        --size 256 --rounds 5 --threads 2 --markdown

ppRestore engines: Paddle Inference fp32/bf16 (oneDNN), ONNX Runtime fp32/int8 (full
graph optimisation), OpenVINO fp32/bf16/int8 (when ``openvino`` is installed); int8
needs the ``--quantize int8`` export. The PyTorch peers run in one persistent
``torch_python`` process (the official model, ``torch.set_num_threads(threads)``), each
timed once per round after its own warm-up. The FLOP count of one forward comes from
the ONNX graph (convolutions and matrix products, 2 FLOP per multiply-add); achieved
GFLOP/s = FLOP / median time. ``--peak`` also times large fp32 and bf16 matrix products
in PyTorch on the same threads: the CPU's practical peak. Timing needs no meaningful
weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Runs in the torch interpreter: a loop answering one command per line.
_TORCH_WORKER = r"""
import sys, time, types
sys.path.insert(0, sys.argv[1])
# the official model imports thop and utils only for parameter counting
sys.modules.setdefault("thop", types.SimpleNamespace(profile=None))
utils = types.ModuleType("utils"); utils.network_parameters = lambda m: 0
sys.modules["utils"] = utils
import torch
from model.CMFNet import CMFNet
torch.set_num_threads(int(sys.argv[3]))
size = int(sys.argv[2])
torch.manual_seed(0)
base = CMFNet().eval()
x = torch.rand(1, 3, size, size)
xcl = x.contiguous(memory_format=torch.channels_last)
models = {}

def model(mode):
    if mode not in models:
        if mode == "torch_eager":
            models[mode] = (base, x, False)
        else:  # the one-line change a PyTorch user makes: channels_last (+ bf16 autocast)
            m = CMFNet().eval()
            m.load_state_dict(base.state_dict())
            models[mode] = (m.to(memory_format=torch.channels_last), xcl, mode == "torch_cl_bf16")
        once(mode)  # warm-up
    return models[mode]

def once(mode):
    m, inp, bf16 = models[mode]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        t = time.perf_counter(); m(inp); return time.perf_counter() - t

def peak(dtype):
    n = 4096
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b
    best = 1e9
    for _ in range(3):
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9

print("READY", torch.__version__, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "PEAK":
        print("PEAK", peak(torch.float32), peak(torch.bfloat16), flush=True)
    elif cmd:
        model(cmd)
        print("T", cmd, once(cmd), flush=True)
"""

TORCH_MODES = ("torch_eager", "torch_cl_fp32", "torch_cl_bf16")


def onnx_flops(path: str, shape: List[int], probe: int = 64) -> float:
    """FLOP of one forward at ``shape`` (N C H W): 2 x multiply-adds of every Conv,
    ConvTranspose, MatMul and Gemm.

    ONNX shape inference cannot follow CMFNet's reshapes, so the shapes are measured:
    ONNX Runtime runs the graph once at ``probe`` x ``probe`` with every such node's
    output exposed, and the count is scaled by the pixel ratio (exact for convolutional
    networks whose feature maps are fixed fractions of the input, as here).
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(path)
    weights = {t.name: numpy_helper.to_array(t).shape for t in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    have = {o.name for o in m.graph.output}
    wanted = []
    for n in nodes:
        for t in (n.input[0], n.output[0]):
            if t not in have and t not in wanted and t != m.graph.input[0].name:
                wanted.append(t)
    m.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in wanted)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    p = min(probe, shape[2], shape[3])
    x = np.zeros((1, shape[1], p, p), np.float32)
    names = [o.name for o in sess.get_outputs()]
    shp = {k: v.shape for k, v in zip(names, sess.run(None, {m.graph.input[0].name: x}))}
    shp[m.graph.input[0].name] = x.shape
    total = 0.0
    for n in nodes:
        inp, out = shp.get(n.input[0]), shp.get(n.output[0])
        w = weights.get(n.input[1]) if len(n.input) > 1 else None
        if n.op_type == "Conv" and w is not None:
            total += 2.0 * np.prod(out) * np.prod(w[1:])  # per output: Cin/g * kh * kw
        elif n.op_type == "ConvTranspose" and w is not None:
            total += 2.0 * np.prod(inp) * np.prod(w[1:])  # per input: Cout/g * kh * kw
        elif n.op_type in ("MatMul", "Gemm"):
            total += 2.0 * np.prod(out) * inp[-1]
    return float(total) * shape[0] * (shape[2] * shape[3]) / (p * p)


def build_engines(export_dir: str, threads: int, wanted: List[str] | None) -> Dict[str, object]:
    from ppRestore.inference.backends import openvino_available
    from ppRestore.inference.predictor import Predictor, load_deploy_yaml

    info = load_deploy_yaml(export_dir)
    has_onnx = os.path.isfile(os.path.join(export_dir, info.get("onnx_file", "model.onnx")))
    has_int8 = bool(info.get("int8_onnx_file"))
    plan = [("paddle_fp32", "paddle", "fp32"), ("paddle_bf16", "paddle", "bf16")]
    if has_onnx:
        plan += [("ort_fp32", "onnx", "fp32")]
        if has_int8:
            plan += [("ort_int8", "onnx", "int8")]
        if openvino_available():
            plan += [("openvino_fp32", "openvino", "fp32"), ("openvino_bf16", "openvino", "bf16")]
            if has_int8:
                plan += [("openvino_int8", "openvino", "int8")]
    engines = {}
    for name, backend, prec in plan:
        if wanted and name not in wanted:
            continue
        engines[name] = Predictor.from_exported(
            export_dir, backend=backend, precision=prec, cpu_threads=threads
        )
    return engines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--export_dir", required=True)
    p.add_argument(
        "--official_dir", default=None, help="folder holding the official model/ package"
    )
    p.add_argument("--torch_python", default=None, help="python with torch (the peers)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", nargs="+", default=None, help="subset of ppRestore engines")
    p.add_argument("--torch_modes", nargs="+", default=list(TORCH_MODES), choices=TORCH_MODES)
    p.add_argument("--peak", action="store_true", help="also time large fp32/bf16 GEMMs")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args(argv)

    import numpy as np

    engines = build_engines(args.export_dir, args.threads, args.engines)
    x = np.random.default_rng(1).random((1, 3, args.size, args.size), dtype=np.float32)
    diffs = {}
    ref = None
    for name, pr in engines.items():
        out = pr.backend.run(x)  # warm-up (OpenVINO compiles this shape here)
        ref = out if ref is None else ref
        diffs[name] = float(np.abs(out - ref).max())
        print(f"{name}: max |diff| vs {next(iter(engines))} = {diffs[name]:.2e}", file=sys.stderr)
    from ppRestore.inference.predictor import load_deploy_yaml

    onnx_path = os.path.join(
        args.export_dir, load_deploy_yaml(args.export_dir).get("onnx_file", "model.onnx")
    )
    flops = (
        onnx_flops(onnx_path, [1, 3, args.size, args.size]) if os.path.isfile(onnx_path) else None
    )
    if flops:
        print(f"{flops / 1e9:.1f} GFLOP per forward at {args.size}x{args.size}", file=sys.stderr)

    worker = None
    modes = list(args.torch_modes) if args.official_dir and args.torch_python else []
    if modes or (args.peak and args.torch_python):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        worker = subprocess.Popen(
            [args.torch_python, "-c", _TORCH_WORKER, args.official_dir or ".", str(args.size),
             str(args.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/tmp",
        )  # fmt: skip
        ready = worker.stdout.readline()
        if not ready.startswith("READY"):
            print("the PyTorch worker did not start (see its stderr above)", file=sys.stderr)
            return 1

    def ask(cmd: str) -> List[str]:
        worker.stdin.write(cmd + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline().split()
        if not line:
            raise RuntimeError(f"the PyTorch worker died on {cmd}")
        return line

    times: Dict[str, List[float]] = {k: [] for k in [*engines, *modes]}
    loads = []
    for r in range(args.rounds):
        for name, pr in engines.items():
            t = time.perf_counter()
            pr.backend.run(x)
            times[name].append(time.perf_counter() - t)
        for mode in modes:
            times[mode].append(float(ask(mode)[2]))
        loads.append(os.getloadavg()[0])
        print(
            f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
            + f" (load {loads[-1]:.1f})",
            file=sys.stderr,
        )  # fmt: skip
    peak = None
    if args.peak and worker is not None:
        _, f32, bf16 = ask("PEAK")
        peak = {"fp32_gemm_gflops": float(f32), "bf16_gemm_gflops": float(bf16)}
    if worker is not None:
        worker.stdin.close()
        worker.wait(timeout=60)
    med = {k: float(np.median(v)) for k, v in times.items() if v}
    result = {
        "size": args.size,
        "threads": args.threads,
        "rounds": args.rounds,
        "gflop": flops / 1e9 if flops else None,
        "median_s": med,
        "all_s": times,
        "max_abs_diff_vs_first": diffs,
        "load_avg_1min": loads,
        "peak": peak,
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if args.markdown:
        print(markdown_table(result))
    return 0


def markdown_table(res: dict) -> str:
    """The benchmarks.md table: median, rounds, ratios against the PyTorch peers."""
    med, all_s = res["median_s"], res["all_s"]
    peers = [k for k in ("torch_cl_fp32", "torch_cl_bf16", "torch_eager") if k in med]
    label = {
        "torch_eager": "official PyTorch eager (NCHW) fp32",
        "torch_cl_fp32": "official PyTorch channels_last fp32",
        "torch_cl_bf16": "official PyTorch channels_last + bf16 autocast",
        "paddle_fp32": "ppRestore Paddle Inference fp32",
        "paddle_bf16": "ppRestore Paddle Inference bf16",
        "ort_fp32": "ppRestore ONNX Runtime fp32",
        "ort_int8": "ppRestore ONNX Runtime int8",
        "openvino_fp32": "ppRestore OpenVINO fp32",
        "openvino_bf16": "ppRestore OpenVINO bf16",
        "openvino_int8": "ppRestore OpenVINO int8",
    }
    head = ["engine", f"median of {res['rounds']} (s)", "rounds (s)"]
    head += [f"time / {k.replace('torch_', 'torch ')}" for k in peers] + ["GFLOP/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in sorted(med, key=med.get):
        cells = [label.get(k, k), f"{med[k]:.2f}", ", ".join(f"{t:.2f}" for t in all_s[k])]
        cells += [f"{med[k] / med[p]:.2f}" for p in peers]
        cells.append(f"{res['gflop'] / med[k]:.0f}" if res.get("gflop") else "-")
        lines.append("| " + " | ".join(cells) + " |")
    foot = f"\n{res['gflop']:.1f} GFLOP per forward" if res.get("gflop") else "\n"
    foot += f" ({res['size']}x{res['size']}, {res['threads']} threads); 1-min load average "
    foot += ", ".join(f"{v:.1f}" for v in res["load_avg_1min"])
    if res.get("peak"):
        pk = res["peak"]
        foot += (
            f"; measured GEMM peak fp32 {pk['fp32_gemm_gflops']:.0f} GFLOP/s, "
            f"bf16 {pk['bf16_gemm_gflops']:.0f} GFLOP/s"
        )
    return "\n".join(lines) + foot


if __name__ == "__main__":
    sys.exit(main())
