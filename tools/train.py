"""Train a restoration model: ``python tools/train.py -c CONFIG [-o key=value ...]``.

Exit codes: 0 done (or stopped by SIGTERM after saving a checkpoint), 130 stopped by
SIGINT/Ctrl-C after saving a checkpoint, 1 error (e.g. a NaN loss; the message names the
iteration), 2 bad arguments/config.
"""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    from ppRestore.config import ConfigError, apply_overrides, load_config, validate
    from ppRestore.registry import RegistryError

    try:
        cfg = load_config(args.config, args.opts)
        top = {k: getattr(args, k) for k in ("iters", "batch_size") if getattr(args, k) is not None}
        cfg = validate(apply_overrides(cfg, [f"{k}={v}" for k, v in top.items()]), args.config)
    except (ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from ppRestore.engine.checkpoint import CheckpointError
    from ppRestore.engine.lock import SaveDirBusyError
    from ppRestore.engine.trainer import NonFiniteLossError, Trainer
    from ppRestore.weights.safe_load import WeightsError

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
    try:
        trainer = Trainer.from_config(cfg, **overrides)
        result = trainer.train()
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (
        ConfigError,
        RegistryError,
        ValueError,
        FileNotFoundError,
        CheckpointError,
        WeightsError,
        SaveDirBusyError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. ENOSPC while saving: earlier checkpoints are intact
        print(f"error: {e}", file=sys.stderr)
        return 1
    if result["stopped_by_signal"] == signal.SIGINT:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
