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


def _load_image_codecs_before_paddle2():
    """Paddle 2.x's libpaddle exports its own zlib: loaded first, it captures the
    symbols Pillow and OpenCV use, and every PNG then fails with "codec configuration
    error" (Pillow) or an empty result (cv2.imread) -- measured with paddlepaddle 2.6.2,
    Pillow 10.4/13.0, opencv 4.5.5. Loading both codecs first avoids it, so on 2.x this
    package imports them (Paddle 3 does not have the problem)."""
    import sys

    try:
        from importlib import metadata

        version = next(
            (_v for _n in _PADDLE_DISTS for _v in [_dist_version(metadata, _n)] if _v), None
        )
    except Exception:  # noqa: BLE001 - a broken metadata lookup must not break import
        return
    if version is None or _version_tuple(version) >= (3,) or _version_tuple(version) == (0, 0, 0):
        return
    try:
        import cv2  # noqa: F401
        import PIL.Image
    except ImportError:
        return
    if "paddle" in sys.modules and not _png_decodes(PIL.Image):
        import warnings

        warnings.warn(
            "Paddle 2.x was imported before ppRestore and now breaks PNG decoding ('codec "
            "configuration error'): import ppRestore before paddle (restart the kernel)",
            RuntimeWarning,
            stacklevel=3,
        )


# a 1x1 grey PNG: its IDAT needs zlib, the part Paddle 2.x's libraries capture
_TINY_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00"
    b"\x00:~\x9bU\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q\x00\x00\x00"
    b"\x00IEND\xaeB`\x82"
)


def _png_decodes(pil_image) -> bool:
    import io

    try:
        pil_image.open(io.BytesIO(_TINY_PNG)).load()
        return True
    except OSError:
        return False


def _dist_version(metadata, name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_load_image_codecs_before_paddle2()

__all__ = ["__version__", "check_paddle_version", "restore"]


def restore(img, config=None, model_path=None, model_dir=None, device=None, **kwargs):
    """Restore one image; see :func:`ppRestore.inference.restore` (imports Paddle lazily)."""
    from .inference import restore as _restore

    return _restore(
        img, config=config, model_path=model_path, model_dir=model_dir, device=device, **kwargs
    )
