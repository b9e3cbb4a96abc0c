"""L1-norm structured channel pruning that writes a genuinely smaller network.

Method: H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf, "Pruning Filters for
Efficient ConvNets", ICLR 2017: rank the filters of a layer by the L1 norm of their
weights and remove the smallest, together with the matching input channels of every
layer that reads them. Layers whose outputs are added (residual connections) must keep
the same channels, so they form one *group* ranked by the sum of their filters' L1 norms
(as PaddleSlim's ``L1NormFilterPruner`` does for coupled layers); concatenated inputs
(U-Net skips) are sliced at their offset in the concatenation.

Each supported model declares its groups in :mod:`.prune_specs` (:data:`SPECS`, re-exported
here) in terms of state-dict keys, so the result is an ordinary state dict of the smaller architecture plus the model
config with the new per-layer widths (``DnCNN.features`` as a list, ``UNet.widths``,
``PmrNet.channels``), which builds with the normal classes and loads strictly.

Why not PaddleSlim: its latest release (2.6.0, pip) does not work with Paddle 3.3.1:
``L1NormFilterPruner(model, shape)`` fails while tracing the model with
``AttributeError: module 'paddle.base.dygraph.base' has no attribute
'_to_static_mode_guard_'`` (and the package needs ``pkg_resources``, ``zmq`` and
``decorator`` just to import). Its pruner also slices parameters in place without
writing a config that rebuilds the smaller network, which export and deployment need.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

import numpy as np

from .prune_specs import SPECS, Group

__all__ = ["Group", "prune_state", "prune_model", "SPECS", "count_params"]


def count_params(state: Dict[str, np.ndarray], skip_buffers: bool = True) -> int:
    """Parameter count (BatchNorm running statistics left out)."""
    return int(
        sum(
            np.asarray(v).size
            for k, v in state.items()
            if not (skip_buffers and (k.endswith("._mean") or k.endswith("._variance")))
        )
    )


# ------------------------------------------------------------------ the pruner
def _l1(w: np.ndarray, axis: int) -> np.ndarray:
    w = np.abs(np.asarray(w, dtype=np.float64))
    return w.sum(axis=tuple(a for a in range(w.ndim) if a != axis))


def _keep_count(size: int, ratio: float, min_channels: int, multiple: int) -> int:
    k = int(round(size * (1.0 - ratio)))
    if multiple > 1:
        k = int(round(k / multiple)) * multiple
    return max(min(size, max(min_channels, 1)), min(size, k))


def prune_state(
    state: Dict[str, np.ndarray],
    groups: List[Group],
    ratio: float,
    min_channels: int = 4,
    multiple: int = 1,
    criterion: str = "l1",
) -> Tuple[Dict[str, np.ndarray], List[int], List[np.ndarray]]:
    """Remove the lowest-L1 fraction ``ratio`` of each group's channels.

    ``criterion="bn_gamma"`` ranks a group that feeds a BatchNorm by ``|gamma|``
    instead (Liu et al., "Learning Efficient Convolutional Networks through Network
    Slimming", ICCV 2017): BatchNorm rescales every filter's output, so the conv
    filter's own L1 norm says little about the channel's contribution. Groups without
    BatchNorm fall back to L1.

    Returns:
        ``(new_state, kept_counts, kept_indices)``; kept indices are sorted, so the
        surviving channels keep their order.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune ratio must be in [0, 1), got {ratio}")
    if criterion not in ("l1", "bn_gamma"):
        raise ValueError(f"prune criterion must be l1 or bn_gamma, got {criterion!r}")
    # Rank every group on the ORIGINAL weights first: slicing one group's inputs must
    # not change another group's filter norms.
    kept_idx = [_kept_channels(state, g, ratio, min_channels, multiple, criterion) for g in groups]
    new = {k: np.asarray(v) for k, v in state.items()}
    for g, idx in zip(groups, kept_idx):
        _slice_group(new, g, idx)
    return (
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in new.items()},
        [len(idx) for idx in kept_idx],
        kept_idx,
    )


def _kept_channels(
    state: Dict[str, np.ndarray],
    g: Group,
    ratio: float,
    min_channels: int,
    multiple: int,
    criterion: str,
) -> np.ndarray:
    """The sorted indices of ``g``'s channels that survive (highest score first)."""
    score = np.zeros(g.size)
    for key, axis in g.prod:
        norms = _l1(state[key], axis)
        if norms.shape[0] != g.size:
            raise ValueError(
                f"prune group {g.name}: {key} has {norms.shape[0]} channels, expected {g.size}"
            )
        score += norms
    if criterion == "bn_gamma" and g.bn_gamma:
        score = sum(np.abs(np.asarray(state[k], dtype=np.float64)) for k in g.bn_gamma)
    k = _keep_count(g.size, ratio, min_channels, multiple)
    # stable sort: equal norms keep the earlier channel (deterministic)
    return np.sort(np.argsort(-score, kind="stable")[:k])


def _slice_group(new: Dict[str, np.ndarray], g: Group, idx: np.ndarray) -> None:
    """Keep only ``idx`` of ``g``'s channels in every parameter that makes or reads them
    (``new`` is updated in place)."""
    for key, axis in g.prod:
        new[key] = np.take(new[key], idx, axis=axis)
    for key, axis, offset in g.slices:
        if key not in new:
            # a user's weights that do not fit the config: an input error (exit 2), not a bug
            raise ValueError(f"prune group {g.name}: no parameter {key} in the state dict")
        arr = new[key]
        sel = np.arange(arr.shape[axis])
        # keep everything outside [offset, offset + size), the kept channels inside
        inside = (sel >= offset) & (sel < offset + g.size)
        keep = np.concatenate([sel[:offset], offset + idx, sel[offset + g.size :]])
        if inside.sum() != g.size:
            raise ValueError(
                f"prune group {g.name}: {key} axis {axis} has {arr.shape[axis]} channels, "
                f"cannot hold {g.size} at offset {offset}"
            )
        new[key] = np.take(arr, keep, axis=axis)


def prune_model(
    model_cfg: Dict[str, Any],
    state: Dict[str, np.ndarray],
    ratio: float,
    min_channels: int = 4,
    multiple: int = 1,
    criterion: str = "l1",
) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], List[Dict[str, Any]]]:
    """Prune a model given its config section and state dict.

    Returns:
        ``(new_model_cfg, new_state, report)``: the config builds the smaller network
        with the ordinary model class, the state loads into it strictly; ``report``
        lists each group's width before and after.
    """
    kind = model_cfg.get("type")
    if kind not in SPECS:
        raise ValueError(
            f"channel pruning supports {', '.join(sorted(SPECS))}, not model type {kind!r}"
        )
    groups_fn, cfg_fn = SPECS[kind]
    cfg = {k: v for k, v in model_cfg.items() if k != "pretrained"}
    state = {k: np.asarray(v) for k, v in state.items()}
    try:
        groups = groups_fn(cfg, state)
    except KeyError as e:
        raise ValueError(
            f"{kind}: the weights do not match the config's architecture (no {e})"
        ) from None
    new_state, kept, _ = prune_state(state, groups, ratio, min_channels, multiple, criterion)
    new_cfg = cfg_fn(copy.deepcopy(cfg), groups, kept)
    report = [{"group": g.name, "before": g.size, "after": int(k)} for g, k in zip(groups, kept)]
    return new_cfg, new_state, report


def recalibrate_bn(
    model: Any, dataset_cfg: Dict[str, Any], batches: int, batch_size: int = 16, seed: int = 0
) -> int:
    """Re-estimate BatchNorm running statistics of a pruned model on training data.

    Removing input channels changes every kept channel's pre-BN distribution, so the
    stored running mean/variance no longer match (measured: the pruned DnCNN-S output
    collapses to its input). ``batches`` forward passes in training mode, no gradients,
    with the running statistics set to the plain average over those batches
    (momentum ``i / (i + 1)``). Returns the number of batches used (0 without BN).
    """
    import paddle

    from ..data.datasets import build_dataloader, build_dataset

    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    if not bns or batches <= 0:
        return 0
    ds = build_dataset(dataset_cfg, mode="train", seed=seed)
    loader, sampler = build_dataloader(
        ds,
        batch_size,
        shuffle=True,
        num_workers=0,
        seed=seed,
        drop_last=True,
        num_replicas=1,
        rank=0,
    )
    sampler.set_epoch(0)
    old = [bn._momentum for bn in bns]
    model.train()
    n = 0
    try:
        with paddle.no_grad():
            for batch in loader:
                for bn in bns:  # running = i/(i+1) * running + 1/(i+1) * batch statistic
                    bn._momentum = n / (n + 1.0)
                model(batch[0])
                n += 1
                if n >= batches:
                    break
    finally:
        for bn, m in zip(bns, old):
            bn._momentum = m
        model.eval()
    return n


def prune_checkpoint(
    cfg: Dict[str, Any],
    model_path: str,
    ratio: float,
    save_dir: str,
    min_channels: int = 4,
    multiple: int = 1,
    criterion: str = "l1",
    recalibrate_batches: int = 0,
) -> Dict[str, Any]:
    """Prune the weights ``model_path`` of ``cfg['model']`` and write the smaller model.

    Writes ``save_dir/model.pdparams``, ``save_dir/config.yml`` (``cfg`` with the new
    widths and ``model.pretrained`` pointing at the pruned weights, so
    ``pprestore train -c save_dir/config.yml`` fine-tunes it) and ``prune_report.json``.
    ``recalibrate_batches > 0`` re-estimates BatchNorm statistics on the config's
    training data first (:func:`recalibrate_bn`).
    The pruned network is built from the written config and loaded strictly before
    anything is reported, so a written model always loads.

    Returns:
        The report (parameter counts before/after, per-group widths, paths).
    """
    import json
    import os

    from ..builder import build_model
    from ..weights.safe_load import load_model_weights

    model = build_model(cfg["model"])
    load_model_weights(model, model_path)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    new_model_cfg, new_state, groups = prune_model(
        cfg["model"], state, ratio, min_channels, multiple, criterion
    )
    small = _build_checked(new_model_cfg, new_state)
    recal = 0
    if recalibrate_batches > 0:
        if "train_dataset" not in cfg:
            raise ValueError("--recalibrate_bn needs a train_dataset: section in the config")
        bs = int(cfg.get("batch_size", 16))  # the config's training batch size
        recal = recalibrate_bn(small, cfg["train_dataset"], recalibrate_batches, batch_size=bs)
        new_state = {k: v.numpy() for k, v in small.state_dict().items()}
    weights, config = _write_pruned(cfg, new_model_cfg, new_state, save_dir)
    report = {
        "model": cfg["model"].get("type"),
        "source_weights": str(model_path),
        "ratio": float(ratio),
        "criterion": criterion,
        "bn_recalibration_batches": recal,
        "params_before": count_params(state),
        "params_after": count_params(new_state),
        "weights": weights,
        "config": config,
        "groups": groups,
    }
    with open(os.path.join(save_dir, "prune_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def _build_checked(model_cfg: Dict[str, Any], state: Dict[str, np.ndarray]) -> Any:
    """The pruned network built from its new config with ``state`` loaded strictly (every
    key, every shape), after one forward pass on a small input: the channel
    bookkeeping is consistent end to end before anything is written."""
    import paddle

    from ..builder import build_model
    from ..weights.safe_load import load_state_dict

    small = build_model(model_cfg)
    load_state_dict(small, state, source="pruned weights")
    c = int(getattr(small, "in_channels", 3) or 3)
    side = max(32, int(getattr(small, "pad_multiple", 1) or 1))
    small.eval()
    with paddle.no_grad():
        small(paddle.zeros([1, c, side, side]))
    return small


def _write_pruned(
    cfg: Dict[str, Any],
    model_cfg: Dict[str, Any],
    state: Dict[str, np.ndarray],
    save_dir: str,
) -> Tuple[str, str]:
    """Write ``model.pdparams`` and ``config.yml`` (``cfg`` with the pruned model section,
    ``pretrained`` pointing at those weights); returns both absolute paths."""
    import os

    from ..config import save_config
    from ..weights.safe_load import save_weights

    os.makedirs(save_dir, exist_ok=True)
    weights = os.path.abspath(os.path.join(save_dir, "model.pdparams"))
    save_weights(state, weights)
    new_cfg = copy.deepcopy(cfg)
    new_cfg["model"] = {**model_cfg, "pretrained": weights}
    config = os.path.abspath(os.path.join(save_dir, "config.yml"))
    save_config(new_cfg, config)
    return weights, config
