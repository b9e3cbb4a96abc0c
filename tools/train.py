"""Train a restoration model: ``python tools/train.py -c CONFIG [-o key=value ...]``.

Thin shim (PaddleSeg-style ``python tools/train.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.train`, also run as ``pprestore train ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.train import *  # noqa: E402,F403
from ppRestore.commands.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
