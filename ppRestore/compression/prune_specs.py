"""Which channels of each supported model are pruned together (:data:`SPECS`).

A model's groups are written in terms of its state-dict keys: the filters that produce
a group's channels (ranked and sliced) and every parameter that reads them (sliced at
an offset: biases, BatchNorm statistics, depthwise filters, the next layers' inputs,
a concatenated U-Net skip). Adding a model to channel pruning means one
``_<model>_groups`` / ``_<model>_cfg`` pair here; :mod:`.prune` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

__all__ = ["Group", "SPECS"]


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
