"""Channel pruning table: parameters, Paddle Inference latency, PSNR before / after
pruning / after a short fine-tune (docs/compression.md).

    python benchmarks/bench_prune.py -c CONFIG --model_path W --ratio 0.5 \
        --finetune_iters 300 --finetune_batch 8 --finetune_lr 1e-4 \
        --size 256 --save_dir output/bench_prune/dncnn [-o key=value ...]

Steps: validate the original weights on the config's val_dataset; prune
(``ppRestore.compression.prune.prune_checkpoint``); validate the pruned weights;
fine-tune them with the config's training set for ``--finetune_iters`` steps (cosine
from ``--finetune_lr``); validate again; export both networks (tools/export.py's
library) and time them on Paddle Inference (CPU, oneDNN, ``--threads`` threads, a
1 x C x size x size input, median of ``--runs`` after one warm-up). Writes
``result.json`` and prints a Markdown table row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _psnr(cfg, weights) -> float:
    from ppRestore.builder import build_model
    from ppRestore.data.datasets import build_dataset, val_seed
    from ppRestore.engine.evaluator import Evaluator
    from ppRestore.weights.safe_load import load_model_weights

    model = build_model(cfg["model"])
    load_model_weights(model, weights)
    ds = build_dataset(cfg["val_dataset"], mode="val", seed=val_seed(cfg))
    return Evaluator(ds, infer_cfg=cfg.get("infer"), **(cfg.get("val") or {})).evaluate(model).psnr


def _latency(cfg, weights, out_dir, size, threads, runs) -> float:
    import numpy as np
    from paddle import inference

    from ppRestore.inference.export import export_model

    info = export_model(
        cfg, weights, out_dir, measure_memory=False, check=False, log=lambda *a: None
    )
    prog = os.path.join(out_dir, info["model_file"])
    config = inference.Config(prog, os.path.join(out_dir, "model.pdiparams"))
    config.disable_gpu()
    config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(threads)
    pred = inference.create_predictor(config)
    x = np.random.default_rng(0).random((1, info["in_channels"], size, size), dtype=np.float32)
    h = pred.get_input_handle(pred.get_input_names()[0])
    times = []
    for i in range(runs + 1):
        h.reshape(x.shape)
        h.copy_from_cpu(x)
        t0 = time.perf_counter()
        pred.run()
        pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
        if i:  # the first run builds oneDNN primitives
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--model_path", required=True)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--finetune_iters", type=int, default=300)
    ap.add_argument("--finetune_batch", type=int, default=8)
    ap.add_argument("--finetune_lr", type=float, default=1e-4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--save_dir", required=True)
    ap.add_argument("-o", "--opts", nargs="+", default=[])
    a = ap.parse_args()

    from ppRestore.compression.prune import prune_checkpoint
    from ppRestore.config import apply_overrides, load_config
    from ppRestore.engine.trainer import Trainer

    cfg = load_config(a.config, a.opts)
    res = {"config": a.config, "model_path": a.model_path, "ratio": a.ratio}
    t0 = time.time()
    res["psnr_before"] = _psnr(cfg, a.model_path)
    print(f"before: {res['psnr_before']:.4f} dB ({time.time() - t0:.0f} s)", flush=True)
    rep = prune_checkpoint(cfg, a.model_path, a.ratio, os.path.join(a.save_dir, "pruned"))
    res.update(params_before=rep["params_before"], params_after=rep["params_after"])
    with open(rep["config"], encoding="utf-8") as f:
        import yaml

        pcfg = yaml.safe_load(f)
    res["psnr_pruned"] = _psnr(pcfg, rep["weights"])
    print(f"pruned: {res['psnr_pruned']:.4f} dB, {rep['params_after']:,} params", flush=True)
    ft = apply_overrides(
        pcfg,
        [
            f"iters={a.finetune_iters}",
            f"batch_size={a.finetune_batch}",
            f"lr_scheduler={{type: CosineWarmup, learning_rate: {a.finetune_lr:g}, warmup_iters: 10, "
            "warmup_start_lr: 1.0e-6, eta_min: 1.0e-6}",
            f"train.save_interval={a.finetune_iters}",
            "train.log_iters=50",
            "train.keep_checkpoint_max=1",
        ],
    )
    t1 = time.time()
    out = Trainer.from_config(ft, save_dir=os.path.join(a.save_dir, "finetune")).train()
    ft_w = os.path.join(out["checkpoint"], "model.pdparams")
    res["finetune_seconds"] = round(time.time() - t1)
    res["psnr_finetuned"] = _psnr(pcfg, ft_w)
    print(f"fine-tuned: {res['psnr_finetuned']:.4f} dB ({res['finetune_seconds']} s)", flush=True)
    res["latency_ms_before"] = _latency(
        cfg, a.model_path, os.path.join(a.save_dir, "exp_before"), a.size, a.threads, a.runs
    )
    res["latency_ms_after"] = _latency(
        pcfg, ft_w, os.path.join(a.save_dir, "exp_after"), a.size, a.threads, a.runs
    )
    res.update(
        size=a.size,
        threads=a.threads,
        finetune_iters=a.finetune_iters,
        finetune_batch=a.finetune_batch,
    )
    with open(os.path.join(a.save_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    print(
        f"| {cfg['model']['type']} | {res['params_before']:,} -> {res['params_after']:,} | "
        f"{res['latency_ms_before']:.1f} -> {res['latency_ms_after']:.1f} | {res['psnr_before']:.2f} | "
        f"{res['psnr_pruned']:.2f} | {res['psnr_finetuned']:.2f} ({a.finetune_iters} steps) |"
    )


if __name__ == "__main__":
    main()
