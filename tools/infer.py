"""Restore images with a trained model (dynamic graph).

Thin shim (PaddleSeg-style ``python tools/infer.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.infer`, also run as ``pprestore infer ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.infer import *  # noqa: E402,F403
from ppRestore.commands.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
