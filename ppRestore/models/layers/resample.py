"""Exact 2x bilinear resampling without the ``bilinear_interp`` op.

Why: Paddle Inference 3.3.1 with oneDNN (new IR) fails on ``bilinear_interp``, and
several ported models (CMFNet, after MPRNet) resample by exactly 2 with
``align_corners=False``. Both directions reduce to fixed small linear filters:

* **0.5x** (half-pixel centres): output ``i`` samples source ``2i + 0.5``, i.e. the mean
  of pixels ``2i`` and ``2i + 1`` on each axis -> a 2x2 average pool, stride 2.
* **2x**: output ``2k`` is ``0.25 x[k-1] + 0.75 x[k]`` and ``2k + 1`` is
  ``0.75 x[k] + 0.25 x[k+1]``, with edge samples clamped (== replicate padding). That is a
  stride-2 transposed convolution with the separable kernel ``[0.25, 0.75, 0.75, 0.25]``
  over the input padded by one replicated pixel; the valid output is ``[3 : 3 + 2n]``.

Both are exact (up to float rounding) for every size where the reference op itself is
defined by these formulas: any even size for 0.5x, any size for 2x.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# 1-D kernel of 2x bilinear (align_corners=False) upsampling as a transposed conv.
_UP2_TAPS = np.array([0.25, 0.75, 0.75, 0.25], dtype="float32")


def bilinear_up2_kernel(channels: int) -> np.ndarray:
    """Depthwise ``conv2d_transpose`` weight ``[channels, 1, 4, 4]`` for 2x bilinear."""
    k2d = np.outer(_UP2_TAPS, _UP2_TAPS).astype("float32")
    return np.ascontiguousarray(np.broadcast_to(k2d, (channels, 1, 4, 4)))


def bilinear_down2(x: paddle.Tensor) -> paddle.Tensor:
    """``interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False)`` for even H, W."""
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def bilinear_up2(x: paddle.Tensor, kernel: paddle.Tensor) -> paddle.Tensor:
    """``interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)``.

    Args:
        x: ``N x C x H x W`` tensor.
        kernel: ``bilinear_up2_kernel(C)`` as a tensor of ``x``'s dtype.
    """
    h, w = x.shape[2], x.shape[3]
    xp = F.pad(x, [1, 1, 1, 1], mode="replicate")
    y = F.conv2d_transpose(xp, kernel, stride=2, groups=x.shape[1])
    # Padded length n+2 gives 2(n+2)+2 outputs; the first 3 belong to the pad pixels.
    return y[:, :, 3 : 3 + 2 * h, 3 : 3 + 2 * w]


class BilinearDown2(nn.Layer):
    """Layer form of :func:`bilinear_down2` (stands where ``nn.Upsample(0.5)`` stood)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return bilinear_down2(x)


class BilinearUp2(nn.Layer):
    """Layer form of :func:`bilinear_up2` for ``channels`` input channels.

    The kernel is a constant, registered as a non-persistable buffer: it is not a
    parameter (nothing trains it) and not in ``state_dict()`` (checkpoints stay
    key-for-key equal to the official ones).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer(
            "kernel", paddle.to_tensor(bilinear_up2_kernel(channels)), persistable=False
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return bilinear_up2(x, self.kernel.astype(x.dtype))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
