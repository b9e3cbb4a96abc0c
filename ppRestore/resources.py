"""Where the shipped configs and weights are: the repo checkout, or the installed wheel.

The repo keeps ``configs/`` and ``pretrained/`` at its root (users, docs and notebooks
name ``configs/...`` paths). A wheel carries copies under ``ppRestore/_data/`` (setup.py
copies them at build time), so ``pip install .`` without the repo still finds every
config and zoo weight file.
"""

from __future__ import annotations

import os

__all__ = ["PACKAGE_DIR", "REPO_ROOT", "data_dir", "find_config"]

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(PACKAGE_DIR)


def data_dir(name: str) -> str:
    """The folder holding ``name`` (``"configs"`` or ``"pretrained"``): the checkout's
    when ppRestore runs from a clone (editable install, ``PYTHONPATH``), else the
    packaged copy."""
    checkout = os.path.join(REPO_ROOT, name)
    if os.path.isdir(checkout) and os.path.isfile(os.path.join(REPO_ROOT, "setup.py")):
        return checkout
    return os.path.join(PACKAGE_DIR, "_data", name)


def find_config(path: str) -> str:
    """``path`` when it exists; else the shipped config of that name
    (``configs/demo.yml``, ``demo.yml`` or ``cmfnet/cmfnet_deblur.yml``), so
    ``pprestore infer -c configs/demo.yml`` works from any folder; else ``path``
    unchanged (the loader then says it is not found)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if parts and parts[0] == "configs":
        parts = parts[1:]
    if not parts or ".." in parts:
        return path
    shipped = os.path.join(data_dir("configs"), *parts)
    return shipped if os.path.isfile(shipped) else path
