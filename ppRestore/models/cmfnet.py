"""CMFNet: Compound Multi-branch Feature Fusion for real image restoration.

Paper: Chi-Mao Fan, Tsung-Jung Liu, Kuan-Hsien Liu, "Compound Multi-branch Feature
Fusion for Real Image Restoration", arXiv:2206.02748 (2022); ICIP 2023 as "Compound
Multi-Branch Feature Fusion for Image Deraindrop". Official PyTorch code:
https://github.com/FanChiMao/CMFNet (``model/CMFNet.py``, ``model/block.py``).

The attention layers and blocks are in :mod:`ppRestore.models.cmfnet_blocks`, as the
official code keeps them in ``model/block.py``; this file is ``model/CMFNet.py``'s
counterpart (sampling, the three U-Nets, mixing, the model) plus its weight sources.

This is a layer-for-layer port: every sublayer sits under the same attribute name and
``nn.Sequential`` index as in the official code, so ``state_dict()`` keys equal the
official ones. The one naming difference is Paddle's ``nn.PReLU``, which stores its
slope as ``_weight`` where PyTorch has ``weight``; :func:`checkpoint_filter_fn` maps it.

Three U-Net branches (channel-, pixel- and spatial-attention blocks) each end in a
supervised attention module (SAM); their images are mixed by a learned factor and their
features concatenated into a tail conv. As in the official model, ONE ``PReLU`` layer
(one scalar parameter) is shared by the shallow-feature heads and every block body.

Differences from the official code, all numerically exact:

* ``nn.Upsample(scale_factor=0.5/2, mode='bilinear')`` are written as a 2x2 average pool
  and a fixed depthwise transposed conv (:mod:`ppRestore.models.layers.resample`), because
  Paddle Inference + oneDNN cannot run ``bilinear_interp``.
* In-place ``res += x`` becomes ``res = res + x`` (same values, autograd-safe in Paddle).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..registry import MODELS, Arch, Source, register_arch
from .cmfnet_blocks import BLOCKS, SAM, conv2d
from .layers.resample import BilinearDown2, BilinearUp2

# Blocks per encoder/decoder level (the official module-level ``bn = 2``).
BLOCKS_PER_LEVEL = 2


class DownSample(nn.Layer):
    """Bilinear 0.5x then a 1x1 conv to ``in_channels + s_factor`` channels."""

    def __init__(self, in_channels: int, s_factor: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            BilinearDown2(), conv2d(in_channels, in_channels + s_factor, 1, padding=0)
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.down(x)


class UpSample(nn.Layer):
    """Bilinear 2x then a 1x1 conv from ``in_channels + s_factor`` to ``in_channels``.

    Computed in the other order, conv first: the 2x bilinear upsample (replicate edges)
    and a bias-free 1x1 conv are both linear, one mixing only pixels and the other only
    channels, so they commute exactly (up to float rounding, ~1e-7). At low resolution
    the conv costs 4x less and the upsample moves ``in_channels`` instead of
    ``in_channels + s_factor`` channels. Parameter names (``up.1.weight``) are the
    official ones; ``up.0`` carries no parameters.
    """

    def __init__(self, in_channels: int, s_factor: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            BilinearUp2(in_channels),
            conv2d(in_channels + s_factor, in_channels, 1, padding=0),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.up[0](self.up[1](x))


class SkipUpSample(UpSample):
    """:class:`UpSample` followed by adding the skip connection ``y``."""

    def forward(self, x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:  # type: ignore[override]
        return self.up[0](self.up[1](x)) + y


def _level(
    block: str, channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Layer
) -> nn.Sequential:
    cls = BLOCKS[block]
    return nn.Sequential(
        *[
            cls(channels, kernel_size, reduction, bias=bias, act=act)
            for _ in range(BLOCKS_PER_LEVEL)
        ]
    )


class Encoder(nn.Layer):
    """Three-level encoder of one branch; returns the features of every level."""

    def __init__(
        self,
        n_feat: int,
        kernel_size: int,
        reduction: int,
        act: nn.Layer,
        bias: bool,
        scale_unetfeats: int,
        block: str,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        c1, c2, c3 = n_feat, n_feat + scale_unetfeats, n_feat + 2 * scale_unetfeats
        self.encoder_level1 = _level(block, c1, kernel_size, reduction, bias, act)
        self.encoder_level2 = _level(block, c2, kernel_size, reduction, bias, act)
        self.encoder_level3 = _level(block, c3, kernel_size, reduction, bias, act)
        self.down12 = DownSample(n_feat, scale_unetfeats)
        self.down23 = DownSample(n_feat + scale_unetfeats, scale_unetfeats)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        enc1 = self.encoder_level1(x)
        enc2 = self.encoder_level2(self.down12(enc1))
        enc3 = self.encoder_level3(self.down23(enc2))
        return [enc1, enc2, enc3]


class Decoder(nn.Layer):
    """Three-level decoder of one branch with attention-filtered skip connections."""

    def __init__(
        self,
        n_feat: int,
        kernel_size: int,
        reduction: int,
        act: nn.Layer,
        bias: bool,
        scale_unetfeats: int,
        block: str,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        c1, c2, c3 = n_feat, n_feat + scale_unetfeats, n_feat + 2 * scale_unetfeats
        self.decoder_level1 = _level(block, c1, kernel_size, reduction, bias, act)
        self.decoder_level2 = _level(block, c2, kernel_size, reduction, bias, act)
        self.decoder_level3 = _level(block, c3, kernel_size, reduction, bias, act)
        cls = BLOCKS[block]
        self.skip_attn1 = cls(c1, kernel_size, reduction, bias=bias, act=act)
        self.skip_attn2 = cls(c2, kernel_size, reduction, bias=bias, act=act)
        self.up21 = SkipUpSample(n_feat, scale_unetfeats)
        self.up32 = SkipUpSample(n_feat + scale_unetfeats, scale_unetfeats)

    def forward(self, outs: List[paddle.Tensor]) -> List[paddle.Tensor]:
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class Mix(nn.Layer):
    """Mixed skip connection: ``(1-s)/2 * a + s * b + (1-s)/2 * c`` with ``s = sigmoid(w)``."""

    def __init__(self, m: float = 1.0) -> None:
        super().__init__()
        self.w = self.create_parameter(
            shape=[1], dtype="float32", default_initializer=nn.initializer.Constant(float(m))
        )
        self.mix_block = nn.Sigmoid()

    def forward(
        self, fea1: paddle.Tensor, fea2: paddle.Tensor, fea3: paddle.Tensor
    ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        factor = self.mix_block(self.w)
        other = (1 - factor) / 2
        return fea1 * other + fea2 * factor + fea3 * other, factor


@MODELS.register
class CMFNet(nn.Layer):
    """CMFNet (Fan et al. 2022) with the official defaults.

    Args:
        in_channels: input channels.
        out_channels: output channels (the SAM heads predict 3-channel images, so keep 3).
        n_feat: base width.
        scale_unetfeats: channels added per U-Net level.
        kernel_size: conv kernel size.
        reduction: channel reduction of the CA/PA attention layers.
        bias: conv biases (the official models use none).
    """

    # Two 2x downsamplings need H, W % 4 == 0; the official demo pads to 8 (reflect).
    pad_multiple = 8
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        n_feat: int = 96,
        scale_unetfeats: int = 48,
        kernel_size: int = 3,
        reduction: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_c = in_channels
        self.out_channels = out_c = out_channels
        p_act = nn.PReLU()  # ONE slope shared by every branch, as in the official model
        self.shallow_feat1 = self._shallow(in_c, n_feat, kernel_size, bias, p_act)
        self.shallow_feat2 = self._shallow(in_c, n_feat, kernel_size, bias, p_act)
        self.shallow_feat3 = self._shallow(in_c, n_feat, kernel_size, bias, p_act)

        args = (n_feat, kernel_size, reduction, p_act, bias, scale_unetfeats)
        self.stage1_encoder = Encoder(*args, "CAB")
        self.stage1_decoder = Decoder(*args, "CAB")
        self.stage2_encoder = Encoder(*args, "PAB")
        self.stage2_decoder = Decoder(*args, "PAB")
        self.stage3_encoder = Encoder(*args, "SAB")
        self.stage3_decoder = Decoder(*args, "SAB")

        self.sam1o = SAM(n_feat, kernel_size=3, bias=bias)
        self.sam2o = SAM(n_feat, kernel_size=3, bias=bias)
        self.sam3o = SAM(n_feat, kernel_size=3, bias=bias)

        self.mix = Mix(1)
        self.add123 = conv2d(out_c, out_c, kernel_size, bias=bias)
        self.concat123 = conv2d(n_feat * 3, n_feat, kernel_size, bias=bias)
        self.tail = conv2d(n_feat, out_c, kernel_size, bias=bias)

    @staticmethod
    def _shallow(
        in_c: int, n_feat: int, kernel_size: int, bias: bool, act: nn.Layer
    ) -> nn.Sequential:
        return nn.Sequential(
            conv2d(in_c, n_feat // 2, kernel_size, bias=bias),
            act,
            conv2d(n_feat // 2, n_feat, kernel_size, bias=bias),
        )

    def forward(
        self, x: paddle.Tensor, return_aux: bool = False
    ) -> Union[paddle.Tensor, Dict[str, Any]]:
        """Restore ``x`` (``N x 3 x H x W``, H and W multiples of 4).

        Returns:
            The restored image (official ``output[0]``), or with ``return_aux=True`` a dict
            with ``out``, ``mixed_img``, ``mix_factor``, ``sam_imgs`` (three SAM images)
            and ``x_final`` (the tail's residual), the official outputs 0..6.
        """
        h, w = x.shape[-2], x.shape[-1]
        # Static-graph export sees -1 for dynamic sizes; only check known ones. Odd
        # sizes would make the skip connections misalign deep inside the U-Nets.
        if any(isinstance(s, int) and s > 0 and s % 4 for s in (h, w)):
            raise ValueError(
                f"CMFNet needs H and W divisible by 4, got {h}x{w}; pad the input "
                f"(the predictor pads to multiples of {self.pad_multiple})"
            )
        feats, imgs = [], []
        branches = (
            (self.shallow_feat1, self.stage1_encoder, self.stage1_decoder, self.sam1o),
            (self.shallow_feat2, self.stage2_encoder, self.stage2_decoder, self.sam2o),
            (self.shallow_feat3, self.stage3_encoder, self.stage3_decoder, self.sam3o),
        )
        for shallow, encoder, decoder, sam in branches:
            dec = decoder(encoder(shallow(x)))
            feat, img = sam(dec[0], x)
            feats.append(feat)
            imgs.append(img)

        mixed, factor = self.mix(*imgs)
        mixed_img = self.add123(mixed)
        x_final = self.tail(self.concat123(paddle.concat(feats, axis=1)))
        out = x_final + mixed_img
        if not return_aux:
            return out
        return {
            "out": out,
            "mixed_img": mixed_img,
            "mix_factor": factor,
            "sam_imgs": imgs,
            "x_final": x_final,
        }


def count_parameters(model: nn.Layer) -> int:
    """Number of distinct trainable scalars (a shared parameter counts once)."""
    seen, total = set(), 0
    for p in model.parameters():  # Layer.parameters() already de-duplicates shared ones
        if id(p) not in seen:
            seen.add(id(p))
            total += int(np.prod(p.shape))
    return total


def checkpoint_filter_fn(state: Dict[str, np.ndarray], model: nn.Layer) -> Dict[str, np.ndarray]:
    """Map an official CMFNet (PyTorch) state dict onto :class:`CMFNet`'s keys.

    Only PReLU slopes differ in name (``weight`` -> ``_weight``); a key is renamed only
    where the Paddle model has ``_weight`` and no ``weight`` under that prefix, so the
    rule is read from the model rather than guessed from names. Everything else is equal as
    is: ``Conv2d`` weights are ``[out, in, kH, kW]`` in both frameworks, the model has no
    ``Linear`` (whose layout would be transposed), no BatchNorm, and ``mix.w`` is ``[1]``.
    The shared PReLU appears under many keys; :func:`safe_load.load_state_dict` checks
    that they agree.
    """
    # Walk the model's state_dict, not named_sublayers(): the latter de-duplicates the
    # shared PReLU and would report only its first name.
    model_keys = set(model.state_dict().keys())
    out: Dict[str, np.ndarray] = {}
    for k, v in state.items():
        if k.endswith(".weight") and k not in model_keys:
            renamed = k[: -len("weight")] + "_weight"
            if renamed in model_keys:
                k = renamed
        out[k] = v
    return out


def looks_official(state: Dict[str, np.ndarray], container: str = "") -> bool:
    """An official CMFNet state dict has the three shallow-feature branches and SAM heads."""
    return any(k.startswith("shallow_feat1.") for k in state) and any(
        k.startswith("sam3o.") for k in state
    )


_RELEASE = "https://github.com/FanChiMao/CMFNet/releases/download/v0.0/"

# Official weights (train.py saves {'epoch', 'state_dict' with 'module.' keys, 'optimizer'}:
# ~197.5 MB each because Adam's two moments ride along). Each URL is a one-line edit.
register_arch(
    Arch(
        name="cmfnet",
        model="CMFNet",
        sources=(
            Source(
                "official",
                checkpoint_filter_fn,
                looks_official,
                url="https://github.com/FanChiMao/CMFNet (release v0.0)",
            ),
        ),
        weights={
            "cmfnet_deblur": {
                "url": _RELEASE + "deblur_GoPro_CMFNet.pth",
                "config": "configs/cmfnet/cmfnet_deblur.yml",
                "size_mb": 197.5,
            },
            "cmfnet_dehaze": {
                "url": _RELEASE + "dehaze_I_OHaze_CMFNet.pth",
                "config": "configs/cmfnet/cmfnet_dehaze.yml",
                "size_mb": 197.5,
            },
            "cmfnet_deraindrop": {
                "url": _RELEASE + "deraindrop_DeRainDrop_CMFNet.pth",
                "config": "configs/cmfnet/cmfnet_deraindrop.yml",
                "size_mb": 197.5,
            },
        },
    )
)
