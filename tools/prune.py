"""Channel-prune a trained model (L1-norm filter ranking) into a smaller network.

Thin shim (PaddleSeg-style ``python tools/prune.py ...`` from a clone); the command lives
in :mod:`ppRestore.commands.prune`, also run as ``pprestore prune ...`` once installed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppRestore.commands.prune import *  # noqa: E402,F403
from ppRestore.commands.prune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
