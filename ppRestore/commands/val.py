"""Evaluate weights on a config's val_dataset: per-image CSV + summary.

``python tools/val.py -c CONFIG --model_path W [--crop_border N] [--test_y_channel] [--save_dir DIR]``

An exported model (``tools/export.py``) is scored the same way, on the engine and
precision it will be deployed with:

``python tools/val.py -c CONFIG --exported DIR [--backend auto|paddle|onnx|openvino]
[--precision fp32|bf16|int8]``
"""

import argparse
import json
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a model on val_dataset")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-o", "--opts", nargs="+", default=[])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_path", help="weights file (.pdparams/.safetensors) or zoo name")
    src.add_argument("--exported", help="an exported model folder (deploy.yaml) instead of weights")
    p.add_argument(
        "--backend",
        choices=["auto", "paddle", "onnx", "openvino"],
        default="auto",
        help="--exported: engine (auto = fastest installed, as deploy/python/infer.py)",
    )
    p.add_argument(
        "--precision", choices=["fp32", "fp16", "bf16", "int8"], default="fp32", help="--exported"
    )
    p.add_argument("--cpu_threads", type=int, default=None, help="--exported, on CPU")
    p.add_argument("--crop_border", type=int, default=None)
    p.add_argument("--test_y_channel", action="store_true", default=None)
    p.add_argument("--save_dir", default="output/val")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--save_grid",
        type=int,
        default=0,
        metavar="N",
        help="write labelled degraded/restored/ground-truth PNG grids of the first N images",
    )
    p.add_argument("--device", choices=["cpu", "gpu"], default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.save_grid < 0:
        print(f"error: --save_grid must be >= 0, got {args.save_grid}", file=sys.stderr)
        return 2
    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from ppRestore.config import ConfigError, load_config

    cfg = load_config(args.config, args.opts)
    if "val_dataset" not in cfg:
        raise ConfigError(f"{args.config}: the config has no val_dataset section")
    import paddle

    from ppRestore.data.datasets import build_dataset, val_seed
    from ppRestore.engine.evaluator import Evaluator

    if args.device:
        paddle.set_device(args.device)
    val = dict(cfg.get("val") or {})
    if args.crop_border is not None:
        val["crop_border"] = args.crop_border
    if args.test_y_channel:
        val["test_y_channel"] = True
    model = _model_to_score(args, cfg)
    ds = build_dataset(cfg["val_dataset"], mode="val", seed=val_seed(cfg))
    # A bad image in the val set (named in the message) stops the run: metrics over a
    # partial set would mislead. Errors become one line through ppRestore.errors.
    if args.save_grid:
        val["num_samples"] = args.save_grid
    res = Evaluator(ds, infer_cfg=cfg.get("infer"), progress=not args.quiet, **val).evaluate(
        model, save_dir=args.save_dir
    )
    if args.save_grid:
        from ppRestore.engine.grids import save_grids

        grids = save_grids(res.samples, res.rows, os.path.join(args.save_dir, "grids"))
        print(f"grids: {grids[-1]} ({len(grids) - 1} images)")
    _report(args, model, res, val)
    return 0


def _model_to_score(args: argparse.Namespace, cfg: dict):
    """The exported model on its deployment engine (``--exported``), or the config's
    model with ``--model_path``'s weights."""
    if args.exported:
        from ppRestore.inference.predictor import Predictor

        return Predictor.from_exported(
            args.exported,
            backend=args.backend,
            device=args.device or "cpu",
            cpu_threads=args.cpu_threads,
            precision=args.precision,
        )
    from ppRestore.builder import build_model_with_weights

    return build_model_with_weights(cfg["model"], args.model_path, purpose="score")


def _report(args: argparse.Namespace, model, res, val: dict) -> None:
    """Write ``summary.json`` (scores, what was scored, the val options) and print them."""
    source = (
        {
            "exported": args.exported,
            "backend": model.meta.get("backend", args.backend),
            "precision": args.precision,
        }
        if args.exported
        else {"model_path": args.model_path}
    )
    summary = {"images": len(res.rows), **res.as_dict(), **source, **val}
    with open(os.path.join(args.save_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(
        f"[EVAL] {len(res.rows)} images, PSNR: {res.psnr:.4f}, SSIM: {res.ssim:.4f}"
        + (
            f", degraded input PSNR: {res.input_psnr:.4f}, SSIM: {res.input_ssim:.4f}"
            if res.input_psnr is not None
            else ""
        )
    )
    print(f"per-image CSV: {os.path.join(args.save_dir, 'per_image.csv')}")
