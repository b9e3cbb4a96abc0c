"""Hyper-parameter search with Optuna (the optional ``[tune]`` extra).

Thin shim (PaddleSeg-style ``python tools/tune.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.tune`, also run as ``pprestore tune ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.tune import *  # noqa: E402,F403
from ppRestore.commands.tune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
