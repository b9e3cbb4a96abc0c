"""DMCNN: dynamic multi-scale CNN for image deblurring.

There is no single canonical "DMCNN" deblurring paper; this model is ppRestore's own
combination of three published ideas, and should be cited through them:

* per-pixel predicted filters — dynamic filter networks: X. Jia, B. De Brabandere,
  T. Tuytelaars, L. Van Gool, "Dynamic Filter Networks", NeurIPS 2016 (a generator
  network predicts a k x k filter for every position, applied to the input);
* multi-scale (coarse-to-fine) deblurring with multi-scale inputs and losses —
  S. Nah, T. H. Kim, K. M. Lee, "Deep Multi-scale Convolutional Neural Network for
  Dynamic Scene Deblurring", CVPR 2017;
* residual channel-attention blocks — Y. Zhang et al., "Image Super-Resolution Using
  Very Deep Residual Channel Attention Networks" (RCAN), ECCV 2018.

Architecture: a U-shaped encoder-decoder over ``num_scales`` scales. Every encoder scale
below the first also receives the input image average-pooled to its resolution (Nah et
al.'s multi-scale input). Encoder skips are *dynamically filtered* before they are fused
into the decoder: a kernel generator looks at the upsampled decoder features and
predicts a ``feat_kernel_size``-square kernel per position, shared within each of
``feat_groups`` channel groups. At full resolution a second generator predicts a
``kernel_size``-square kernel per pixel (shared by all colour channels by default,
``kernel_groups=1``: blur is the same for R, G and B) that is applied to the blurry input
itself; a conv head adds a residual for what filtering cannot express (saturated or
occluded regions). Both generators start as the identity filter (zero weights, centre
tap bias 1) and the residual head starts at zero, so an untrained model is the identity.
``forward(x, return_aux=True)`` also returns the coarse-scale outputs for a multi-scale
loss (``{"out": full, "aux": [half, quarter, ...]}``).

Dynamic convolution memory: the textbook implementation unfolds the input into
``N x C*k^2 x H x W`` (k^2 = 25 times the input for k = 5). :func:`dynamic_conv2d`
instead loops over the k^2 offsets and accumulates ``shifted_input * kernel_slice``,
which in inference needs only O(N*C*H*W) extra memory (autograd still keeps the slices
for the backward pass when training); channel groups are handled by a reshape to
``(N*G) x (C/G) x H x W`` so a kernel slice broadcasts without copies. All loop bounds are Python ints, so the layer
exports with ``paddle.jit.to_static`` / Paddle Inference. ``impl="unfold"`` selects the
textbook path (used as the test reference).

Kernel layout: the generator's ``G * k^2`` output channels are offset-major, channel
``o * G + g`` is tap ``o = i * k + j`` (row i, column j of the window) of group ``g``;
input channel ``c`` uses group ``c // (C / G)``.
"""

from __future__ import annotations

from typing import Dict, List, Union

import paddle
import paddle.nn.functional as F
from paddle import nn

from ..registry import MODELS, Arch, register_arch

__all__ = ["dynamic_conv2d", "dynamic_conv2d_unfold", "DynamicConv2D", "KernelGenerator", "DMCNN"]


def _expand_groups(k: paddle.Tensor, channels: int, groups: int) -> paddle.Tensor:
    """``N x G x ...`` per-group kernels -> something that broadcasts against ``N x C x ...``."""
    if groups == 1 or groups == channels:
        return k
    return paddle.repeat_interleave(k, channels // groups, axis=1)


def dynamic_conv2d(
    x: paddle.Tensor,
    kernels: paddle.Tensor,
    kernel_size: int,
    groups: int = 1,
    padding_mode: str = "replicate",
) -> paddle.Tensor:
    """Per-pixel filtering, memory-sane: loop over the k^2 taps.

    Args:
        x: ``N x C x H x W``.
        kernels: ``N x (groups * k^2) x H x W``, offset-major (see module docstring).
        kernel_size: odd k.
        groups: kernel groups G; C must be divisible by G.
        padding_mode: how the window sees beyond the border ("replicate", "reflect",
            "constant" = zeros).

    Returns:
        ``N x C x H x W``: ``out[n, c, y, x] = sum_ij kernels[n, g(c), ij, y, x] *
        x_pad[n, c, y + i, x + j]``.
    """
    k, r = int(kernel_size), int(kernel_size) // 2
    c = int(x.shape[1])
    if k % 2 != 1:
        raise ValueError(f"dynamic conv kernel size must be odd, got {k}")
    if c % groups:
        raise ValueError(f"channels ({c}) must be divisible by kernel groups ({groups})")
    xp = F.pad(x, [r, r, r, r], mode=padding_mode) if r else x
    grouped = 1 < groups < c
    if grouped:
        # N x C x H x W -> (N*G) x (C/G) x H x W so a per-group kernel slice broadcasts
        # over its channels without repeat_interleave copies. Reshape's 0 ("keep this
        # dim") and -1 keep the graph free of concrete H, W (exportable).
        xp = xp.reshape([-1, c // groups, 0, 0])
    out = None
    for i in range(k):
        for j in range(k):
            o = i * k + j
            # Negative Python-int ends keep the slice static-shape-free (exportable).
            ei = i - 2 * r if i < 2 * r else None
            ej = j - 2 * r if j < 2 * r else None
            w = kernels[:, o * groups : (o + 1) * groups]
            if grouped:
                w = w.reshape([-1, 1, 0, 0])
            term = xp[:, :, i:ei, j:ej] * w
            out = term if out is None else out + term
    return out.reshape([-1, c, 0, 0]) if grouped else out


def dynamic_conv2d_unfold(
    x: paddle.Tensor,
    kernels: paddle.Tensor,
    kernel_size: int,
    groups: int = 1,
    padding_mode: str = "replicate",
) -> paddle.Tensor:
    """Textbook per-pixel filtering via unfold (materialises ``N x C*k^2 x H x W``).

    Same semantics as :func:`dynamic_conv2d`; kept as the reference implementation.
    """
    k, r = int(kernel_size), int(kernel_size) // 2
    n, c, h, w = x.shape
    xp = F.pad(x, [r, r, r, r], mode=padding_mode) if r else x
    cols = F.unfold(xp, kernel_sizes=k).reshape([n, c, k * k, h, w])  # index c*k^2 + tap
    kern = kernels.reshape([n, k * k, groups, h, w]).transpose([0, 2, 1, 3, 4])  # N G k^2 H W
    kern = _expand_groups(kern, c, groups)
    return (cols * kern).sum(axis=2)


class DynamicConv2D(nn.Layer):
    """Apply predicted per-pixel kernels (no parameters of its own)."""

    def __init__(
        self, kernel_size: int, groups: int = 1, padding_mode: str = "replicate", impl: str = "loop"
    ) -> None:
        super().__init__()
        if impl not in ("loop", "unfold"):
            raise ValueError(f"impl must be 'loop' or 'unfold', got {impl!r}")
        self.kernel_size, self.groups, self.padding_mode, self.impl = (
            kernel_size,
            groups,
            padding_mode,
            impl,
        )

    def forward(self, x: paddle.Tensor, kernels: paddle.Tensor) -> paddle.Tensor:
        fn = dynamic_conv2d if self.impl == "loop" else dynamic_conv2d_unfold
        return fn(x, kernels, self.kernel_size, self.groups, self.padding_mode)


class KernelGenerator(nn.Sequential):
    """conv3x3-ReLU-conv3x3 predicting ``groups * k^2`` kernel channels, identity-initialised."""

    def __init__(self, cin: int, kernel_size: int, groups: int) -> None:
        k2 = kernel_size * kernel_size
        centre = k2 // 2
        bias = paddle.zeros([groups * k2])
        bias[centre * groups : (centre + 1) * groups] = 1.0
        last = nn.Conv2D(
            cin,
            groups * k2,
            3,
            padding=1,
            weight_attr=nn.initializer.Constant(0.0),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Assign(bias)),
        )
        super().__init__(nn.Conv2D(cin, cin, 3, padding=1), nn.ReLU(), last)


class ChannelAttention(nn.Layer):
    """Squeeze-and-excitation channel attention (RCAN's CA layer)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        mid = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Sequential(
            nn.Conv2D(channels, mid, 1), nn.ReLU(), nn.Conv2D(mid, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.fc(self.pool(x))


class CABlock(nn.Layer):
    """Residual channel-attention block: x + CA(conv(ReLU(conv(x))))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2D(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2D(channels, channels, 3, padding=1),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + self.body(x)


class DecoderStage(nn.Layer):
    """Upsample, dynamically filter the encoder skip, fuse, CA blocks, coarse output."""

    def __init__(
        self, cin: int, cout: int, out_channels: int, blocks: int, reduction: int, fk: int, fg: int
    ) -> None:
        super().__init__()
        self.up = nn.Conv2DTranspose(cin, cout, 2, stride=2)
        self.kgen = KernelGenerator(cout, fk, fg)
        self.dyn = DynamicConv2D(fk, fg)
        self.fuse = nn.Conv2D(2 * cout, cout, 1)
        self.blocks = nn.Sequential(*[CABlock(cout, reduction) for _ in range(blocks)])

    def forward(self, x: paddle.Tensor, skip: paddle.Tensor) -> paddle.Tensor:
        up = self.up(x)
        filtered = self.dyn(skip, self.kgen(up))
        return self.blocks(self.fuse(paddle.concat([up, filtered], axis=1)))


def _scale_widths(
    in_channels: int, base_channels: int, num_scales: int, kernel_groups: int, feat_groups: int
) -> list:
    """Feature width at each scale (doubling), after checking that the groups divide."""
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}")
    if in_channels % kernel_groups:
        raise ValueError(
            f"in_channels ({in_channels}) must be divisible by kernel_groups ({kernel_groups})"
        )
    widths = [base_channels * 2**s for s in range(num_scales)]
    if any(w % feat_groups for w in widths):
        raise ValueError(f"feat_groups ({feat_groups}) must divide every width {widths}")
    return widths


@MODELS.register
class DMCNN(nn.Layer):
    """Dynamic multi-scale CNN for deblurring (see the module docstring).

    Args:
        in_channels: image channels (output has the same count).
        base_channels: width at full resolution (doubles per scale).
        num_scales: encoder/decoder scales; ``pad_multiple = 2**(num_scales - 1)``.
        num_blocks: CA blocks per scale and side.
        kernel_size: per-pixel kernel applied to the input image (odd).
        kernel_groups: kernel groups for the image filter (1 = shared by all channels,
            ``in_channels`` = one kernel per channel).
        feat_kernel_size: per-pixel kernel for the skip features (odd).
        feat_groups: kernel groups for the skip features.
        reduction: channel-attention reduction ratio.
    """

    pad_multiple = 4
    scale = 1
    in_channels = 3
    out_channels = 3

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        num_scales: int = 3,
        num_blocks: int = 2,
        kernel_size: int = 5,
        kernel_groups: int = 1,
        feat_kernel_size: int = 3,
        feat_groups: int = 4,
        reduction: int = 8,
    ) -> None:
        super().__init__()
        widths = _scale_widths(in_channels, base_channels, num_scales, kernel_groups, feat_groups)
        self.in_channels = self.out_channels = int(in_channels)
        self.num_scales = int(num_scales)
        self.pad_multiple = 2 ** (self.num_scales - 1)
        # Built in this order (encoder, then decoder): parameters are created, and so
        # randomly initialised and listed in the state dict, in the same order as ever.
        self._build_encoder(widths, in_channels, num_blocks, reduction)
        self._build_decoder(
            widths,
            in_channels,
            num_blocks,
            reduction,
            (feat_kernel_size, feat_groups),
            (kernel_size, kernel_groups),
        )

    def _build_encoder(self, widths: list, in_channels: int, blocks: int, reduction: int) -> None:
        """Head, the input injected at each coarser scale, stride-2 downsampling, CA blocks."""
        n = len(widths)
        self.head = nn.Conv2D(in_channels, widths[0], 3, padding=1)
        self.inject = nn.LayerList(
            [nn.Conv2D(in_channels, widths[s], 3, padding=1) for s in range(1, n)]
        )
        self.downs = nn.LayerList(
            [nn.Conv2D(widths[s - 1], widths[s], 3, stride=2, padding=1) for s in range(1, n)]
        )
        self.encoders = nn.LayerList(
            [
                nn.Sequential(*[CABlock(widths[s], reduction) for _ in range(blocks)])
                for s in range(n)
            ]
        )

    def _build_decoder(
        self,
        widths: list,
        in_channels: int,
        blocks: int,
        reduction: int,
        feat: tuple,
        final: tuple,
    ) -> None:
        """Decoder stages (``feat`` = their dynamic kernel size and groups), the coarse
        auxiliary heads, and the final per-pixel kernel (``final`` = size, groups)."""
        n = len(widths)
        # decoders[s] produces scale s from scale s + 1 (s = num_scales - 2 ... 0).
        self.decoders = nn.LayerList(
            [
                DecoderStage(widths[s + 1], widths[s], in_channels, blocks, reduction, *feat)
                for s in range(n - 1)
            ]
        )
        # Coarse outputs for the multi-scale loss (scales 1 .. num_scales - 1).
        self.aux_heads = nn.LayerList(
            [nn.Conv2D(widths[s], in_channels, 3, padding=1) for s in range(1, n)]
        )
        self.kgen = KernelGenerator(widths[0], *final)
        self.dyn = DynamicConv2D(*final)
        self.residual = nn.Conv2D(
            widths[0],
            in_channels,
            3,
            padding=1,
            weight_attr=nn.initializer.Constant(0.0),
            bias_attr=nn.initializer.Constant(0.0),
        )

    def forward(
        self, x: paddle.Tensor, return_aux: bool = False
    ) -> Union[paddle.Tensor, Dict[str, object]]:
        # Multi-scale inputs (average pooling is exact 2^s box downsampling and exports).
        pyramid = [x] + [F.avg_pool2d(x, 2**s, stride=2**s) for s in range(1, self.num_scales)]
        feat = self.encoders[0](self.head(x))
        skips: List[paddle.Tensor] = [feat]
        for s in range(1, self.num_scales):
            feat = self.downs[s - 1](feat) + self.inject[s - 1](pyramid[s])
            feat = self.encoders[s](feat)
            skips.append(feat)
        aux: List[paddle.Tensor] = []
        if self.num_scales > 1:
            aux.append(pyramid[-1] + self.aux_heads[-1](feat))
        for s in reversed(range(self.num_scales - 1)):
            feat = self.decoders[s](feat, skips[s])
            if s > 0:
                aux.append(pyramid[s] + self.aux_heads[s - 1](feat))
        out = self.dyn(x, self.kgen(feat)) + self.residual(feat)
        if return_aux:
            return {"out": out, "aux": aux[::-1]}
        return out


register_arch(Arch(name="dmcnn", model="DMCNN"))
