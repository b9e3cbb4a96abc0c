"""Export a trained model for Paddle Inference (and ONNX).

Thin shim (PaddleSeg-style ``python tools/export.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.export`, also run as ``pprestore export ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.export import *  # noqa: E402,F403
from ppRestore.commands.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
