"""Write synthetic pen-marked / clean document pairs as ``OUT/lq/`` + ``OUT/gt/``.

Example::

    python tools/make_document_pairs.py --out data/documents/train --num 2000 --size 256 --seed 0
    python tools/make_document_pairs.py --out data/documents/val --num 100 --seed 1

The folders are the paired layout read by ``PairedFolderDataset`` (same file names).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write synthetic document-cleaning pairs (lq/ + gt/).")
    p.add_argument("--out", required=True, help="output folder (lq/ and gt/ are created inside)")
    p.add_argument("--num", type=int, default=100, help="number of pairs (default 100)")
    p.add_argument(
        "--size", type=int, nargs="+", default=[256], help="page size: S or H W (default 256)"
    )
    p.add_argument("--seed", type=int, default=0, help="base seed; pair i uses (seed, i)")
    p.add_argument("--ext", default=".png", choices=[".png", ".jpg", ".bmp"], help="image format")
    args = p.parse_args(argv)
    if len(args.size) not in (1, 2):
        p.error("--size takes one value (square) or two (H W)")
    size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])

    from ppRestore.data.documents import write_document_pairs

    try:
        names = write_document_pairs(args.out, args.num, size, args.seed, args.ext)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {len(names)} pairs to {os.path.join(args.out, 'lq')} and {os.path.join(args.out, 'gt')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
