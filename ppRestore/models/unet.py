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

from typing import List, Sequence

import paddle
from paddle import nn

from ..registry import MODELS, Arch, register_arch

__all__ = ["UNet"]


class DoubleConv(nn.Sequential):
    """(3x3 conv + ReLU) x 2."""

    def __init__(self, cin: int, cout: int, cout2: int | None = None) -> None:
        # cout2: the second conv's width when it differs (a channel-pruned network)
        super().__init__(
            nn.Conv2D(cin, cout, 3, padding=1),
            nn.ReLU(),
            nn.Conv2D(cout, cout if cout2 is None else cout2, 3, padding=1),
            nn.ReLU(),
        )


class Down(nn.Sequential):
    """Stride-2 2x2 conv that doubles the width."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2D(cin, cout, 2, stride=2), nn.ReLU())


class Up(nn.Layer):
    """Transposed-conv upsampling, skip concatenation, DoubleConv."""

    def __init__(
        self,
        cin: int,
        cout: int,
        skip: int | None = None,
        mid: int | None = None,
        out: int | None = None,
    ) -> None:
        # skip/mid/out default to cout (the plain U-Net); a pruned one sets them apart
        super().__init__()
        self.up = nn.Conv2DTranspose(cin, cout, 2, stride=2)
        skip = cout if skip is None else skip
        self.conv = DoubleConv(cout + skip, cout if mid is None else mid, out)

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
        widths: optional per-conv output widths (``tools/prune.py`` writes them for a
            channel-pruned network), in this order: the head's two convs; per level the
            down conv and the two encoder convs; per decoder stage (deepest first) the
            transposed conv and the two convs after the concatenation;
            ``2 + 6 * depth`` values. Default: ``base_channels * 2**level`` everywhere.
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
        widths: Sequence[int] | None = None,
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
        lv = [base_channels * 2**i for i in range(depth + 1)]
        if widths is None:
            w = [lv[0], lv[0]]
            w += [lv[i + 1] for i in range(depth) for _ in range(3)]
            w += [lv[i] for i in reversed(range(depth)) for _ in range(3)]
        else:
            w = [int(c) for c in widths]
            if len(w) != 2 + 6 * depth or min(w) < 1:
                raise ValueError(
                    f"UNet: widths needs 2 + 6 * depth = {2 + 6 * depth} positive values, got {list(widths)}"
                )
        self.head = DoubleConv(in_channels, w[0], w[1])
        enc_w = [w[2 + 3 * i : 5 + 3 * i] for i in range(depth)]  # down, conv, conv
        dec_w = [w[2 + 3 * depth + 3 * j : 5 + 3 * depth + 3 * j] for j in range(depth)]
        skip = [w[1]] + [e[2] for e in enc_w[:-1]]  # channels of each level's skip
        prev = [w[1]] + [e[2] for e in enc_w]
        self.downs = nn.LayerList([Down(prev[i], enc_w[i][0]) for i in range(depth)])
        self.enc = nn.LayerList([DoubleConv(e[0], e[1], e[2]) for e in enc_w])
        ups, cin = [], enc_w[-1][2]
        for j, i in enumerate(reversed(range(depth))):
            ups.append(Up(cin, dec_w[j][0], skip[i], dec_w[j][1], dec_w[j][2]))
            cin = dec_w[j][2]
        self.ups = nn.LayerList(ups)
        self.tail = nn.Conv2D(cin, out_channels, 3, padding=1)

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
