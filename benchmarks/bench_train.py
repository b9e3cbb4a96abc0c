"""Training throughput and peak memory: dynamic vs ``paddle.jit.to_static``, oneDNN on/off.

    python benchmarks/bench_train.py [--models cmfnet_reduced srcnn] [--patch 64] [--batch 4]
                                     [--iters 5] [--warmup 2] [--modes dynamic dynamic_onednn to_static]

Each case runs in its own process (clean peak RSS; a crash in one mode, e.g. the
segfault of to_static + FLAGS_use_mkldnn seen with paddle 3.3.1 CPU, is reported instead
of killing the benchmark). Measures one optimizer step (forward, loss, backward, Adam
step) on random tensors: data loading is excluded (the trainer logs ``reader_cost``).
Numbers on a shared machine are indicative only.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> (model config, loss config, channels, upscale factor of the input)
MODELS = {
    "cmfnet_reduced": (
        {"type": "CMFNet", "n_feat": 24, "scale_unetfeats": 12, "reduction": 4},
        {"type": "CMFNetLoss"},
        3,
    ),
    "cmfnet_full": ({"type": "CMFNet"}, {"type": "CMFNetLoss"}, 3),
    "srcnn": ({"type": "SRCNN", "in_channels": 1, "scale": 3}, {"type": "MSELoss"}, 1),
}
MODES = ("dynamic", "dynamic_onednn", "to_static", "to_static_onednn")


def run_case(name: str, mode: str, patch: int, batch: int, iters: int, warmup: int) -> dict:
    """Time ``iters`` training steps in this process (called in a child process)."""
    import resource

    import paddle

    from ppRestore.builder import build_model
    from ppRestore.losses import build_loss

    paddle.set_device("cpu")
    if mode.endswith("onednn"):
        paddle.set_flags({"FLAGS_use_mkldnn": True})
    paddle.seed(0)
    mcfg, lcfg, ch = MODELS[name]
    model = build_model(dict(mcfg))
    loss = build_loss(lcfg)
    opt = paddle.optimizer.Adam(learning_rate=1e-4, parameters=model.parameters())
    fwd = paddle.jit.to_static(model, full_graph=True) if mode.startswith("to_static") else model
    model.train()
    x = paddle.rand([batch, ch, patch, patch])
    y = paddle.rand([batch, ch, patch, patch])

    def step() -> float:
        out = fwd(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        total, _ = loss(out, y)
        total.backward()
        opt.step()
        opt.clear_grad()
        return float(total)

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    dt = (time.perf_counter() - t0) / iters
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "model": name,
        "mode": mode,
        "patch": patch,
        "batch": batch,
        "images_per_s": batch / dt,
        "s_per_iter": dt,
        "peak_rss_mb": rss_mb,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", default=["cmfnet_reduced", "srcnn"], choices=sorted(MODELS)
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--patch", type=int, nargs="+", default=[64])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--_child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        name, mode, patch, batch, iters, warmup = args._child
        print(
            "RESULT "
            + json.dumps(run_case(name, mode, int(patch), int(batch), int(iters), int(warmup)))
        )
        return 0
    rows = []
    print(
        f"{'model':16s} {'mode':18s} {'patch':>5s} {'batch':>5s} {'img/s':>8s} {'s/iter':>8s} {'peak RSS MB':>11s}"
    )
    for name in args.models:
        for patch in args.patch:
            for mode in args.modes:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--_child",
                    name,
                    mode,
                    str(patch),
                    str(args.batch),
                    str(args.iters),
                    str(args.warmup),
                ]
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                res = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
                if r.returncode != 0 or not res:
                    err = (r.stderr.strip().splitlines() or ["?"])[-1][:80]
                    why = (
                        "segfault"
                        if "Segmentation fault" in r.stderr or r.returncode == -11
                        else err
                    )
                    print(f"{name:16s} {mode:18s} {patch:5d} {args.batch:5d}   FAILED ({why})")
                    rows.append({"model": name, "mode": mode, "patch": patch, "error": why})
                    continue
                d = json.loads(res[0][7:])
                rows.append(d)
                print(
                    f"{name:16s} {mode:18s} {patch:5d} {args.batch:5d} {d['images_per_s']:8.2f} {d['s_per_iter']:8.3f} {d['peak_rss_mb']:11.0f}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
