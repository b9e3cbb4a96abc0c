"""Training losses (registered in :data:`ppRestore.registry.LOSSES`).

Every loss is a ``paddle.nn.Layer`` called as ``loss(pred, target)``; a loss that needs
a model's intermediate outputs sets ``needs_aux = True`` and is called as
``loss(pred, target, aux)`` with the dict ``model(x, return_aux=True)`` returned.
Several losses combine PaddleSeg-style::

    loss:
      types: [{type: CharbonnierLoss}, {type: EdgeLoss}]
      coef: [1.0, 0.05]

References: Charbonnier/Edge loss as in MPRNet (Zamir et al., CVPR 2021) and CMFNet
(Fan et al., "Compound Multi-branch Feature Fusion for Real Image Restoration", 2022);
PSNR loss as in HINet (Chen et al., CVPRW 2021); SSIM per Wang et al., IEEE TIP 2004;
perceptual loss per Johnson et al., ECCV 2016.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .registry import LOSSES

__all__ = [
    "MSELoss",
    "L1Loss",
    "CharbonnierLoss",
    "PSNRLoss",
    "SSIMLoss",
    "EdgeLoss",
    "PerceptualLoss",
    "CMFNetLoss",
    "CombinedLoss",
    "build_loss",
]


class _Loss(nn.Layer):
    """Base: ``needs_aux`` tells the trainer whether to ask the model for its aux dict."""

    needs_aux = False


def _crop_pair(
    pred: paddle.Tensor, target: paddle.Tensor, border: int
) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Drop ``border`` pixels on every side of both NCHW tensors (no-op for 0)."""
    if border <= 0:
        return pred, target
    h, w = pred.shape[-2], pred.shape[-1]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"loss crop_border={border} leaves nothing of a {h}x{w} patch")
    return (
        pred[..., border : h - border, border : w - border],
        target[..., border : h - border, border : w - border],
    )


class _PixelLoss(_Loss):
    """A per-pixel loss that can leave a patch's outer ``crop_border`` pixels out.

    Why: with 'same' zero padding, the outer pixels of a small training patch see the
    padding (6 px for SRCNN 9-1-5, half of a 40x40 patch), so the filters learn a
    compromise between real edges and the artificial edge to zero. The SRCNN paper
    avoids it by training valid convolutions and taking the loss on the centre only;
    ``crop_border`` = the receptive radius does the same for a 'same'-padded model.
    """

    def __init__(self, crop_border: int = 0) -> None:
        super().__init__()
        self.crop_border = int(crop_border)

    def _crop(self, pred: paddle.Tensor, target: paddle.Tensor) -> tuple:
        return _crop_pair(pred, target, self.crop_border)


@LOSSES.register
class MSELoss(_PixelLoss):
    """Mean squared error.

    Args:
        crop_border: pixels dropped on every side before the mean (see ``_PixelLoss``).
    """

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return F.mse_loss(*self._crop(pred, target))


@LOSSES.register
class L1Loss(_PixelLoss):
    """Mean absolute error.

    Args:
        crop_border: pixels dropped on every side before the mean.
    """

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return F.l1_loss(*self._crop(pred, target))


@LOSSES.register
class CharbonnierLoss(_PixelLoss):
    """``mean(sqrt((pred - target)^2 + eps^2))``, a smooth L1 (MPRNet/CMFNet, eps=1e-3).

    Args:
        eps: smoothing constant.
        crop_border: pixels dropped on every side before the mean.
    """

    def __init__(self, eps: float = 1e-3, crop_border: int = 0) -> None:
        super().__init__(crop_border)
        self.eps = eps

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        pred, target = self._crop(pred, target)
        diff = pred - target
        return paddle.mean(paddle.sqrt(diff * diff + self.eps * self.eps))


@LOSSES.register
class PSNRLoss(_Loss):
    """Negative PSNR (HINet): ``(10/ln 10) * mean_n log(MSE_n + 1e-8)``, i.e. ``-PSNR``
    in dB for images in [0, 1]; minimising it maximises PSNR.

    Args:
        to_y: compare the BT.601 Y channel (HINet's ``toY``).
    """

    def __init__(self, to_y: bool = False) -> None:
        super().__init__()
        self.scale = 10.0 / math.log(10.0)
        self.to_y = to_y

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        if self.to_y:
            coef = paddle.to_tensor([65.481, 128.553, 24.966], dtype=pred.dtype).reshape(
                [1, 3, 1, 1]
            )
            pred = ((pred * coef).sum(axis=1, keepdim=True) + 16.0) / 255.0
            target = ((target * coef).sum(axis=1, keepdim=True) + 16.0) / 255.0
        mse = ((pred - target) ** 2).mean(axis=[1, 2, 3])
        return self.scale * paddle.log(mse + 1e-8).mean()


def _gaussian_kernel2d(size: int, sigma: float) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(ax**2) / (2.0 * sigma**2))
    g /= g.sum()
    return np.outer(g, g).astype(np.float32)


@LOSSES.register
class SSIMLoss(_Loss):
    """``mean(clamp(1 - SSIM_map, 0, 1) / 2)`` with an 11x11 Gaussian window (sigma 1.5)
    and zero 'same' padding -- the SSIM loss CMFNet trains with (its ``losses.SSIMLoss``).

    Args:
        window_size: odd Gaussian window size.
        max_val: dynamic range of the images (1.0 for [0, 1]).
    """

    def __init__(self, window_size: int = 11, max_val: float = 1.0) -> None:
        super().__init__()
        if window_size % 2 == 0 or window_size <= 0:
            raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
        self.window_size = window_size
        self.c1 = (0.01 * max_val) ** 2
        self.c2 = (0.03 * max_val) ** 2
        self._kernel = _gaussian_kernel2d(window_size, 1.5)

    def _filter(self, x: paddle.Tensor, kernel: paddle.Tensor, c: int) -> paddle.Tensor:
        return F.conv2d(x, kernel, padding=(self.window_size - 1) // 2, groups=c)

    def ssim_map(self, a: paddle.Tensor, b: paddle.Tensor) -> paddle.Tensor:
        c = a.shape[1]
        kernel = paddle.to_tensor(np.tile(self._kernel[None, None], (c, 1, 1, 1)), dtype=a.dtype)
        mu1, mu2 = self._filter(a, kernel, c), self._filter(b, kernel, c)
        mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
        s1 = self._filter(a * a, kernel, c) - mu1_sq
        s2 = self._filter(b * b, kernel, c) - mu2_sq
        s12 = self._filter(a * b, kernel, c) - mu12
        return ((2 * mu12 + self.c1) * (2 * s12 + self.c2)) / (
            (mu1_sq + mu2_sq + self.c1) * (s1 + s2 + self.c2)
        )

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return paddle.mean(paddle.clip(1.0 - self.ssim_map(pred, target), 0.0, 1.0) / 2.0)


@LOSSES.register
class EdgeLoss(_Loss):
    """Charbonnier distance between Laplacian-pyramid detail layers (MPRNet, CMFNet).

    The detail layer is ``x - G(up(down(G(x))))`` with the 5-tap binomial-like kernel
    ``[.05, .25, .4, .25, .05]`` and replicate padding; upsampling inserts zeros and
    multiplies by 4 to keep the energy.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        k = np.array([[0.05, 0.25, 0.4, 0.25, 0.05]], dtype=np.float32)
        self._k2 = (k.T @ k).astype(np.float32)
        self.charbonnier = CharbonnierLoss(eps)

    def _conv_gauss(self, img: paddle.Tensor) -> paddle.Tensor:
        c = img.shape[1]
        kernel = paddle.to_tensor(np.tile(self._k2[None, None], (c, 1, 1, 1)), dtype=img.dtype)
        img = F.pad(img, [2, 2, 2, 2], mode="replicate")
        return F.conv2d(img, kernel, groups=c)

    def laplacian(self, x: paddle.Tensor) -> paddle.Tensor:
        filtered = self._conv_gauss(x)
        h, w = filtered.shape[2], filtered.shape[3]
        mask = np.zeros((1, 1, h, w), dtype=np.float32)
        mask[:, :, ::2, ::2] = 4.0
        up = filtered * paddle.to_tensor(mask, dtype=x.dtype)
        return x - self._conv_gauss(up)

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return self.charbonnier(self.laplacian(pred), self.laplacian(target))


# VGG19 ``features`` indices of the named activations (torchvision/paddle layout).
_VGG19_LAYERS = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
    "conv5_4": 34,
}  # fmt: skip


@LOSSES.register
class PerceptualLoss(_Loss):
    """L1 distance of VGG19 features (Johnson et al., ECCV 2016).

    The VGG19 is built with ``pretrained=False`` and its weights come only from the
    local file ``vgg_weights`` (read through :mod:`ppRestore.weights.safe_load`): training
    never downloads anything. Only the ``features`` layers up to the deepest requested one
    are kept; the file may hold the whole network (extra keys are ignored).

    Args:
        vgg_weights: path to VGG19 ImageNet weights (.pdparams/.safetensors, paddle key names).
        layers: mapping of layer name (``relu1_1`` ... ``relu5_4``, ``conv5_4``) to weight.
        normalize: apply ImageNet mean/std to inputs in [0, 1].
    """

    def __init__(
        self,
        vgg_weights: str | None = None,
        layers: Dict[str, float] | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if not vgg_weights:
            raise ValueError(
                "PerceptualLoss needs 'vgg_weights: /path/to/vgg19.pdparams' (ImageNet VGG19 "
                "weights in paddle key names); ppRestore never downloads them"
            )
        if not os.path.isfile(vgg_weights):
            raise FileNotFoundError(f"PerceptualLoss: vgg_weights file not found: {vgg_weights}")
        from paddle.vision.models import vgg19

        from .weights.safe_load import load_state_dict, load_weights

        self.layers = dict(layers or {"relu5_4": 1.0})
        for name in self.layers:
            if name not in _VGG19_LAYERS:
                raise ValueError(f"unknown VGG19 layer '{name}'; known: {', '.join(_VGG19_LAYERS)}")
        last = max(_VGG19_LAYERS[n] for n in self.layers)
        full = vgg19(pretrained=False, num_classes=0)
        self.features = nn.Sequential(*list(full.features.children())[: last + 1])
        state = load_weights(vgg_weights)
        want = {}
        for k, v in state.items():
            if k.startswith("features."):
                idx = int(k.split(".")[1])
                if idx <= last:
                    want[k[len("features.") :]] = v
        load_state_dict(self.features, want, strict=True, source=vgg_weights)
        for p in self.features.parameters():
            p.stop_gradient = True
        self.features.eval()
        self.normalize = normalize
        self._idx = {_VGG19_LAYERS[n]: w for n, w in self.layers.items()}

    def _feats(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        if self.normalize:
            mean = paddle.to_tensor([0.485, 0.456, 0.406], dtype=x.dtype).reshape([1, 3, 1, 1])
            std = paddle.to_tensor([0.229, 0.224, 0.225], dtype=x.dtype).reshape([1, 3, 1, 1])
            x = (x - mean) / std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._idx:
                out.append((i, x))
        return out

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        fp = self._feats(pred)
        with paddle.no_grad():
            ft = self._feats(target)
        total = 0.0
        for (i, a), (_, b) in zip(fp, ft):
            total = total + self._idx[i] * F.l1_loss(a, b.detach())
        return total


@LOSSES.register
class CMFNetLoss(_Loss):
    """CMFNet's official training loss: ``SSIMLoss(out, gt) / (PSNR(out, gt) + 0.005)``.

    Verified against the official ``train.py``: ``loss = SSIM_loss(restored[0], target) /
    (PSNR_loss(restored[0], target) + 0.005)``, where their ``PSNRLoss`` returns the
    *positive* PSNR in dB (HINet's loss negated) and their ``SSIMLoss`` is
    :class:`SSIMLoss` here; ``restored[0]`` is the final output (the model's ``forward``
    result). Their Edge-loss term is commented out in ``train.py`` and is not included.
    """

    def __init__(self, eps: float = 0.005) -> None:
        super().__init__()
        self.ssim = SSIMLoss()
        self.psnr = PSNRLoss()
        self.eps = eps

    def forward(self, pred: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return self.ssim(pred, target) / (-self.psnr(pred, target) + self.eps)


class CombinedLoss(nn.Layer):
    """Weighted sum of losses; returns the total and each term (for logging)."""

    def __init__(
        self, losses: Sequence[nn.Layer], coef: Sequence[float], names: Sequence[str]
    ) -> None:
        super().__init__()
        if len(losses) != len(coef):
            raise ValueError(f"loss: {len(losses)} types but {len(coef)} coef values")
        self.losses = nn.LayerList(list(losses))
        self.coef = [float(c) for c in coef]
        self.names = list(names)

    @property
    def needs_aux(self) -> bool:
        return any(getattr(loss, "needs_aux", False) for loss in self.losses)

    def forward(
        self, pred: paddle.Tensor, target: paddle.Tensor, aux: Dict[str, Any] | None = None
    ) -> tuple:
        total = 0.0
        terms: Dict[str, paddle.Tensor] = {}
        for name, loss, c in zip(self.names, self.losses, self.coef):
            val = (
                loss(pred, target, aux) if getattr(loss, "needs_aux", False) else loss(pred, target)
            )
            terms[name] = val
            total = total + c * val
        return total, terms


def build_loss(loss_cfg: Dict[str, Any] | None) -> CombinedLoss:
    """Build from ``{types: [{type: ...}, ...], coef: [...]}`` (or a single ``{type: ...}``)."""
    if not loss_cfg:
        loss_cfg = {"types": [{"type": "L1Loss"}], "coef": [1.0]}
    if "type" in loss_cfg:
        loss_cfg = {"types": [loss_cfg], "coef": [1.0]}
    types = loss_cfg.get("types")
    if not isinstance(types, list) or not types:
        raise ValueError("loss: 'types' must be a non-empty list of {type: ...} entries")
    coef = loss_cfg.get("coef", [1.0] * len(types))
    names, seen = [], {}
    for t in types:
        n = t.get("type", "?")
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return CombinedLoss([LOSSES.build(t) for t in types], coef, names)
