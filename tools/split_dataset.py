"""Split an image folder into train/val/test reproducibly.

``python tools/split_dataset.py --src DIR --out DIR --ratios 0.7 0.15 0.15 --seed 0 [--symlink]``

Files are shuffled with ``np.random.default_rng(seed)`` over the *sorted* file list, so
the same folder, ratios and seed always give the same split. With a ``lq/`` + ``gt/``
paired folder the pairs stay together (``out/train/lq``, ``out/train/gt``, ...).
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NAMES = ("train", "val", "test")


def split_names(names, ratios, seed):
    """Return ``{split: [names]}`` for the sorted ``names`` (largest-remainder rounding)."""
    import numpy as np

    names = sorted(names)
    total = float(sum(ratios))
    if total <= 0 or any(r < 0 for r in ratios):
        raise ValueError(f"ratios must be non-negative and not all zero, got {ratios}")
    order = np.random.default_rng(seed).permutation(len(names))
    exact = [r / total * len(names) for r in ratios]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(ratios)), key=lambda i: exact[i] - counts[i], reverse=True)[
        : len(names) - sum(counts)
    ]:
        counts[i] += 1
    out, start = {}, 0
    for name, c in zip(NAMES, counts):
        out[name] = sorted(names[j] for j in order[start : start + c])
        start += c
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Split an image folder into train/val/test")
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.15, 0.15])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--symlink", action="store_true", help="symlink instead of copying")
    args = p.parse_args(argv)
    from ppRestore.data.io import IMAGE_EXTENSIONS

    if not 2 <= len(args.ratios) <= 3:
        print("error: give 2 or 3 ratios (train val [test])", file=sys.stderr)
        return 2
    paired = os.path.isdir(os.path.join(args.src, "lq")) and os.path.isdir(
        os.path.join(args.src, "gt")
    )
    list_dir = os.path.join(args.src, "gt") if paired else args.src
    if not os.path.isdir(list_dir):
        print(f"error: no such folder: {list_dir}", file=sys.stderr)
        return 2
    names = [
        f
        for f in os.listdir(list_dir)
        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
    ]
    if not names:
        print(f"error: no images in {list_dir}", file=sys.stderr)
        return 2
    try:
        splits = split_names(names, args.ratios, args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    subs = ("lq", "gt") if paired else ("",)
    for split, files in splits.items():
        for sub in subs:
            dst_dir = os.path.join(args.out, split, sub)
            os.makedirs(dst_dir, exist_ok=True)
            for f in files:
                src = os.path.abspath(os.path.join(args.src, sub, f))
                dst = os.path.join(dst_dir, f)
                if os.path.lexists(dst):
                    os.remove(dst)
                if args.symlink:
                    os.symlink(src, dst)
                else:
                    shutil.copy2(src, dst)
        print(f"{split}: {len(files)} images -> {os.path.join(args.out, split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
