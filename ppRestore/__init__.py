"""ppRestore: PaddlePaddle image restoration.

Importing the package is cheap on purpose: Paddle, the models and every optional
dependency are imported only when used, so a broken optional part (torch,
paddle2onnx, the GUI) never breaks the CLI.
"""

import os as _os

with open(_os.path.join(_os.path.dirname(__file__), "VERSION")) as _f:
    __version__ = _f.read().strip()

# The Paddle versions ppRestore is tested on (keep in step with setup.py and README):
# the lowest end runs a smoke subset in CI (tests/test_paddle_smoke.py in .ci/run).
PADDLE_MIN = (2, 6, 2)
PADDLE_BELOW = (3, 4)
_PADDLE_DISTS = ("paddlepaddle", "paddlepaddle-gpu", "paddlepaddle-xpu", "paddlepaddle-dcu")


def _version_tuple(text):
    import re

    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def check_paddle_version(version=None):
    """None when the installed Paddle (read from the package metadata, without importing
    Paddle) is in the supported range, else the one-line reason. Development builds
    (``0.0.0``) and ``PPRESTORE_SKIP_PADDLE_CHECK=1`` pass; no Paddle at all passes here
    (the first use says so)."""
    if _os.environ.get("PPRESTORE_SKIP_PADDLE_CHECK") == "1":
        return None
    name = "paddlepaddle"
    if version is None:
        from importlib import metadata

        for name in _PADDLE_DISTS:
            try:
                version = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            return None
    v = _version_tuple(version)
    if not v or v == (0, 0, 0):
        return None
    lo = ".".join(map(str, PADDLE_MIN))
    hi = ".".join(map(str, PADDLE_BELOW))
    if v < PADDLE_MIN or v >= PADDLE_BELOW:
        return (
            f"ppRestore {__version__} supports PaddlePaddle >={lo},<{hi}; this Python has "
            f'{name} {version}: install a supported version (pip install "paddlepaddle>={lo},'
            f'<{hi}", or the matching paddlepaddle-gpu), or set PPRESTORE_SKIP_PADDLE_CHECK=1 '
            "to try anyway"
        )
    return None


def _refuse_unsupported_paddle():
    import sys

    msg = check_paddle_version()
    if msg is None:
        return
    # A script (tools/*.py) ends with this one line; a notebook or library import gets
    # an ImportError carrying the same line.
    script = _os.path.basename(sys.argv[0] if sys.argv else "").endswith(".py")
    if script and "pytest" not in sys.modules:
        raise SystemExit(f"error: {msg}")
    raise ImportError(msg)


_refuse_unsupported_paddle()

__all__ = ["__version__", "check_paddle_version", "restore"]


def restore(img, config=None, model_path=None, model_dir=None, device=None, **kwargs):
    """Restore one image; see :func:`ppRestore.inference.restore` (imports Paddle lazily)."""
    from .inference import restore as _restore

    return _restore(
        img, config=config, model_path=model_path, model_dir=model_dir, device=device, **kwargs
    )
