"""PSNR of exported models at every deploy precision, on real images.

    python benchmarks/precision_psnr.py \
        --model demo=configs/demo.yml:demo_color_denoise \
        --model srcnn_x3=configs/srcnn/srcnn_x3.yml:srcnn_x3 \
        --engines paddle_fp32 paddle_bf16 onnx_fp32 --threads 2 --out /tmp/prec.json

    # int8 (the export is quantised on --calib_dir, never on the val set itself):
    python benchmarks/precision_psnr.py --model dncnn=configs/dncnn/dncnn_s_sigma25.yml:W \
        --engines onnx_fp32 onnx_int8 openvino_int8 --calib_dir /work/shared/data/train400 \
        [--calib dncnn=DIR] [--int8_keep dncnn=last]

Each ``--model NAME=CONFIG:WEIGHTS[:-o k=v,...]`` is exported once with
``tools/export.py`` and scored by ``tools/val.py`` on its config's ``val_dataset``
(the same seeded degradations and metric settings as the model zoo): first the weights
in the dynamic graph, then ``tools/val.py --exported`` on each engine. The table gives
each engine's PSNR and its change from the dynamic graph. Both tools run as
subprocesses, exactly as a user would run them; the commands are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = {
    "paddle_fp32": ["--backend", "paddle", "--precision", "fp32"],
    "paddle_bf16": ["--backend", "paddle", "--precision", "bf16"],
    "onnx_fp32": ["--backend", "onnx"],
    "onnx_int8": ["--backend", "onnx", "--precision", "int8"],
    "openvino_fp32": ["--backend", "openvino", "--precision", "fp32"],
    "openvino_bf16": ["--backend", "openvino", "--precision", "bf16"],
    "openvino_int8": ["--backend", "openvino", "--precision", "int8"],
}
DEFAULT_ENGINES = ["paddle_fp32", "paddle_bf16", "onnx_fp32"]


def _run(cmd: list, env: dict) -> str:
    print("$", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def _val(args_v: list, save_dir: str, env: dict) -> dict:
    _run([sys.executable, "tools/val.py", *args_v, "--save_dir", save_dir], env)
    with open(os.path.join(save_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)


def parse_model(spec: str) -> tuple:
    """``NAME=CONFIG:WEIGHTS[:k=v,k=v]`` -> (name, config, weights, opts)."""
    name, rest = spec.split("=", 1)
    parts = rest.split(":")
    if len(parts) < 2:
        raise argparse.ArgumentTypeError(f"--model needs NAME=CONFIG:WEIGHTS, got {spec!r}")
    opts = parts[2].split(",") if len(parts) > 2 and parts[2] else []
    return name, parts[0], parts[1], opts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", type=parse_model, required=True)
    p.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=DEFAULT_ENGINES)
    p.add_argument("--calib_dir", default=None, help="int8 calibration images (all models)")
    p.add_argument(
        "--calib", action="append", default=[], help="NAME=DIR: calibration folder for one model"
    )
    p.add_argument(
        "--int8_keep",
        action="append",
        default=[],
        help="NAME=first,last,...: layers that model keeps in float in its int8 graph",
    )
    p.add_argument(
        "--int8_args",
        action="append",
        default=[],
        help="NAME=ARGS: more tools/export.py int8 options for one model, space separated "
        "(e.g. 'pmrnet=--int8_target_psnr 60 --no_gptq')",
    )
    p.add_argument("--calib_sizes", type=int, nargs="+", default=[256, 160])
    p.add_argument("--calib_max", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default=None, help="exports and val outputs (default: temp)")
    p.add_argument("--out", default=None, help="write all results as JSON")
    args = p.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=REPO)
    work = args.work_dir or tempfile.mkdtemp(prefix="prec_psnr_")
    results = []
    calib = dict(kv.split("=", 1) for kv in args.calib)
    keep = {k: v.split(",") for k, v in (kv.split("=", 1) for kv in args.int8_keep)}
    more = {k: v.split() for k, v in (kv.split("=", 1) for kv in args.int8_args)}
    for name, cfg, weights, opts in args.model:
        o = ["-o", *opts] if opts else []
        exp = os.path.join(work, name, "export")
        onnx_engines = [e for e in args.engines if not e.startswith("paddle")]
        fmt = ["--format", "onnx"] if onnx_engines else []
        if any(e.endswith("int8") for e in args.engines):
            cdir = calib.get(name, args.calib_dir)
            if not cdir:
                p.error(f"int8 engines need --calib_dir or --calib {name}=DIR")
            fmt += ["--quantize", "int8", "--calib_dir", cdir, "--calib_max", str(args.calib_max)]
            fmt += ["--calib_sizes", *map(str, args.calib_sizes)]
            if keep.get(name):
                fmt += ["--int8_keep", *keep[name]]
            fmt += more.get(name, [])
        _run(
            [sys.executable, "tools/export.py", "-c", cfg, "--model_path", weights,
             "--save_dir", exp, "--no_measure_memory", *fmt, *o],
            env,
        )  # fmt: skip
        row = {"model": name, "config": cfg, "weights": weights, "int8_keep": keep.get(name, [])}
        t0 = time.time()
        row["dynamic"] = _val(
            ["-c", cfg, "--model_path", weights, *o], os.path.join(work, name, "val_dynamic"), env
        )
        row["dynamic"]["seconds"] = time.time() - t0
        for eng in args.engines:
            t0 = time.time()
            row[eng] = _val(
                [
                    "-c",
                    cfg,
                    "--exported",
                    exp,
                    "--cpu_threads",
                    str(args.threads),
                    *ENGINES[eng],
                    *o,
                ],
                os.path.join(work, name, f"val_{eng}"),
                env,
            )
            row[eng]["seconds"] = time.time() - t0
        results.append(row)
        print(json.dumps({k: (v["psnr"] if isinstance(v, dict) else v) for k, v in row.items()}))
    keep_col = any(r["int8_keep"] for r in results)
    print()
    extra = " kept in float (int8) |" if keep_col else ""
    print(
        "| model | images | input PSNR | dynamic fp32 | " + " | ".join(args.engines) + " |" + extra
    )
    print("|---|---|---|---|" + "---|" * (len(args.engines) + int(keep_col)))
    for r in results:
        d = r["dynamic"]
        inp = f"{d['input_psnr']:.2f}" if "input_psnr" in d else "-"
        cells = [f"{r[e]['psnr']:.2f} ({r[e]['psnr'] - d['psnr']:+.3f})" for e in args.engines]
        print(
            f"| {r['model']} | {d['images']} | {inp} | {d['psnr']:.2f} | "
            + " | ".join(cells)
            + " |"
            + (f" {', '.join(r['int8_keep']) or '-'} |" if keep_col else "")
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
