"""Build components from config sections by their ``type:`` key."""

from __future__ import annotations

from typing import Any, Dict

from .registry import MODELS


def build_model(model_cfg: Dict[str, Any]):
    """Instantiate the model described by a config's ``model:`` section."""
    return MODELS.build(model_cfg)
