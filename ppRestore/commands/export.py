"""Export a trained model for Paddle Inference (and ONNX).

    python tools/export.py -c configs/cmfnet/cmfnet_deblur.yml --model_path W.pdparams \
        --save_dir output/export [--input_shape 1 3 -1 -1] [--format paddle|onnx] \
        [--quantize int8 --calib_dir IMAGES [--calib_sizes 256 160] [--int8_keep last]]

Writes model.json (Paddle >= 3; model.pdmodel on Paddle 2.x) + model.pdiparams and
deploy.yaml; --format onnx also writes model.onnx (needs paddle2onnx); --quantize int8
also writes model_int8.onnx, calibrated on --calib_dir (run it with --precision int8 on
ONNX Runtime or OpenVINO). Run the export with deploy/python/infer.py --config
SAVE_DIR/deploy.yaml.
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
    q = p.add_argument_group("int8 (post-training static quantisation, CPU)")
    q.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="also write model_int8.onnx (implies --format onnx); run with --precision int8",
    )
    q.add_argument("--calib_dir", default=None, help="folder of typical images for calibration")
    q.add_argument(
        "--calib_sizes",
        type=int,
        nargs="+",
        default=[256, 160],
        help="crop sizes taken from each calibration image (default 256 160)",
    )
    q.add_argument("--calib_max", type=int, default=16, help="calibration images used (default 16)")
    q.add_argument(
        "--int8_keep",
        nargs="+",
        default=[],
        help="layers kept in float: first, last (convolution) or ONNX node names",
    )
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
        quantize=args.quantize,
        calib_dir=args.calib_dir,
        calib_sizes=args.calib_sizes,
        calib_max=args.calib_max,
        int8_keep=args.int8_keep,
    )
    print(f"exported to {args.save_dir} (deploy.yaml, model.*)", file=sys.stderr)
    return 0
