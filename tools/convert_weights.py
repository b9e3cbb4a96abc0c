"""Convert an official (PyTorch, ...) checkpoint into ppRestore weights.

Thin shim (PaddleSeg-style ``python tools/convert_weights.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.convert`, also run as ``pprestore convert ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.convert import *  # noqa: E402,F403
from ppRestore.commands.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
