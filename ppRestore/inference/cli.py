"""Command-line pieces shared by tools/infer.py and deploy/python/infer.py."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_common_args", "infer_overrides", "run_and_report", "check_raw_args", "is_raw"]


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared with deploy/python/infer.py."""
    p.add_argument("--image_path", required=True, help="an image file, a folder or a glob pattern")
    p.add_argument("--save_dir", default="output/restored", help="folder for the results")
    p.add_argument("--device", default="cpu", help="cpu or gpu")
    p.add_argument(
        "--tile",
        default=None,
        help="tile size in pixels (at least 16), 'auto' (fits free memory) or 'off'; "
        "default: whole image when it fits in memory, else auto",
    )
    p.add_argument(
        "--tile_overlap",
        type=int,
        default=None,
        help="overlap between tiles in pixels (default 32)",
    )
    p.add_argument(
        "--max_memory",
        type=float,
        default=None,
        help="GB budget of one forward pass for tiling (default: half the free memory, at most 4)",
    )
    p.add_argument(
        "--self_ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)"
    )
    p.add_argument("--overwrite", action="store_true", help="allow results to replace input files")
    p.add_argument(
        "--compare", action="store_true", help="also write NAME_compare.png (input | output)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    raw = p.add_argument_group("raw models (infer.color: raw, e.g. configs/pmrnet/pmrnet_raw.yml)")
    raw.add_argument(
        "--iso", type=float, default=None, help="capture ISO of the Bayer frames (required)"
    )
    raw.add_argument(
        "--bayer_pattern",
        default="RGGB",
        type=str.upper,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="CFA pattern of .npy frames (camera raw files carry theirs); default RGGB",
    )
    raw.add_argument(
        "--black_level",
        type=float,
        default=None,
        help="black level of .npy frames (default 0 for integer frames)",
    )
    raw.add_argument(
        "--white_level",
        type=float,
        default=None,
        help="white level of .npy frames (default: the dtype maximum for integer frames)",
    )


def infer_overrides(args: argparse.Namespace) -> dict:
    out = {}
    if args.tile is not None:
        out["tile"] = args.tile  # InferOptions.validate: "off"/0, "auto", >= MIN_TILE
    if args.tile_overlap is not None:
        out["tile_overlap"] = args.tile_overlap
    if args.self_ensemble:
        out["self_ensemble"] = True
    if args.max_memory is not None:
        if not args.max_memory > 0:
            raise ValueError(
                f"--max_memory must be a positive number of GB, got {args.max_memory:g}"
            )
        out["max_memory"] = args.max_memory * (1 << 30)
    return out


class TileProgress:
    """A tqdm bar over the tiles of one image (big photos take minutes on CPU)."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if total < 2:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            # disable=None: no bar when stderr is a log file, not a terminal (a refresh per
            # tile would fill the log with carriage-return lines)
            self.bar = tqdm(
                total=total, unit="tile", leave=False, file=sys.stderr, dynamic_ncols=True,
                disable=None,
            )  # fmt: skip
        self.bar.update(1)
        self.bar.refresh()  # tiles take seconds to minutes: show every one
        if done >= total:
            self.bar.close()
            self.bar = None


def is_raw(predictor) -> bool:
    """True for raw (Bayer) models: ``infer.color: raw`` in the config / deploy.yaml."""
    return predictor.options.resolved_color == "raw"


def check_raw_args(predictor, args: argparse.Namespace) -> str | None:
    """The one-line problem with the raw flags for this model, or None."""
    if is_raw(predictor) and args.iso is None:
        return "--iso is required for a raw model (the capture ISO of the frames, e.g. --iso 1600)"
    if is_raw(predictor) and not args.iso > 0:
        return f"--iso must be positive, got {args.iso:g}"
    return None


def run_files(predictor, args: argparse.Namespace, restore=None, progress: bool = True):
    """Run the batch runner that fits the model (raw frames or images) with the CLI's
    flags. ``restore`` stands in for the predictor's own restore call (the deploy
    benchmark wraps it in a timer)."""
    from ppRestore.inference.batch import run_batch, run_raw_batch

    if is_raw(predictor):
        return run_raw_batch(
            restore or predictor.restore_raw,
            args.image_path,
            args.save_dir,
            iso=args.iso,
            pattern=args.bayer_pattern,
            black_level=args.black_level,
            white_level=args.white_level,
            overwrite=args.overwrite,
            compare=args.compare,
            progress=progress,
        )
    return run_batch(
        restore or predictor.restore_image,
        args.image_path,
        args.save_dir,
        overwrite=args.overwrite,
        compare=args.compare,
        progress=progress,
    )


def run_and_report(predictor, args: argparse.Namespace) -> int:
    print(f"ppRestore: {predictor.describe()}", file=sys.stderr)
    if not args.quiet:
        predictor.progress = TileProgress()
    from ppRestore.inference.shard import gather

    # under paddle.distributed.launch: rank 0 waits for the others and reports the run
    res = gather(run_files(predictor, args, progress=not args.quiet), args.save_dir)
    print(res.summary(), file=sys.stderr)
    if res.restored and res.is_primary:
        print(f"results in {args.save_dir}", file=sys.stderr)
    # other ranks exit 0 after reporting (a failing rank would make the launcher stop
    # rank 0 before its summary); rank 0's exit code covers every file
    return res.exit_code if res.is_primary else 0
