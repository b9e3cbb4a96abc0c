"""SRCNN: Super-Resolution Convolutional Neural Network.

Paper: C. Dong, C. C. Loy, K. He, X. Tang, "Learning a Deep Convolutional Network for
Image Super-Resolution", ECCV 2014; and "Image Super-Resolution Using Deep Convolutional
Networks", IEEE TPAMI 38(2), 2016.

Two classes:

* :class:`SRCNN` — the paper's network: patch extraction (f1 x f1, n1 filters), non-linear
  mapping (f2 x f2, n2 filters), reconstruction (f3 x f3). ``kernel_sizes=(9, 1, 5)`` with
  ``features=(64, 32)`` is the classic 9-1-5 model; ``(9, 5, 5)`` is the TPAMI 9-5-5
  one. It maps a *bicubic-upscaled* image to a restored image of the same size, so the
  class sets ``upsample_input = True``: the predictor must first bicubic-upscale the
  low-resolution input by ``scale`` (MATLAB ``imresize``,
  :func:`ppRestore.data.resize.imresize`) and then run the model, whose output has the
  size of its input. ``scale`` records the SR factor the weights were trained for.
* :class:`SRCNNPixelShuffle` — the same three layers run at low resolution and the
  reconstruction layer emits ``in_channels * scale**2`` channels followed by a
  PixelShuffle (ESPCN-style, Shi et al. CVPR 2016); ``upsample_input = False`` and the
  output is ``scale`` times larger. About ``scale**2`` times cheaper.

Padding: the paper trains with *valid* convolutions (the output is 12 px smaller for
9-1-5 and the loss is taken on the centre). We use 'same' padding so the output has the
input's size, the predictor can tile/pad it like every other model, and weights trained
either way load unchanged (the interior is identical; only the outer
``(f1 + f2 + f3 - 3) / 2`` pixels see the padding). ``padding_mode="replicate"`` is what
the authors' own test code does (``SRCNN.m``: ``imfilter(..., 'same', 'replicate')`` for
every layer), so it is the setting that reproduces the paper's evaluation; ``"zeros"``
(the default, as in most PyTorch ports) keeps converted third-party weights' behaviour.
The shipped ``srcnn_x2/x3/x4/ps_x3`` weights were trained with a loss that skips the
pixels that see padding, so they expect ``replicate`` (their zoo configs set it): with
zero padding their outer ~6 px degrade (``srcnn_x3`` on Set5: 31.91 instead of 32.39 dB).

SR models work on the Y channel of MATLAB's YCbCr (``in_channels=1``);
:func:`super_resolve_rgb` is the colour pipeline (Y through the model, CbCr bicubic).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import paddle
from paddle import nn

from ..registry import MODELS, Arch, Source, register_arch

__all__ = ["SRCNN", "SRCNNPixelShuffle", "super_resolve_rgb", "convert_srcnn"]


class _SRCNNBody(nn.Layer):
    """The three SRCNN layers; parameter names ``conv{1,2,3}.{weight,bias}``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int],
        features: Sequence[int],
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(
                f"padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}"
            )
        if (
            isinstance(kernel_sizes, int)
            or isinstance(features, int)
            or len(kernel_sizes) != 3
            or len(features) != 2
        ):
            raise ValueError("SRCNN needs kernel_sizes=(f1, f2, f3) and features=(n1, n2)")
        if any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(
                f"SRCNN kernel sizes must be odd for 'same' padding, got {kernel_sizes}"
            )
        f1, f2, f3 = (int(k) for k in kernel_sizes)
        n1, n2 = (int(n) for n in features)
        pm = padding_mode
        self.conv1 = nn.Conv2D(in_channels, n1, f1, padding=f1 // 2, padding_mode=pm)
        self.conv2 = nn.Conv2D(n1, n2, f2, padding=f2 // 2, padding_mode=pm)
        self.conv3 = nn.Conv2D(n2, out_channels, f3, padding=f3 // 2, padding_mode=pm)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))


@MODELS.register
class SRCNN(nn.Layer):
    """SRCNN on a bicubic-upscaled image (output size = input size).

    Args:
        in_channels: image channels (1 = Y channel, as in the paper).
        scale: SR factor the model is trained for (the predictor upsamples by it first).
        kernel_sizes: ``(f1, f2, f3)``; (9, 1, 5) classic, (9, 5, 5) TPAMI.
        features: ``(n1, n2)`` filters of the first two layers.
        init: ``"default"`` (Paddle's Kaiming init) or ``"identity"``: the same
            network, started so that it outputs its (bicubic) input exactly; see
            :func:`identity_init_`. Only the starting point differs; the architecture,
            parameter count and checkpoints are the classic ones.
        padding_mode: ``"zeros"`` (default), ``"replicate"`` (the authors' MATLAB test
            code) or ``"reflect"``; changes only the outer border, never the weights.
    """

    pad_multiple = 1
    scale = 3
    in_channels = 1
    out_channels = 1
    #: The predictor must bicubic-upscale the input by ``scale`` before the model.
    upsample_input = True

    def __init__(
        self,
        in_channels: int = 1,
        scale: int = 3,
        kernel_sizes: Sequence[int] = (9, 1, 5),
        features: Sequence[int] = (64, 32),
        init: str = "default",
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if init not in ("default", "identity"):
            raise ValueError(f"init must be 'default' or 'identity', got {init!r}")
        self.scale = int(scale)
        self.in_channels = self.out_channels = int(in_channels)
        self.body = _SRCNNBody(in_channels, in_channels, kernel_sizes, features, padding_mode)
        if init == "identity":
            identity_init_(self.body)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.body(x)


@MODELS.register
class SRCNNPixelShuffle(nn.Layer):
    """SRCNN layers at low resolution + PixelShuffle (output ``scale`` x larger).

    Args: as :class:`SRCNN`; ``scale`` is 2, 3 or 4 (any integer >= 1 works).
    """

    pad_multiple = 1
    scale = 3
    in_channels = 1
    out_channels = 1
    upsample_input = False

    def __init__(
        self,
        in_channels: int = 1,
        scale: int = 3,
        kernel_sizes: Sequence[int] = (9, 1, 5),
        features: Sequence[int] = (64, 32),
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if int(scale) < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.scale = int(scale)
        self.in_channels = self.out_channels = int(in_channels)
        self.body = _SRCNNBody(
            in_channels, in_channels * self.scale**2, kernel_sizes, features, padding_mode
        )
        self.shuffle = nn.PixelShuffle(self.scale)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.shuffle(self.body(x))


def identity_init_(body: _SRCNNBody) -> None:
    """Start a classic SRCNN as the identity map (its output = its input).

    Why: the non-residual SRCNN has to *learn* to pass the bicubic image through three
    layers before it can add detail, and with a random start it spends thousands of
    steps below the bicubic baseline. Here channel ``c`` of each layer carries input
    channel ``c`` unchanged (a centre tap of 1; the inputs are >= 0 so the ReLUs pass
    them), and the last layer reads only those channels, so training starts at the
    bicubic PSNR and learns the missing detail as a residual, as VDSR does with an
    explicit skip, while the network stays exactly 9-1-5.

    The other filters keep their random init; the last layer's weights from them start
    at zero (gradients still reach them because their activations are non-zero).
    """
    c = body.conv1.weight.shape[1]
    if body.conv1.weight.shape[0] < c or body.conv2.weight.shape[0] < c:
        raise ValueError("identity init needs at least as many filters as channels")
    for conv in (body.conv1, body.conv2, body.conv3):
        w = conv.weight.numpy()
        k = w.shape[-1] // 2
        if conv is body.conv3:
            w[:] = 0.0
        w[:c] = 0.0
        for i in range(c):
            w[i, i, k, k] = 1.0
        conv.weight.set_value(w)
        conv.bias.set_value(np.zeros(conv.bias.shape, "float32"))


def super_resolve_rgb(model: nn.Layer, lr_rgb: np.ndarray) -> np.ndarray:
    """The SR papers' colour pipeline: Y through ``model``, Cb/Cr bicubic.

    Args:
        model: an SR model with ``in_channels == 1`` (``SRCNN`` or
            ``SRCNNPixelShuffle``), in eval mode.
        lr_rgb: ``H x W x 3`` float RGB in [0, 1] (low resolution).

    Returns:
        ``(H*scale) x (W*scale) x 3`` float32 RGB, clipped to [0, 1].
    """
    from ..data.color import rgb2ycbcr, ycbcr2rgb
    from ..data.resize import imresize

    scale = int(model.scale)
    lr = np.asarray(lr_rgb, dtype=np.float64)
    up = imresize(lr, scale)  # MATLAB bicubic, as the paper's baseline
    ycc_up = rgb2ycbcr(up)
    if getattr(model, "upsample_input", False):
        y_in = ycc_up[..., 0]
    else:
        y_in = rgb2ycbcr(lr)[..., 0]
    with paddle.no_grad():
        y = model(paddle.to_tensor(y_in[None, None].astype(np.float32)))
    y = y.numpy()[0, 0].astype(np.float64)
    if y.shape != ycc_up.shape[:2]:
        raise ValueError(
            f"model output {y.shape} does not match the upscaled size {ycc_up.shape[:2]}"
        )
    ycc_up[..., 0] = y
    return np.clip(ycbcr2rgb(ycc_up), 0.0, 1.0).astype(np.float32)


# Public PyTorch SRCNN checkpoints name the three convs in one of two ways.
_STYLES = {
    # yjn870/SRCNN-pytorch and most re-implementations.
    "conv": ("conv1", "conv2", "conv3"),
    # Lornatang/SRCNN-PyTorch: features = Sequential(conv, ReLU), map = Sequential(conv,
    # ReLU), reconstruction = conv.
    "features": ("features.0", "map.0", "reconstruction"),
}


def convert_srcnn(state: Dict[str, np.ndarray], model: nn.Layer = None) -> Dict[str, np.ndarray]:
    """Map a PyTorch SRCNN state dict (either key style, optional ``module.``) to ours.

    Conv weights are OIHW in both frameworks, so this is a pure renaming; the style is
    detected from the keys. Works for :class:`SRCNN` and :class:`SRCNNPixelShuffle`.
    """
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    style = next((s for s, ns in _STYLES.items() if all(f"{n}.weight" in state for n in ns)), None)
    if style is None:
        raise KeyError(
            "not an SRCNN checkpoint: expected keys conv1/conv2/conv3.weight or "
            f"features.0/map.0/reconstruction.weight, got {sorted(state)[:8]}"
        )
    names = _STYLES[style]
    out = {}
    for i, n in enumerate(names, start=1):
        for p in ("weight", "bias"):
            if f"{n}.{p}" not in state:
                raise KeyError(f"SRCNN checkpoint ({style} style) lacks '{n}.{p}'")
            out[f"body.conv{i}.{p}"] = np.asarray(state[f"{n}.{p}"], dtype=np.float32)
    extra = set(state) - {f"{n}.{p}" for n in names for p in ("weight", "bias")}
    if extra:
        raise KeyError(f"SRCNN checkpoint has unexpected keys: {sorted(extra)[:8]}")
    return out


def _looks_srcnn(state: Dict[str, np.ndarray], container: str = "") -> bool:
    keys = {(k[7:] if k.startswith("module.") else k) for k in state}
    return any(all(f"{n}.weight" in keys for n in ns) for ns in _STYLES.values())


register_arch(
    Arch(
        name="srcnn",
        model="SRCNN",
        sources=(
            Source(
                "pytorch",
                convert_srcnn,
                _looks_srcnn,
                url="yjn870/SRCNN-pytorch (conv1..3) or Lornatang/SRCNN-PyTorch (features/map/...)",
            ),
        ),
        weights={
            # Trained here (tools/train.py, 2-core CPU); pretrained/README.md.
            "srcnn_x2": {
                "file": "srcnn_x2_y.pdparams",
                "config": "configs/srcnn/srcnn_x2.yml",
                "sha256": "5879f2df094e7007601586474fd8c4d6a99a23557715011689a48ff90ba8a0aa",
            },
            "srcnn_x3": {
                "file": "srcnn_x3_y.pdparams",
                "config": "configs/srcnn/srcnn_x3.yml",
                "sha256": "aefe42fb3255da1f5b18f8beb356fbb1399bf3f5b46f53dbbbfd6dc855bf4a2a",
            },
            "srcnn_x4": {
                "file": "srcnn_x4_y.pdparams",
                "config": "configs/srcnn/srcnn_x4.yml",
                "sha256": "9b339d957e736d336dca63eaab0e2cb99e3c3ac542915c5d1a5c81c8478f397b",
            },
        },
    )
)
register_arch(
    Arch(
        name="srcnn_ps",
        model="SRCNNPixelShuffle",
        sources=(Source("pytorch", convert_srcnn, _looks_srcnn),),
        weights={
            "srcnn_ps_x3": {
                "file": "srcnn_ps_x3_y.pdparams",
                "config": "configs/srcnn/srcnn_ps_x3.yml",
                "sha256": "51e59bb88dbde5a5cafc9eb064a4bead8c38af59eee8bd7eb701dde6f507e243",
            },
        },
    )
)
