"""DnCNN: residual-learning denoising CNN.

Paper: K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian Denoiser:
Residual Learning of Deep CNN for Image Denoising", IEEE TIP 26(7), 2017.

Conv+ReLU, then ``num_layers - 2`` Conv+BN+ReLU blocks, then a Conv that predicts the
*noise* (residual learning). DnCNN-S (known sigma) has 17 layers, DnCNN-B (blind) 20.
``forward(x)`` returns the clean estimate ``x - noise`` (not clipped: the predictor and
the evaluation clip, as SaoYan's ``test.py`` does); :meth:`DnCNN.noise` returns the
predicted residual itself.

Two checkpoint families load into this one class:

* ``dncnn:saoyan`` — SaoYan/DnCNN-PyTorch ``logs/*/net.pth``: BatchNorm, convs without
  bias -> ``DnCNN(bn=True)`` (the default).
* ``dncnn:kair`` — cszn/KAIR ``model_zoo/dncnn_*.pth``: BatchNorm already folded into the
  conv biases -> ``DnCNN(bn=False)`` (every conv has a bias, no BN). We chose a real
  BN-free mode over "unfolding" into identity BatchNorms because an identity BN is only
  approximately identity in float32 (``1/sqrt(var + eps)`` with var = 1 - eps does not
  round to exactly 1) and costs an extra op per layer; the folded mode is exact and is
  also what one exports for inference.
"""

from __future__ import annotations

import re
from typing import Dict, Sequence

import numpy as np
import paddle
from paddle import nn

from ..registry import MODELS, Arch, Source, register_arch

__all__ = ["DnCNN", "convert_dncnn_saoyan", "convert_dncnn_kair"]


class ConvBNReLU(nn.Layer):
    """3x3 conv, optional BatchNorm, ReLU (one DnCNN middle layer; ``cout`` defaults to ``channels``)."""

    def __init__(self, channels: int, bn: bool, bias: bool, cout: int | None = None) -> None:
        super().__init__()
        cout = channels if cout is None else cout
        self.conv = nn.Conv2D(channels, cout, 3, padding=1, bias_attr=None if bias else False)
        # PyTorch's BatchNorm2d defaults: eps 1e-5, momentum 0.1 (= Paddle momentum 0.9).
        self.bn = nn.BatchNorm2D(cout, momentum=0.9, epsilon=1e-5) if bn else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.relu(self.bn(self.conv(x)))


@MODELS.register
class DnCNN(nn.Layer):
    """DnCNN denoiser.

    Args:
        in_channels: 1 (grey) or 3 (colour); output has the same count.
        num_layers: total conv layers (17 for DnCNN-S, 20 for DnCNN-B).
        features: width of the hidden layers, or one width per hidden layer
            (``num_layers - 1`` values: the head's output, then each body layer's), as
            ``tools/prune.py`` writes for a channel-pruned network.
        bn: BatchNorm in the middle layers (False = BN folded into conv biases, KAIR).
        bias: convs have biases; default ``not bn`` (SaoYan: no biases with BN).
        zero_init_tail: start the last conv at zero, so the untrained network returns
            its input (predicted noise 0). Why: with the default init the predicted
            residual starts with unit variance, ~50x the sigma-25 noise power, and short
            CPU runs spend their first hundreds of steps undoing it. Architecture and
            checkpoints are unchanged.
    """

    pad_multiple = 1
    scale = 1
    in_channels = 1
    out_channels = 1

    def __init__(
        self,
        in_channels: int = 1,
        num_layers: int = 17,
        features: int | Sequence[int] = 64,
        bn: bool = True,
        bias: bool | None = None,
        zero_init_tail: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 3:
            raise ValueError(f"DnCNN needs at least 3 layers, got {num_layers}")
        bias = (not bn) if bias is None else bool(bias)
        b = None if bias else False
        self.in_channels = self.out_channels = int(in_channels)
        self.num_layers = int(num_layers)
        self.bn = bool(bn)
        if isinstance(features, (list, tuple)):
            w = [int(c) for c in features]
            if len(w) != num_layers - 1 or min(w) < 1:
                raise ValueError(
                    f"DnCNN: features as a list needs num_layers - 1 = {num_layers - 1} "
                    f"positive widths, got {list(features)}"
                )
        else:
            w = [int(features)] * (num_layers - 1)
        self.head = nn.Conv2D(in_channels, w[0], 3, padding=1, bias_attr=b)
        self.body = nn.Sequential(
            *[ConvBNReLU(w[i], bn, bias, cout=w[i + 1]) for i in range(num_layers - 2)]
        )
        self.tail = nn.Conv2D(w[-1], in_channels, 3, padding=1, bias_attr=b)
        self.relu = nn.ReLU()
        if zero_init_tail:
            self.tail.weight.set_value(paddle.zeros(self.tail.weight.shape))
            if self.tail.bias is not None:
                self.tail.bias.set_value(paddle.zeros(self.tail.bias.shape))

    def noise(self, x: paddle.Tensor) -> paddle.Tensor:
        """The predicted residual (noise), so that ``forward(x) == x - noise(x)``."""
        return self.tail(self.body(self.relu(self.head(x))))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x - self.noise(x)


def _strip_module(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def _conv_indices(state: Dict[str, np.ndarray], prefix: str) -> list:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    idx = sorted(int(m.group(1)) for k in state if (m := pat.match(k)) and np.ndim(state[k]) == 4)
    return idx


def _check_model(model: nn.Layer | None, n_conv: int, bn: bool, source: str) -> None:
    if model is None:
        return
    if getattr(model, "num_layers", n_conv) != n_conv or getattr(model, "bn", bn) != bn:
        raise ValueError(
            f"{source} checkpoint has {n_conv} conv layers (bn={bn}); build "
            f"DnCNN(num_layers={n_conv}, bn={bn}) to load it, not num_layers="
            f"{getattr(model, 'num_layers', '?')}, bn={getattr(model, 'bn', '?')} "
            f"(-o model.num_layers={n_conv} model.bn={str(bn).lower()})"
        )


def convert_dncnn_saoyan(
    state: Dict[str, np.ndarray], model: nn.Layer = None
) -> Dict[str, np.ndarray]:
    """SaoYan/DnCNN-PyTorch ``net.pth`` (``module.dncnn.N.*``, with BatchNorm) -> DnCNN(bn=True).

    Layout of ``dncnn``: 0 conv, 1 ReLU, then (conv, BN, ReLU) at 2+3i, 3+3i, 4+3i, last
    conv at ``3 * num_layers - 4``. ``num_batches_tracked`` is dropped.
    """
    state = _strip_module(state)
    convs = _conv_indices(state, "dncnn.")
    n = len(convs)
    expected = [0] + [2 + 3 * i for i in range(n - 2)] + [3 * n - 4]
    if n < 3 or convs != expected:
        raise KeyError(
            f"not a SaoYan DnCNN checkpoint: conv indices {convs[:6]}... (expected {expected[:6]}...)"
        )
    _check_model(model, n, True, "SaoYan DnCNN")
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    out = {
        "head.weight": f32(state["dncnn.0.weight"]),
        "tail.weight": f32(state[f"dncnn.{3 * n - 4}.weight"]),
    }
    bn_map = {
        "weight": "weight",
        "bias": "bias",
        "running_mean": "_mean",
        "running_var": "_variance",
    }
    used = {"dncnn.0.weight", f"dncnn.{3 * n - 4}.weight"}
    for i in range(n - 2):
        c, b = 2 + 3 * i, 3 + 3 * i
        out[f"body.{i}.conv.weight"] = f32(state[f"dncnn.{c}.weight"])
        used.add(f"dncnn.{c}.weight")
        for src, dst in bn_map.items():
            out[f"body.{i}.bn.{dst}"] = f32(state[f"dncnn.{b}.{src}"])
            used.add(f"dncnn.{b}.{src}")
        used.add(f"dncnn.{b}.num_batches_tracked")
    extra = sorted(set(state) - used)
    if extra:
        raise KeyError(f"SaoYan DnCNN checkpoint has unexpected keys: {extra[:8]}")
    return out


def convert_dncnn_kair(
    state: Dict[str, np.ndarray], model: nn.Layer = None
) -> Dict[str, np.ndarray]:
    """cszn/KAIR ``model_zoo/dncnn_*.pth`` (``model.N.*``, BN folded) -> DnCNN(bn=False).

    Layout of ``model``: conv+bias at 0, ReLU at 1, then conv+bias at 2, 4, ... with
    ReLUs between, final conv at ``2 * num_layers - 2``.
    """
    state = _strip_module(state)
    convs = _conv_indices(state, "model.")
    n = len(convs)
    expected = [2 * i for i in range(n)]
    if n < 3 or convs != expected:
        raise KeyError(
            f"not a KAIR DnCNN checkpoint: conv indices {convs[:6]}... (expected 0, 2, 4, ...)"
        )
    _check_model(model, n, False, "KAIR DnCNN")
    names = ["head"] + [f"body.{i}.conv" for i in range(n - 2)] + ["tail"]
    out, used = {}, set()
    for j, name in zip(expected, names):
        for p in ("weight", "bias"):
            out[f"{name}.{p}"] = np.asarray(state[f"model.{j}.{p}"], dtype=np.float32)
            used.add(f"model.{j}.{p}")
    extra = sorted(set(state) - used)
    if extra:
        raise KeyError(f"KAIR DnCNN checkpoint has unexpected keys: {extra[:8]}")
    return out


def _looks_saoyan(state: Dict[str, np.ndarray], container: str = "") -> bool:
    return len(_conv_indices(_strip_module(state), "dncnn.")) >= 3


def _looks_kair(state: Dict[str, np.ndarray], container: str = "") -> bool:
    return len(_conv_indices(_strip_module(state), "model.")) >= 3


# SaoYan/DnCNN-PyTorch ships its trained nets in the repo (legacy torch pickles, read
# torch-free by weights/torch_legacy.py). Pinned to a commit, so the checksums hold.
_SAOYAN = (
    "https://raw.githubusercontent.com/SaoYan/DnCNN-PyTorch/"
    "6b0804951484eadb7f1ea24e8e5c9ede9bea485b/logs/"
)

register_arch(
    Arch(
        name="dncnn",
        model="DnCNN",
        sources=(
            Source(
                "saoyan",
                convert_dncnn_saoyan,
                _looks_saoyan,
                url="https://github.com/SaoYan/DnCNN-PyTorch (logs/*/net.pth)",
            ),
            Source(
                "kair",
                convert_dncnn_kair,
                _looks_kair,
                implies={"bn": False},
                url="https://github.com/cszn/KAIR (model_zoo/dncnn_*.pth)",
            ),
        ),
        weights={
            # Trained here (tools/train.py, 2-core CPU); pretrained/README.md.
            "dncnn_s32_sigma25": {
                "file": "dncnn_s32_sigma25.pdparams",
                "config": "configs/dncnn/dncnn_s32_sigma25.yml",
                "sha256": "288bb12fd895c3224ce2afc95b2ea36376dfccd15c19be3893e8ae6abecfdf5e",
            },
            "dncnn_s_sigma15": {
                "url": _SAOYAN + "DnCNN-S-15/net.pth",
                "sha256": "6eaf743d87f977693ad2ab1e35b0d09c3c8bd87fb74b8ed2d659918bdba2cbd9",
                "config": "configs/dncnn/dncnn_s_sigma25.yml",
                "size_mb": 2.2,
            },
            "dncnn_s_sigma25": {
                "url": _SAOYAN + "DnCNN-S-25/net.pth",
                "sha256": "65f0f0ea16d667274a75a7eec19950b22e752007c8a3147831b2d5441bd62920",
                "config": "configs/dncnn/dncnn_s_sigma25.yml",
                "size_mb": 2.2,
            },
            "dncnn_s_sigma50": {
                "url": _SAOYAN + "DnCNN-S-50/net.pth",
                "sha256": "dfdd4d9b10e50d466a48f15f4aaa0ba0ccfa4b71fc80b5ccbcecddce8e69a50e",
                "config": "configs/dncnn/dncnn_s_sigma25.yml",
                "size_mb": 2.2,
            },
            "dncnn_b": {
                "url": _SAOYAN + "DnCNN-B/net.pth",
                "sha256": "dc25406eff05b9f4d1b30084a7a774e458e963f67d4a0ad1d2d9efbef4325b39",
                "config": "configs/dncnn/dncnn_b.yml",
                "model_kwargs": {"num_layers": 20},
                "size_mb": 2.7,
            },
        },
    )
)
