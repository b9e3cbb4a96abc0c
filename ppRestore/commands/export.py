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


def parser() -> argparse.ArgumentParser:
    """tools/export.py's command line."""
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
    _add_int8_args(p)
    p.add_argument(
        "--no_check", action="store_true", help="skip the exported-vs-dynamic comparison"
    )
    p.add_argument(
        "--no_measure_memory", action="store_true", help="skip measuring memory per pixel"
    )
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _add_int8_args(p: argparse.ArgumentParser) -> None:
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
        default=None,
        help="crop sizes taken from each calibration image (default 256 160)",
    )
    q.add_argument(
        "--calib_max", type=int, default=None, help="calibration images used (default 16)"
    )
    q.add_argument(
        "--int8_keep",
        nargs="+",
        default=None,
        help="layers kept in float: first, last (convolution), ONNX node names, or auto",
    )
    q.add_argument(
        "--calib_method", default=None, choices=["minmax", "percentile", "entropy"],
        help="activation range calibration (default minmax)",
    )  # fmt: skip
    q.add_argument(
        "--calib_noise", type=float, default=None, metavar="SIGMA",
        help="Gaussian noise (0-255) added to calibration inputs; default 25 for "
        "denoisers, 0 otherwise (0: the calibration images are already noisy)",
    )  # fmt: skip
    q.add_argument(
        "--calib_iso", type=float, nargs="+", default=None, metavar="ISO",
        help="raw models: calibrate at these ISOs (default 800 1600 3200 6400); the ISO "
        "you deploy at gives ranges that fit it",
    )  # fmt: skip
    q.add_argument(
        "--int8_target_psnr", type=float, default=None,
        help="--int8_keep auto: keep layers in float until int8 is this close to fp32 "
        "(PSNR in dB, default 47)",
    )  # fmt: skip
    q.add_argument(
        "--int8_max_keep", type=int, default=None,
        help="--int8_keep auto: at most this many layers in float (default 8)",
    )  # fmt: skip
    q.add_argument("--no_relu_fusion", action="store_true", help="quantise conv and ReLU apart")
    q.add_argument("--no_gptq", action="store_true", help="round int8 weights to nearest")
    q.add_argument(
        "--quantized_output",
        action="store_true",
        help="quantise the output image too (ONNX Runtime's default)",
    )
    q.add_argument("--bias_correction", action="store_true", help="empirical bias correction (off)")
    q.add_argument(
        "--equalize", action="store_true",
        help="cross-layer equalisation first (the default; --no_equalize turns it off)",
    )  # fmt: skip
    q.add_argument("--no_equalize", action="store_true", help="no cross-layer equalisation")
    q.add_argument(
        "--float_skips", action="store_true",
        help="keep every residual path float (more accurate; fast on OpenVINO, slow on ONNX Runtime)",
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    import os

    from ppRestore.inference.export import export_model

    if args.quantize or args.format == "onnx":
        _require_onnx_tools(bool(args.quantize))
    if args.quantize:  # checked before the export, as export_model does
        if not args.calib_dir:
            raise ValueError("--quantize int8 needs --calib_dir (a folder of typical images)")
        if not os.path.exists(args.calib_dir):
            raise FileNotFoundError(f"--calib_dir {args.calib_dir}: not found")
    export_model(
        args.config,
        args.model_path,
        args.save_dir,
        input_shape=args.input_shape,
        fmt="onnx" if args.quantize else args.format,
        opts=args.opts,
        measure_memory=not args.no_measure_memory,
        check=not args.no_check,
    )
    if args.quantize:
        # quantised here rather than through export_model, so every int8 option reaches it
        from ppRestore.inference.quantize import quantize_int8

        quantize_int8(args.save_dir, args.calib_dir, **_int8_recipe(args))
    print(f"exported to {args.save_dir} (deploy.yaml, model.*)", file=sys.stderr)
    return 0


def _require_onnx_tools(quantize: bool) -> None:
    """Say what to install before minutes of export work, not after them."""
    import importlib.util

    need = ["paddle2onnx"] + (["onnx", "onnxruntime"] if quantize else [])
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    if missing:
        what = "--quantize int8" if quantize else "--format onnx"
        raise ImportError(
            f"{what} needs {', '.join(missing)}: pip install ppRestore[onnx] "
            '(pip install -e ".[onnx]" in a checkout; add [openvino] for the fastest CPU engine)'
        )


def _int8_recipe(args: argparse.Namespace) -> dict:
    """quantize_int8's options: the config's ``export.int8`` recipe (the model's measured
    one, e.g. PmrNet's), then every int8 flag given on the command line over it."""
    from ppRestore.config import load_config
    from ppRestore.inference.quantize import config_recipe

    recipe = config_recipe(load_config(args.config, args.opts))
    if recipe:
        text = ", ".join(f"{k}={v}" for k, v in recipe.items())
        print(f"int8: recipe from {args.config} (export.int8): {text}", file=sys.stderr)
    flags = {
        "sizes": args.calib_sizes, "max_images": args.calib_max, "keep_fp32": args.int8_keep,
        "method": args.calib_method, "target_psnr": args.int8_target_psnr,
        "max_keep": args.int8_max_keep, "calib_noise": args.calib_noise,
        "calib_isos": args.calib_iso,
        "fuse_relu": False if args.no_relu_fusion else None,
        "gptq": False if args.no_gptq else None,
        "float_output": False if args.quantized_output else None,
        "bias_correction": True if args.bias_correction else None,
        "equalize": False if args.no_equalize else (True if args.equalize else None),
        "float_skips": True if args.float_skips else None,
    }  # fmt: skip
    return {**recipe, **{k: v for k, v in flags.items() if v is not None}}
