"""ppRestore: PaddlePaddle image restoration.

Importing the package is cheap on purpose: Paddle, the models and every optional
dependency are imported only when used, so a broken optional part (torch,
paddle2onnx, the GUI) never breaks the CLI.
"""

import os as _os
import warnings as _warnings

# Two lines Paddle prints on every run that a user can do nothing about: the C++
# extension builder's "No ccache found" UserWarning (emitted at import) and glog
# warnings such as "Paddle static graph(PIR) not support input out tensor" during
# export. Hidden unless PPRESTORE_PADDLE_LOGS=1; a GLOG_minloglevel the user set wins,
# and glog errors (level 2) still print.
if _os.environ.get("PPRESTORE_PADDLE_LOGS", "") not in ("1", "true", "yes"):
    _warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    _os.environ.setdefault("GLOG_minloglevel", "2")

with open(_os.path.join(_os.path.dirname(__file__), "VERSION")) as _f:
    __version__ = _f.read().strip()

__all__ = ["__version__", "restore"]


def restore(img, config=None, model_path=None, model_dir=None, device=None, **kwargs):
    """Restore one image; see :func:`ppRestore.inference.restore` (imports Paddle lazily)."""
    from .inference import restore as _restore

    return _restore(
        img, config=config, model_path=model_path, model_dir=model_dir, device=device, **kwargs
    )
