"""Shared pytest fixtures."""

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def shared_data() -> str:
    """``../shared/data`` next to the checkout (train400/, set12/, ...); skip if absent."""
    path = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
    if not os.path.isdir(path):
        pytest.skip(f"shared data folder not found: {path}")
    return path
