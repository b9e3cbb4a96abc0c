"""Latency and peak memory of one model on every inference path.

    python benchmarks/bench_infer.py -c configs/cmfnet/cmfnet_deblur.yml [--model_path W] \
        --sizes 256 512 1024 --threads 2 --repeats 3 --write docs/benchmarks.md

For each engine (dynamic graph, Paddle Inference fp32 / bf16 / int8 on oneDNN, ONNX
Runtime) and each square size, a fresh subprocess loads the model, runs one warm-up
pass, then ``--repeats`` timed passes of ``Predictor.predict`` (padding included) and
reports the median latency and its peak RSS (``ru_maxrss``: Paddle itself included, so
compare columns, not absolute numbers with other tools). Without ``--model_path`` the
weights are random: speed and memory do not depend on them (the results are never
used as images). A markdown table is printed and, with ``--write``, put into the given
file between markers named after the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ENGINES = ("dynamic", "paddle_fp32", "paddle_bf16", "paddle_int8", "onnxruntime")


def _child(args: argparse.Namespace) -> None:
    """Runs in the subprocess: one engine, one size; prints a JSON line."""
    import numpy as np

    from ppRestore.inference.memory import current_rss, peak_rss
    from ppRestore.inference.predictor import Predictor

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.engine == "dynamic":
        import paddle

        paddle.set_device("cpu")
        paddle.set_num_threads(args.threads) if hasattr(paddle, "set_num_threads") else None
        from ppRestore.builder import build_model
        from ppRestore.config import load_config

        cfg = load_config(args.config, args.opts)
        model = build_model(cfg["model"])
        if args.model_path:
            from ppRestore.weights.safe_load import load_model_weights

            load_model_weights(model, args.model_path)
        pred = Predictor.from_model(model, infer_cfg=cfg.get("infer"))
    elif args.engine == "onnxruntime":
        pred = Predictor.from_exported(args.export_dir, backend="onnx", cpu_threads=args.threads)
    else:
        prec = args.engine.split("_")[1]
        pred = Predictor.from_exported(
            args.export_dir, backend="paddle", precision=prec, cpu_threads=args.threads
        )
    pred.options.tile = None
    img = np.random.default_rng(0).random(
        (args.size, args.size, pred.options.in_channels), dtype=np.float32
    )
    base = current_rss()
    pred.predict(img)  # warm-up: oneDNN/ORT build kernels for this shape here
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pred.predict(img)
        times.append(time.perf_counter() - t)
    times.sort()
    print(
        json.dumps(
            {
                "median_s": times[len(times) // 2],
                "min_s": times[0],
                "peak_rss": peak_rss(),
                "rss_after_load": base,
            }
        )
    )


def _run_child(args: argparse.Namespace, engine: str, size: int, export_dir: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_child",
        "-c",
        args.config,
        "--engine",
        engine,
        "--size",
        str(size),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--export_dir",
        export_dir,
    ]
    if args.model_path:
        cmd += ["--model_path", args.model_path]
    if args.opts:
        cmd += ["-o", *args.opts]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_minloglevel="3")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {args.timeout}s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (r.stderr.strip().splitlines() or ["?"])[-1]
    return {"error": tail[:120]}


def _export(args: argparse.Namespace, export_dir: str, want_onnx: bool) -> str:
    from ppRestore.inference.export import export_model

    weights = args.model_path
    if not weights:
        # random weights for timing only: save them so export's strict loader is used
        import paddle

        from ppRestore.builder import build_model
        from ppRestore.config import load_config
        from ppRestore.weights.safe_load import save_weights

        paddle.seed(0)
        weights = os.path.join(export_dir, "random_init.pdparams")
        save_weights(
            build_model(load_config(args.config, args.opts)["model"]).state_dict(), weights
        )
        args.model_path = weights
    export_model(
        args.config,
        weights,
        export_dir,
        fmt="onnx" if want_onnx else "paddle",
        opts=args.opts,
        measure_memory=False,
        check=False,
        log=lambda m: None,
    )
    return export_dir


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()}-core shared CPU container ({cpu}), Paddle CPU build"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--model_path", default=None, help="weights (default: random, timing only)")
    p.add_argument("-o", "--opts", nargs="+", default=[])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument(
        "--dynamic_max_size", type=int, default=512, help="skip the slow dynamic graph above this"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument(
        "--write", default=None, help="markdown file to update (e.g. docs/benchmarks.md)"
    )
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--export_dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        _child(args)
        return 0

    want_onnx = "onnxruntime" in args.engines
    if want_onnx:
        try:
            import onnxruntime  # noqa: F401
            import paddle2onnx  # noqa: F401
        except ImportError:
            print("onnxruntime/paddle2onnx not installed: skipping ONNX Runtime", file=sys.stderr)
            args.engines = [e for e in args.engines if e != "onnxruntime"]
            want_onnx = False
    random_w = not args.model_path
    from ppRestore.config import load_config

    model_type = load_config(args.config, args.opts)["model"]["type"]
    rows = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ppr-bench-") as export_dir:
        _export(args, export_dir, want_onnx)
        for size in args.sizes:
            for eng in args.engines:
                if eng == "dynamic" and size > args.dynamic_max_size:
                    continue
                r = _run_child(args, eng, size, export_dir)
                rows.append((eng, size, r))
                if "error" in r:
                    msg = f"error: {r['error']}"
                else:
                    msg = f"{r['median_s'] * 1000:.0f} ms, peak RSS {r['peak_rss'] / 2**20:.0f} MiB"
                print(f"{model_type} {eng:12s} {size}x{size}: {msg}", file=sys.stderr, flush=True)
    table = [
        f"### {model_type} (`{os.path.relpath(args.config, REPO)}`)",
        "",
        f"Machine: {machine()}; {args.threads} threads; median of {args.repeats} warm runs"
        + ("; random weights (timing only)" if random_w else "")
        + f"; measured {time.strftime('%Y-%m-%d %H:%M')}; 1-min load average"
        f" {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 = both cores busy).",
        "",
        "| engine | size | latency (ms) | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for eng, size, r in rows:
        if "error" in r:
            table.append(f"| {eng} | {size}x{size} | failed: {r['error']} | |")
        else:
            table.append(
                f"| {eng} | {size}x{size} | {r['median_s'] * 1000:.0f} | {r['peak_rss'] / 2**20:.0f} |"
            )
    text = "\n".join(table) + "\n"
    print(text)
    if args.write:
        _update_markdown(args.write, model_type, text)
    return 0


def _update_markdown(path: str, key: str, section: str) -> None:
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    old = (
        open(path, encoding="utf-8").read()
        if os.path.isfile(path)
        else "# Inference benchmarks\n\n"
    )
    block = f"{begin}\n{section}{end}\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) + 1 :]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    sys.exit(main())
