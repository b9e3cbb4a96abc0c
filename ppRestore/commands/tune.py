"""Hyper-parameter search with Optuna: ``pprestore tune -c CONFIG --space SPACE.yml --trials N``.

    pprestore tune -c configs/dncnn/dncnn_s32_sigma25.yml \
        --space configs/tune/dncnn_space.yml --trials 12 --sampler tpe \
        --storage sqlite:///output/tune/study.db --save_dir output/tune

Each trial trains the config with the trial's parameters for the space's ``iters``
(in this process) and is scored by validation PSNR (the config needs ``val_dataset:``);
bad trials are stopped early by a median pruner. Writes SAVE_DIR/trials.csv,
best_config.yml, history.png, importance.png and trial_N/ run folders. With --storage
the study resumes: run the same command again and it continues up to N trials.
Needs the optional extra: pip install 'ppRestore[tune]'. See docs/tuning.md.
``python tools/tune.py ...`` from a clone is the same command.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", required=True, help="training config (with val_dataset)")
    p.add_argument("--space", required=True, help="search space YAML (configs/tune/*.yml)")
    p.add_argument(
        "--trials", type=int, required=True, help="finished trials the study should hold"
    )
    p.add_argument("--sampler", choices=["tpe", "grid", "random"], default="tpe")
    p.add_argument("--storage", default=None, help="e.g. sqlite:///study.db (resumable)")
    p.add_argument("--study_name", default=None, help="default: the config file's name")
    p.add_argument("--save_dir", default="output/tune")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from ppRestore.errors import run_cli

    return run_cli(_run, parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    from ppRestore.config import load_config
    from ppRestore.tuning import TuneError, load_space, run_study

    cfg = load_config(args.config, args.opts)
    if "val_dataset" not in cfg:
        raise TuneError("the config has no val_dataset section: trials are scored on it")
    space = load_space(args.space)
    name = args.study_name or os.path.splitext(os.path.basename(args.config))[0]
    try:
        res = run_study(
            cfg,
            space,
            args.trials,
            args.save_dir,
            sampler=args.sampler,
            storage=args.storage,
            study_name=name,
            seed=args.seed,
        )
    except KeyboardInterrupt:  # the study is resumable: say how, rather than run_cli's line
        print("interrupted; with --storage, run the same command again to resume", file=sys.stderr)
        return 130
    if "best_value" in res:
        print(
            f"best: trial {res['best_trial']}, PSNR {res['best_value']:.4f}, {res['best_params']}"
        )
        print(f"best config: {res['best_config']}")
    else:
        print("no trial finished; nothing to recommend")
    print(f"trials: {res['csv']}" + "".join(f", {k}: {v}" for k, v in res["plots"].items()))
    return 0
