"""Export a trained model for Paddle Inference (and ONNX).

    python tools/export.py -c configs/cmfnet/cmfnet_deblur.yml --model_path W.pdparams \
        --save_dir output/export [--input_shape 1 3 -1 -1] [--format paddle|onnx]

Writes model.json (Paddle >= 3; model.pdmodel on Paddle 2.x) + model.pdiparams and
deploy.yaml; --format onnx also writes model.onnx (needs paddle2onnx). Run the export
with deploy/python/infer.py --config SAVE_DIR/deploy.yaml.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", required=True, help="model config (YAML)")
    p.add_argument("--model_path", required=True, help="weights: file, https URL or zoo name")
    p.add_argument("--save_dir", default="output/export", help="output folder")
    p.add_argument(
        "--input_shape",
        type=int,
        nargs=4,
        default=None,
        metavar=("N", "C", "H", "W"),
        help="fixed input shape; -1 keeps a dimension dynamic (default: -1 C -1 -1)",
    )
    p.add_argument("--format", default="paddle", choices=["paddle", "onnx"])
    p.add_argument(
        "--no_check", action="store_true", help="skip the exported-vs-dynamic comparison"
    )
    p.add_argument(
        "--no_measure_memory", action="store_true", help="skip measuring memory per pixel"
    )
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    args = p.parse_args(argv)

    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from ppRestore.inference.export import export_model

    export_model(
        args.config,
        args.model_path,
        args.save_dir,
        input_shape=args.input_shape,
        fmt=args.format,
        opts=args.opts,
        measure_memory=not args.no_measure_memory,
        check=not args.no_check,
    )
    print(f"exported to {args.save_dir} (deploy.yaml, model.*)", file=sys.stderr)
    return 0
