"""U-Net denoiser.

Paper: O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015. Used for image restoration with a residual output as in
Lehtinen et al., "Noise2Noise: Learning Image Restoration without Clean Data", ICML 2018,
and DRUNet (Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser Prior",
TPAMI 2021), whose strided-conv down / transposed-conv up sampling we follow.

Encoder: ``depth`` levels of (3x3 conv + ReLU) x 2 followed by a 2x2 stride-2 conv
downsampling (learned, rather than max-pooling, which throws away the fine detail a
denoiser needs); the width doubles per level. Decoder: 2x2 stride-2 transposed conv,
concatenation with the skip, (3x3 conv + ReLU) x 2. A 3x3 conv maps to ``out_channels``.
With ``residual=True`` (needs ``in_channels == out_channels``) the network predicts a
correction added to the input. Input H and W must be multiples of ``2**depth``
(``pad_multiple``); the predictor pads.
"""

from __future__ import annotations

from typing import List

import paddle
from paddle import nn

from ..registry import MODELS, Arch, register_arch

__all__ = ["UNet"]


class DoubleConv(nn.Sequential):
    """(3x3 conv + ReLU) x 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2D(cin, cout, 3, padding=1),
            nn.ReLU(),
            nn.Conv2D(cout, cout, 3, padding=1),
            nn.ReLU(),
        )


class Down(nn.Sequential):
    """Stride-2 2x2 conv that doubles the width."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2D(cin, cout, 2, stride=2), nn.ReLU())


class Up(nn.Layer):
    """Transposed-conv upsampling, skip concatenation, DoubleConv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Conv2DTranspose(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout)

    def forward(self, x: paddle.Tensor, skip: paddle.Tensor) -> paddle.Tensor:
        return self.conv(paddle.concat([self.up(x), skip], axis=1))


@MODELS.register
class UNet(nn.Layer):
    """Residual U-Net for denoising (any channel counts).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        base_channels: width of the first level (doubles per level).
        depth: number of downsamplings; ``pad_multiple = 2**depth``.
        residual: add the input to the output (requires equal channel counts).
    """

    pad_multiple = 16
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 32,
        depth: int = 4,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1, got {depth}")
        if residual and in_channels != out_channels:
            raise ValueError(
                f"UNet residual=True adds the input to the output, which needs in_channels "
                f"== out_channels (got {in_channels} -> {out_channels}); set residual=False"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.depth = int(depth)
        self.pad_multiple = 2**self.depth
        self.residual = bool(residual)
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.head = DoubleConv(in_channels, widths[0])
        self.downs = nn.LayerList([Down(widths[i], widths[i + 1]) for i in range(depth)])
        self.enc = nn.LayerList([DoubleConv(widths[i + 1], widths[i + 1]) for i in range(depth)])
        self.ups = nn.LayerList([Up(widths[i + 1], widths[i]) for i in reversed(range(depth))])
        self.tail = nn.Conv2D(widths[0], out_channels, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        feat = self.head(x)
        skips: List[paddle.Tensor] = []
        for down, enc in zip(self.downs, self.enc):
            skips.append(feat)
            feat = enc(down(feat))
        for up, skip in zip(self.ups, reversed(skips)):
            feat = up(feat, skip)
        out = self.tail(feat)
        return x + out if self.residual else out


register_arch(
    Arch(
        name="unet",
        model="UNet",
        weights={
            # Trained here (tools/train.py, 40 min on a 2-core CPU); pretrained/README.md.
            "demo_color_denoise": {
                "file": "unet_color_denoise_s25.pdparams",
                "config": "configs/demo.yml",
                "sha256": "4ad169aa67dc66df514bbf52b75bed7ad40393634c72c9015a682059fc76beba",
            },
        },
    )
)
