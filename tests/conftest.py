"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os

import pytest

import ppRestore  # noqa: F401  (before any test imports paddle: image codecs first on Paddle 2.x)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shared_data_candidates() -> list:
    env = os.environ.get("PPRESTORE_SHARED_DATA")
    parent = os.path.dirname(REPO_ROOT)
    # ../shared/data next to a checkout; ../../shared/data next to a worktree folder.
    cands = [os.path.join(parent, "shared", "data"),
             os.path.join(os.path.dirname(parent), "shared", "data")]  # fmt: skip
    return ([env] if env else []) + cands


@pytest.fixture
def shared_data() -> str:
    """``../shared/data`` next to the checkout (train400/, set12/, ...); skip if absent.

    ``$PPRESTORE_SHARED_DATA`` overrides the location.
    """
    for path in _shared_data_candidates():
        if os.path.isdir(path):
            return path
    pytest.skip(f"shared data folder not found (tried {', '.join(_shared_data_candidates())})")


def _load_bad_images_module():
    path = os.path.join(REPO_ROOT, "tools", "fixtures", "make_bad_images.py")
    spec = importlib.util.spec_from_file_location("_pprestore_make_bad_images", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def bad_images_dir(tmp_path) -> str:
    """A fresh folder with one of each bad/odd input image plus good ones, and a
    ``notes.txt`` that folder listing must skip. What each file is and what reading it
    must give is in ``make_bad_images.CASES`` (use the ``make_bad_images`` fixture)."""
    mod = _load_bad_images_module()
    out = tmp_path / "bad_images"
    mod.make_all(str(out))
    return str(out)


@pytest.fixture(scope="session")
def make_bad_images():
    """The generator module itself (``make_all``, ``CASES``, ``IGNORED``, one maker per case)."""
    return _load_bad_images_module()
