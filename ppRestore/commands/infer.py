"""Restore images with a trained model (dynamic graph).

    python tools/infer.py -c configs/cmfnet/cmfnet_deblur.yml --model_path W.pdparams \
        --image_path photos/ --save_dir output/restored [--tile auto] [--compare]

``--image_path`` is a file, a folder or a glob; each result keeps its input's name and
size (16-bit images in an 8-bit-only format are saved as .png). Exit code 1 when any
file failed. The same code serves deploy/python/infer.py (Paddle Inference).

Raw models (``infer: {color: raw}``, configs/pmrnet/pmrnet_raw.yml) take Bayer frames
(``.npy`` 2-D arrays, ``.dng`` and other camera raw files with rawpy) and need the ISO:

    python tools/infer.py -c configs/pmrnet/pmrnet_raw.yml --model_path W.pdparams \
        --image_path frames/ --save_dir output/raw --iso 1600 [--bayer_pattern RGGB] \
        [--black_level 64 --white_level 1023] [--compare]

Each frame gives NAME.npy (denoised, same dtype and levels as the input) and NAME.png
(a preview through a simple ISP).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from ppRestore.inference.cli import add_common_args

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", required=True, help="model config (YAML)")
    p.add_argument(
        "--model_path",
        required=True,
        help="weights: .pdparams/.safetensors file, https URL or zoo name",
    )
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    add_common_args(p)
    args = p.parse_args(argv)

    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from ppRestore.inference.cli import check_raw_args, infer_overrides, run_and_report
    from ppRestore.inference.predictor import Predictor

    predictor = Predictor.from_config(
        args.config,
        args.model_path,
        device=args.device,
        opts=args.opts,
        **infer_overrides(args),
    )
    problem = check_raw_args(predictor, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return run_and_report(predictor, args)
