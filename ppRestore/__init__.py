"""ppRestore: PaddlePaddle image restoration.

Importing the package is cheap on purpose: Paddle, the models and every optional
dependency are imported only when used, so a broken optional part (torch,
paddle2onnx, the GUI) never breaks the CLI.
"""

import os as _os

with open(_os.path.join(_os.path.dirname(__file__), "VERSION")) as _f:
    __version__ = _f.read().strip()

__all__ = ["__version__"]
