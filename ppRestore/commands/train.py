"""Train a restoration model: ``python tools/train.py -c CONFIG [-o key=value ...]``.

Exit codes: 0 done (or stopped by SIGTERM after saving a checkpoint), 130 stopped by
SIGINT/Ctrl-C after saving a checkpoint, 1 error (e.g. a NaN loss; the message names the
iteration), 2 bad arguments/config.
"""

import argparse
import signal


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", required=True, help="YAML config")
    p.add_argument("-o", "--opts", nargs="+", default=[], help="overrides: key.subkey=value")
    p.add_argument(
        "--resume_model",
        default=None,
        help="checkpoint folder, or 'auto' (newest complete one in save_dir)",
    )
    p.add_argument(
        "--do_eval", action="store_true", help="evaluate on val_dataset at each eval/save interval"
    )
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL under save_dir/vdl")
    p.add_argument("--save_dir", default="output")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "gpu"], default=None)
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None)
    p.add_argument("--amp_level", choices=["O1", "O2"], default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--save_interval", type=int, default=None)
    p.add_argument("--log_iters", type=int, default=None)
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--keep_checkpoint_max", type=int, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from ppRestore.config import apply_overrides, load_config, validate

    cfg = load_config(args.config, args.opts)
    top = {k: getattr(args, k) for k in ("iters", "batch_size") if getattr(args, k) is not None}
    cfg = validate(apply_overrides(cfg, [f"{k}={v}" for k, v in top.items()]), args.config)

    from ppRestore.engine.trainer import Trainer

    overrides = {
        k: getattr(args, k)
        for k in (
            "seed",
            "device",
            "precision",
            "amp_level",
            "save_interval",
            "log_iters",
            "num_workers",
            "keep_checkpoint_max",
            "resume_model",
        )
    }
    overrides.update(
        save_dir=args.save_dir, do_eval=args.do_eval or None, use_vdl=args.use_vdl or None
    )
    # errors: ppRestore.errors (e.g. ENOSPC while saving exits 1; earlier checkpoints are intact)
    result = Trainer.from_config(cfg, **overrides).train()
    if result["stopped_by_signal"] == signal.SIGINT:
        return 130
    return 0
