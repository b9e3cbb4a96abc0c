"""Evaluate weights on a config's val_dataset: per-image CSV + summary.

Thin shim (PaddleSeg-style ``python tools/val.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.val`, also run as ``pprestore val ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.val import *  # noqa: E402,F403
from ppRestore.commands.val import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
