"""Channel-prune a trained model (L1-norm filter ranking) into a smaller network.

    pprestore prune -c configs/dncnn/dncnn_s32_sigma25.yml \
        --model_path dncnn_s32_sigma25 --ratio 0.5 --save_dir output/pruned

(``python tools/prune.py ...`` from a clone is the same command.)

Writes SAVE_DIR/model.pdparams, SAVE_DIR/config.yml (the config with the new per-layer
widths and model.pretrained set to the pruned weights) and SAVE_DIR/prune_report.json.
Fine-tune with ``pprestore train -c SAVE_DIR/config.yml``; evaluate, export and deploy
it like any model (``--model_path SAVE_DIR/model.pdparams``). Supported models: DnCNN,
UNet, PmrNet (see docs/compression.md).
"""

from __future__ import annotations

import argparse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", required=True, help="the model's config (YAML)")
    p.add_argument("--model_path", required=True, help="weights: file, URL, zoo name or checkpoint")
    p.add_argument(
        "--ratio", type=float, required=True, help="fraction of channels to remove, [0, 1)"
    )
    p.add_argument("--save_dir", required=True, help="output folder")
    p.add_argument("--min_channels", type=int, default=4, help="never prune a layer below this")
    p.add_argument("--multiple", type=int, default=1, help="round kept widths to this multiple")
    p.add_argument(
        "--criterion",
        choices=["l1", "bn_gamma"],
        default="l1",
        help="filter ranking: L1 norm (default), or |BatchNorm gamma| where a BN follows",
    )
    p.add_argument(
        "--recalibrate_bn",
        type=int,
        default=0,
        metavar="N",
        help="re-estimate BatchNorm statistics on N training batches (config's train_dataset)",
    )
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from ppRestore.errors import run_cli

    return run_cli(_run, parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.ratio < 1.0:
        raise ValueError(f"--ratio must be in [0, 1), got {args.ratio}")
    if args.min_channels < 1 or args.multiple < 1 or args.recalibrate_bn < 0:
        raise ValueError("--min_channels, --multiple must be >= 1, --recalibrate_bn >= 0")
    from ppRestore.compression.prune import prune_checkpoint
    from ppRestore.config import load_config

    cfg = load_config(args.config, args.opts)
    rep = prune_checkpoint(
        cfg,
        args.model_path,
        args.ratio,
        args.save_dir,
        args.min_channels,
        args.multiple,
        args.criterion,
        args.recalibrate_bn,
    )
    b, a = rep["params_before"], rep["params_after"]
    print(
        f"pruned {rep['model']}: {b:,} -> {a:,} parameters ({100.0 * a / max(b, 1):.1f}%); "
        f"weights {rep['weights']}, config {rep['config']}"
    )
    return 0
