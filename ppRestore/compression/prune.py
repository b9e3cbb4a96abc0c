"""L1-norm structured channel pruning that writes a genuinely smaller network.

Method: H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf, "Pruning Filters for
Efficient ConvNets", ICLR 2017: rank the filters of a layer by the L1 norm of their
weights and remove the smallest, together with the matching input channels of every
layer that reads them. Layers whose outputs are added (residual connections) must keep
the same channels, so they form one *group* ranked by the sum of their filters' L1 norms
(as PaddleSlim's ``L1NormFilterPruner`` does for coupled layers); concatenated inputs
(U-Net skips) are sliced at their offset in the concatenation.

Each supported model declares its groups below (:data:`SPECS`) in terms of state-dict
keys, so the result is an ordinary state dict of the smaller architecture plus the model
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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

__all__ = ["Group", "prune_state", "prune_model", "SPECS", "count_params"]


@dataclass
class Group:
    """Channels that must be kept or removed together.

    Attributes:
        name: a label (for reports).
        size: channel count before pruning.
        prod: ``(key, axis)`` of the filters that produce these channels: ranked by L1
            and sliced.
        slices: ``(key, axis, offset)`` also sliced at ``offset + kept`` (biases, BN
            statistics, depthwise filters, the inputs of the layers that read them).
        bn_gamma: the BatchNorm scales right after the producers, if any (the
            ``bn_gamma`` criterion ranks by them).
    """

    name: str
    size: int
    prod: List[Tuple[str, int]] = field(default_factory=list)
    slices: List[Tuple[str, int, int]] = field(default_factory=list)
    bn_gamma: List[str] = field(default_factory=list)


def count_params(state: Dict[str, np.ndarray], skip_buffers: bool = True) -> int:
    """Parameter count (BatchNorm running statistics left out)."""
    return int(
        sum(
            np.asarray(v).size
            for k, v in state.items()
            if not (skip_buffers and (k.endswith("._mean") or k.endswith("._variance")))
        )
    )


# ------------------------------------------------------------------ helpers for specs
def _conv_out(g: Group, state: Dict, name: str, transposed: bool = False) -> None:
    """``name`` (a Conv2D/Conv2DTranspose) produces ``g``'s channels."""
    g.prod.append((f"{name}.weight", 1 if transposed else 0))
    if f"{name}.bias" in state:
        g.slices.append((f"{name}.bias", 0, 0))


def _conv_in(g: Group, name: str, offset: int = 0, transposed: bool = False) -> None:
    """``name`` reads ``g``'s channels (at ``offset`` of a concatenated input)."""
    g.slices.append((f"{name}.weight", 0 if transposed else 1, offset))


def _bn(g: Group, state: Dict, name: str) -> None:
    if f"{name}.weight" in state:
        g.bn_gamma.append(f"{name}.weight")
    for p in ("weight", "bias", "_mean", "_variance"):
        if f"{name}.{p}" in state:
            g.slices.append((f"{name}.{p}", 0, 0))


def _sep_in(g: Group, name: str) -> None:
    """A separable conv ``name`` (depthwise + pointwise) reads ``g``'s channels."""
    g.slices.append((f"{name}.depthwise.weight", 0, 0))
    _conv_in(g, f"{name}.pointwise")


def _sep_out(g: Group, state: Dict, name: str) -> None:
    _conv_out(g, state, f"{name}.pointwise")


def _size(state: Dict, key: str, axis: int) -> int:
    return int(np.asarray(state[key]).shape[axis])


# ------------------------------------------------------------------ DnCNN
def _dncnn_groups(cfg: Dict[str, Any], state: Dict) -> List[Group]:
    n = int(cfg.get("num_layers", 17))
    groups = []
    for i in range(n - 1):
        prod = "head" if i == 0 else f"body.{i - 1}.conv"
        g = Group(f"{prod} (layer {i + 1})", _size(state, f"{prod}.weight", 0))
        _conv_out(g, state, prod)
        if i > 0:
            _bn(g, state, f"body.{i - 1}.bn")
        _conv_in(g, "tail" if i == n - 2 else f"body.{i}.conv")
        groups.append(g)
    return groups


def _dncnn_cfg(cfg: Dict[str, Any], groups: List[Group], kept: List[int]) -> Dict[str, Any]:
    return {**cfg, "features": [int(k) for k in kept]}


# ------------------------------------------------------------------ U-Net
def _unet_groups(cfg: Dict[str, Any], state: Dict) -> List[Group]:
    depth = int(cfg.get("depth", 4))
    groups: List[Group] = []
    up_w = [_size(state, f"ups.{j}.up.weight", 1) for j in range(depth)]

    def new(name: str, transposed: bool = False) -> Group:
        key = f"{name}.weight"
        g = Group(name, _size(state, key, 1 if transposed else 0))
        _conv_out(g, state, name, transposed)
        groups.append(g)
        return g

    def skip_reader(level: int) -> Tuple[str, int]:
        j = depth - 1 - level  # ups run deepest first
        return f"ups.{j}.conv.0", up_w[j]  # concat([up(x), skip]): the skip follows

    _conv_in(new("head.0"), "head.2")
    g = new("head.2")  # level-0 features: the first down conv and the last skip
    _conv_in(g, "downs.0.0")
    _conv_in(g, *skip_reader(0))
    for i in range(depth):
        _conv_in(new(f"downs.{i}.0"), f"enc.{i}.0")
        _conv_in(new(f"enc.{i}.0"), f"enc.{i}.2")
        g = new(f"enc.{i}.2")
        if i < depth - 1:
            _conv_in(g, f"downs.{i + 1}.0")
            _conv_in(g, *skip_reader(i + 1))
        else:
            _conv_in(g, "ups.0.up", transposed=True)
    for j in range(depth):
        _conv_in(new(f"ups.{j}.up", transposed=True), f"ups.{j}.conv.0")
        _conv_in(new(f"ups.{j}.conv.0"), f"ups.{j}.conv.2")
        g = new(f"ups.{j}.conv.2")
        if j < depth - 1:
            _conv_in(g, f"ups.{j + 1}.up", transposed=True)
        else:
            _conv_in(g, "tail")
    return groups


def _unet_cfg(cfg: Dict[str, Any], groups: List[Group], kept: List[int]) -> Dict[str, Any]:
    # _unet_groups lists the convs in UNet.widths order
    return {**cfg, "widths": [int(k) for k in kept]}


# ------------------------------------------------------------------ PmrNet
_PMR_BLOCKS = (2, 2, 4, 4)


def _pmrnet_groups(cfg: Dict[str, Any], state: Dict) -> List[Group]:
    groups: List[Group] = []

    def new(name: str, size_key: str, axis: int = 0) -> Group:
        g = Group(name, _size(state, size_key, axis))
        groups.append(g)
        return g

    def residual_block(g: Group, name: str) -> None:
        """A DecoderBlock ``name`` reads ``g`` and adds its conv1 output back onto it."""
        _sep_in(g, f"{name}.conv0")
        _sep_out(g, state, f"{name}.conv1")

    skip_of = {1: "dec3", 2: "dec2", 3: "dec1"}
    g = new("stem", "conv0.conv.weight")
    _conv_out(g, state, "conv0.conv")
    _sep_in(g, "enc1.0.conv1")
    _sep_in(g, "enc1.0.proj")
    _sep_in(g, "dec4.proj_conv")
    for s in range(1, 5):
        n = _PMR_BLOCKS[s - 1]
        g = new(f"enc{s}", f"enc{s}.0.conv2.pointwise.weight")
        _sep_out(g, state, f"enc{s}.0.conv2")
        _sep_out(g, state, f"enc{s}.0.proj")
        for j in range(1, n):  # stride-1 blocks: identity shortcut, same channels
            _sep_out(g, state, f"enc{s}.{j}.conv2")
            _sep_in(g, f"enc{s}.{j}.conv1")
        if s < 4:
            _sep_in(g, f"enc{s + 1}.0.conv1")
            _sep_in(g, f"enc{s + 1}.0.proj")
            _sep_in(g, f"{skip_of[s]}.proj_conv")
        else:
            _sep_in(g, "encdec")
    for s in range(1, 5):
        for j in range(_PMR_BLOCKS[s - 1]):
            m = new(f"enc{s}.{j}.mid", f"enc{s}.{j}.conv1.pointwise.weight")
            _sep_out(m, state, f"enc{s}.{j}.conv1")
            _sep_in(m, f"enc{s}.{j}.conv2")
    g = new("bridge", "encdec.pointwise.weight")
    _sep_out(g, state, "encdec")
    residual_block(g, "dec1.decode_conv")
    _conv_in(g, "dec1.upsample", transposed=True)
    for k in range(1, 5):
        g = new(f"dec{k}", f"dec{k}.upsample.weight", 1)
        _conv_out(g, state, f"dec{k}.upsample", transposed=True)
        _sep_out(g, state, f"dec{k}.proj_conv")
        if k < 4:
            residual_block(g, f"dec{k + 1}.decode_conv")
            _conv_in(g, f"dec{k + 1}.upsample", transposed=True)
        else:
            residual_block(g, "out0")
            _conv_in(g, "out1.conv")
    for name in [f"dec{k}.decode_conv" for k in range(1, 5)] + ["out0"]:
        m = new(f"{name}.mid", f"{name}.conv0.pointwise.weight")
        _sep_out(m, state, f"{name}.conv0")
        _sep_in(m, f"{name}.conv1")
    return groups


def _pmrnet_cfg(cfg: Dict[str, Any], groups: List[Group], kept: List[int]) -> Dict[str, Any]:
    w = {g.name: int(k) for g, k in zip(groups, kept)}
    channels = {
        "stem": w["stem"],
        "enc": [w[f"enc{s}"] for s in range(1, 5)],
        "enc_mid": [
            [w[f"enc{s}.{j}.mid"] for j in range(n)] for s, n in zip(range(1, 5), _PMR_BLOCKS)
        ],
        "bridge": w["bridge"],
        "dec": [w[f"dec{k}"] for k in range(1, 5)],
        "dec_mid": [w[f"dec{k}.decode_conv.mid"] for k in range(1, 5)] + [w["out0.mid"]],
    }
    out = {k: v for k, v in cfg.items() if k != "width"}
    return {**out, "channels": channels}


#: model type -> (groups from (model cfg, state), new model cfg from kept widths)
SPECS: Dict[str, Tuple[Callable, Callable]] = {
    "DnCNN": (_dncnn_groups, _dncnn_cfg),
    "UNet": (_unet_groups, _unet_cfg),
    "PmrNet": (_pmrnet_groups, _pmrnet_cfg),
}


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
    new = {k: np.asarray(v) for k, v in state.items()}
    kept_counts, kept_idx = [], []
    # Rank every group on the ORIGINAL weights first: slicing one group's inputs must
    # not change another group's filter norms.
    for g in groups:
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
        idx = np.sort(np.argsort(-score, kind="stable")[:k])
        kept_counts.append(k)
        kept_idx.append(idx)
    for g, idx in zip(groups, kept_idx):
        for key, axis in g.prod:
            new[key] = np.take(new[key], idx, axis=axis)
        for key, axis, offset in g.slices:
            if key not in new:
                raise KeyError(f"prune group {g.name}: no parameter {key} in the state dict")
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
    return (
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in new.items()},
        kept_counts,
        kept_idx,
    )


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
    ``tools/train.py -c save_dir/config.yml`` fine-tunes it) and ``prune_report.json``.
    ``recalibrate_batches > 0`` re-estimates BatchNorm statistics on the config's
    training data first (:func:`recalibrate_bn`).
    The pruned network is built from the written config and loaded strictly before
    anything is reported, so a written model always loads.

    Returns:
        The report (parameter counts before/after, per-group widths, paths).
    """
    import json
    import os

    import paddle

    from ..builder import build_model
    from ..config import save_config
    from ..weights.safe_load import load_model_weights, load_state_dict, save_weights

    model = build_model(cfg["model"])
    load_model_weights(model, model_path)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    new_model_cfg, new_state, groups = prune_model(
        cfg["model"], state, ratio, min_channels, multiple, criterion
    )
    small = build_model(new_model_cfg)
    load_state_dict(small, new_state, source="pruned weights")  # strict: every key, every shape
    # one forward pass on a small input: the channel bookkeeping is consistent end to end
    c = int(getattr(small, "in_channels", 3) or 3)
    side = max(32, int(getattr(small, "pad_multiple", 1) or 1))
    small.eval()
    with paddle.no_grad():
        small(paddle.zeros([1, c, side, side]))
    recal = 0
    if recalibrate_batches > 0:
        if "train_dataset" not in cfg:
            raise ValueError("--recalibrate_bn needs a train_dataset: section in the config")
        bs = int(cfg.get("batch_size", 16))  # the config's training batch size
        recal = recalibrate_bn(small, cfg["train_dataset"], recalibrate_batches, batch_size=bs)
        new_state = {k: v.numpy() for k, v in small.state_dict().items()}
    os.makedirs(save_dir, exist_ok=True)
    weights = os.path.abspath(os.path.join(save_dir, "model.pdparams"))
    save_weights(new_state, weights)
    new_cfg = copy.deepcopy(cfg)
    new_cfg["model"] = {**new_model_cfg, "pretrained": weights}
    save_config(new_cfg, os.path.join(save_dir, "config.yml"))
    report = {
        "model": cfg["model"].get("type"),
        "source_weights": str(model_path),
        "ratio": float(ratio),
        "criterion": criterion,
        "bn_recalibration_batches": recal,
        "params_before": count_params(state),
        "params_after": count_params(new_state),
        "weights": weights,
        "config": os.path.abspath(os.path.join(save_dir, "config.yml")),
        "groups": groups,
    }
    with open(os.path.join(save_dir, "prune_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report
