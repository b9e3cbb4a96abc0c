"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest

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
