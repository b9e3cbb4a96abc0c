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


def ensure_dynamic_mode() -> None:
    """Switch this thread to Paddle's dynamic graph if it is not in it.

    Paddle keeps dygraph mode per thread and turns it on only in the thread that first
    imported paddle: when a web-UI or GUI worker thread imports it, every other thread
    starts in static mode ("'numpy' only can be called ... in dynamic graph mode", "must
    be Value, but got EagerParamBase"). Called where models are built and run.
    """
    import paddle

    if not paddle.in_dynamic_mode():
        paddle.disable_static()


def build_model(model_cfg: Dict[str, Any], load_pretrained: bool = False):
    """Instantiate the model described by a config's ``model:`` section.

    Args:
        model_cfg: the section; ``type`` names the class, the other keys are its
            arguments, except ``pretrained``.
        load_pretrained: load ``model_cfg['pretrained']`` (strictly) into the new model.
    """
    ensure_dynamic_mode()
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


def restored_output(out: Any) -> Any:
    """The restored image from a model's ``forward`` result.

    Models that also return auxiliary outputs give a dict with key ``"out"`` (the design
    contract) or a sequence whose first item is the restored image; plain models return
    the tensor itself. Used by the predictor's backends, the export wrapper and the
    trainer, so the three agree.
    """
    if isinstance(out, dict):
        return out["out"]
    if isinstance(out, (list, tuple)):
        return out[0]
    return out


def build_model_with_weights(
    model_cfg: Dict[str, Any], model_path: str | None, purpose: str = "restore with"
):
    """Build a config's model, load ``model_path`` strictly and switch to eval mode:
    the one path from (config, weights) to a ready network, shared by the Predictor,
    export and ``tools/val.py``.

    Args:
        model_cfg: the config's ``model:`` section.
        model_path: a local file, an https URL or a zoo name. Required: results are
            never produced from randomly initialised weights.
        purpose: completes the refusal message ("refusing to <purpose> randomly
            initialised weights").

    Raises:
        WeightsError: no weights given, or they do not fit the model (names the keys).
    """
    from .weights.safe_load import WeightsError, load_model_weights

    if model_path is None or str(model_path).strip() == "":
        raise WeightsError(
            "no weights given: pass --model_path (a .pdparams file, an https URL or a zoo "
            f"name); refusing to {purpose} randomly initialised weights"
        )
    model = build_model(model_cfg)
    load_model_weights(model, str(model_path))
    model.eval()
    return model
