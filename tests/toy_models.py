"""Tiny test-only networks registered under ``_Toy*`` names (never shipped in configs).

They follow the model contract (docs/design.md): ``N x C x H x W`` float32 in [0, 1] in
and out, class attributes ``pad_multiple``, ``scale``, ``in_channels``,
``out_channels``. Each one exercises one thing the predictor must get right.
"""

from __future__ import annotations

import time

# isort: off
import ppRestore  # noqa: F401  (first: on Paddle 2.x it loads the image codecs before Paddle)
import paddle
import paddle.nn.functional as F
from paddle import nn

# isort: on

from ppRestore.registry import MODELS
from tests.helpers import register_once


def _register(cls):
    # Idempotent: tests and the CLI subprocess may import this module more than once.
    register_once(MODELS, cls)
    return cls


@_register
class _ToyCNN(nn.Layer):
    """Three 3x3 convs with a residual: receptive-field radius 3, any size."""

    pad_multiple = 1
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(self, channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.c1 = nn.Conv2D(channels, width, 3, padding=1)
        self.c2 = nn.Conv2D(width, width, 3, padding=1)
        self.c3 = nn.Conv2D(width, channels, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + 0.1 * self.c3(F.relu(self.c2(F.relu(self.c1(x)))))


@_register
class _ToyDownUp(nn.Layer):
    """Down x2 (avg-pool) twice and back up (depthwise transposed conv): needs H, W
    multiples of 4 and refuses anything else, like a U-Net would fail."""

    pad_multiple = 4
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.inc = nn.Conv2D(3, width, 3, padding=1)
        self.mid = nn.Conv2D(width, width, 3, padding=1)
        self.up = nn.Conv2DTranspose(width, width, 2, stride=2, groups=width)
        self.out = nn.Conv2D(width, 3, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        f = F.relu(self.inc(x))
        d = F.avg_pool2d(F.avg_pool2d(f, 2), 2)
        d = F.relu(self.mid(d))
        u = self.up(self.up(d))
        return x + 0.1 * self.out(u + f)


@_register
class _ToySlowDownUp(_ToyDownUp):
    """``_ToyDownUp`` (same weights) that sleeps in every forward, so a restore takes
    long enough for a GUI test to see the event loop turning during the job, whatever
    the machine's speed (``time.sleep`` releases the GIL, like a real convolution)."""

    delay_s = 0.05

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        time.sleep(self.delay_s)
        return super().forward(x)


@_register
class _ToySR(nn.Layer):
    """x2 super-resolution with PixelShuffle (output twice the size)."""

    pad_multiple = 1
    scale = 2
    in_channels = 3
    out_channels = 3

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.c1 = nn.Conv2D(3, width, 3, padding=1)
        self.c2 = nn.Conv2D(width, 3 * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.shuffle(self.c2(F.relu(self.c1(x))))


@_register
class _ToyIdentity(nn.Layer):
    """Returns its input (plus 0 x a parameter, so it has weights to load)."""

    pad_multiple = 8
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.w = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.shape[2] % 8 or x.shape[3] % 8:
            raise ValueError(f"_ToyIdentity needs multiples of 8, got {x.shape}")
        return x + self.w * x


@_register
class _ToySymmetric(nn.Layer):
    """Flip/rotation-equivariant: a fixed symmetric 3x3 blur per channel, a pointwise
    non-linearity and a learnt per-channel 1x1 mix. Self-ensemble must change nothing."""

    pad_multiple = 1
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(self) -> None:
        super().__init__()
        k = paddle.to_tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
        self.register_buffer("kernel", k.reshape([1, 1, 3, 3]).tile([3, 1, 1, 1]))
        self.mix = nn.Conv2D(3, 3, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        b = F.conv2d(x, self.kernel, padding=1, groups=3)
        return self.mix(F.sigmoid(4.0 * (b - 0.5)))
