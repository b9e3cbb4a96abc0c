"""ppRestore: PaddlePaddle image restoration.

Importing the package is cheap on purpose: Paddle, the models and every optional
dependency are imported only when used, so a broken optional part (torch,
paddle2onnx, the GUI) never breaks the CLI.
"""

import os as _os

with open(_os.path.join(_os.path.dirname(__file__), "VERSION")) as _f:
    __version__ = _f.read().strip()

__all__ = ["__version__", "restore"]


def restore(img, config=None, model_path=None, model_dir=None, device=None, **kwargs):
    """Restore one image; see :func:`ppRestore.inference.restore` (imports Paddle lazily)."""
    from .inference import restore as _restore

    return _restore(
        img, config=config, model_path=model_path, model_dir=model_dir, device=device, **kwargs
    )
