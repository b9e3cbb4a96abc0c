"""CMFNet's attention layers and blocks (the official ``model/block.py``).

Split from :mod:`ppRestore.models.cmfnet` the way the official code is split: this file
holds what the official ``model/block.py`` does (the ``conv`` helper, the supervised
attention module SAM, the spatial/pixel/channel attention layers and their residual
blocks SAB/PAB/CAB), so each Paddle file can be read side by side with its PyTorch
counterpart; :mod:`ppRestore.models.cmfnet` keeps the U-Nets, the mixing and the model
(``model/CMFNet.py``). Attribute names and order follow the official code: they make the
``state_dict`` keys. Paper and differences from the official code: see
:mod:`ppRestore.models.cmfnet`.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import paddle
import paddle.nn as nn

__all__ = ["conv2d", "SAM", "SALayer", "PALayer", "CALayer", "CAB", "PAB", "SAB", "BLOCKS"]


def _torch_default_init(fan_in: int) -> nn.initializer.Initializer:
    # PyTorch's Conv2d default, kaiming_uniform(a=sqrt(5)), is U(-1/sqrt(fan_in), +...):
    # matching it keeps from-scratch training comparable to the official recipe.
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return nn.initializer.Uniform(-bound, bound)


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    bias: bool = False,
    stride: int = 1,
    padding: Union[int, None] = None,
) -> nn.Conv2D:
    """``Conv2D`` with "same" padding and PyTorch-default initialisation (official ``conv``)."""
    fan_in = in_channels * kernel_size * kernel_size
    init = _torch_default_init(fan_in)
    return nn.Conv2D(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2 if padding is None else padding,
        weight_attr=paddle.ParamAttr(initializer=init),
        bias_attr=paddle.ParamAttr(initializer=_torch_default_init(fan_in)) if bias else False,
    )


class SAM(nn.Layer):
    """Supervised attention module: predicts an image and gates the features with it."""

    def __init__(self, n_feat: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = conv2d(n_feat, n_feat, kernel_size, bias=bias)
        self.conv2 = conv2d(n_feat, 3, kernel_size, bias=bias)
        self.conv3 = conv2d(3, n_feat, kernel_size, bias=bias)

    def forward(
        self, x: paddle.Tensor, x_img: paddle.Tensor
    ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        x1 = self.conv1(x)
        img = self.conv2(x) + x_img
        x2 = paddle.nn.functional.sigmoid(self.conv3(img))
        return x1 * x2 + x, img


class SALayer(nn.Layer):
    """Spatial attention: a conv over the channel-mean and channel-max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = conv2d(2, 1, kernel_size, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        avg_out = paddle.mean(x, axis=1, keepdim=True)
        max_out = paddle.max(x, axis=1, keepdim=True)
        y = self.sigmoid(self.conv1(paddle.concat([avg_out, max_out], axis=1)))
        return x * y


class PALayer(nn.Layer):
    """Pixel attention: a per-pixel, per-channel gate from two 1x1 convs."""

    def __init__(self, channel: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        self.pa = nn.Sequential(
            conv2d(channel, channel // reduction, 1, bias=bias, padding=0),
            nn.ReLU(),
            conv2d(channel // reduction, channel, 1, bias=bias, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.pa(x)


class CALayer(nn.Layer):
    """Channel attention (squeeze-and-excitation)."""

    def __init__(self, channel: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv_du = nn.Sequential(
            conv2d(channel, channel // reduction, 1, bias=bias, padding=0),
            nn.ReLU(),
            conv2d(channel // reduction, channel, 1, bias=bias, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.conv_du(self.avg_pool(x))


def _body(n_feat: int, kernel_size: int, bias: bool, act: nn.Layer) -> nn.Sequential:
    # ``act`` is the model-wide shared PReLU: passing the same Layer object keeps it one
    # parameter that appears under several state_dict keys, as in the official model.
    return nn.Sequential(
        conv2d(n_feat, n_feat, kernel_size, bias=bias),
        act,
        conv2d(n_feat, n_feat, kernel_size, bias=bias),
    )


class CAB(nn.Layer):
    """Channel attention block: conv-act-conv, channel attention, residual."""

    def __init__(
        self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Layer
    ) -> None:
        super().__init__()
        # Attribute order follows the official code (CA before body) so state_dict order matches.
        self.CA = CALayer(n_feat, reduction, bias=bias)
        self.body = _body(n_feat, kernel_size, bias, act)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.CA(self.body(x)) + x


class PAB(nn.Layer):
    """Pixel attention block: conv-act-conv, pixel attention, residual."""

    def __init__(
        self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Layer
    ) -> None:
        super().__init__()
        self.PA = PALayer(n_feat, reduction, bias=bias)
        self.body = _body(n_feat, kernel_size, bias, act)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.PA(self.body(x)) + x


class SAB(nn.Layer):
    """Spatial attention block: conv-act-conv, spatial attention, residual.

    ``reduction`` is unused (as in the official code); it keeps the block signatures equal.
    """

    def __init__(
        self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Layer
    ) -> None:
        super().__init__()
        self.body = _body(n_feat, kernel_size, bias, act)
        self.SA = SALayer(kernel_size=7)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.SA(self.body(x)) + x


BLOCKS = {"CAB": CAB, "PAB": PAB, "SAB": SAB}
