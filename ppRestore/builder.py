"""Build components from config sections by their ``type:`` key."""

from __future__ import annotations

from typing import Any, Dict

from .registry import MODELS

#: ``model.pretrained`` (PaddleSeg's key): weights to *start training from* (a file, an
#: https URL or a zoo name). Only the trainer loads them; inference and export always
#: take their weights from ``--model_path``, so a saved run config stays usable after
#: the starting weights are gone.
PRETRAINED_KEY = "pretrained"
#: ``model.weights_mirror``: where zoo downloads come from when GitHub is out of reach
#: (same forms as ``$PPRESTORE_MIRROR``, see ``weights.zoo.mirrored_url``).
MIRROR_KEY = "weights_mirror"


def build_model(model_cfg: Dict[str, Any], load_pretrained: bool = False):
    """Instantiate the model described by a config's ``model:`` section.

    Args:
        model_cfg: the section; ``type`` names the class, the other keys are its
            arguments, except ``pretrained``.
        load_pretrained: load ``model_cfg['pretrained']`` (strictly) into the new model.
    """
    cfg = dict(model_cfg)
    pretrained = cfg.pop(PRETRAINED_KEY, None)
    mirror = cfg.pop(MIRROR_KEY, None)
    model = MODELS.build(cfg)
    if mirror:
        model.weights_mirror = str(mirror)  # read by safe_load.load_model_weights
    if load_pretrained and pretrained:
        from .weights.safe_load import load_model_weights

        load_model_weights(model, str(pretrained))
    return model
