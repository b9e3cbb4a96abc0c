"""PmrNet: the raw-denoising U-Net of PMRID.

Paper: Yuzhi Wang, Haibin Huang, Qin Xu, Jiaming Liu, Yiqun Liu, Jue Wang,
"Practical Deep Raw Image Denoising on Mobile Devices", ECCV 2020
(https://arxiv.org/abs/2010.06935). Official code and weights (Apache-2.0):
https://github.com/MegEngine/PMRID.

The network is a light U-Net built from depthwise-separable convolutions:

* ``conv0``: 3x3 conv, ``in_channels -> 16``, ReLU;
* ``enc1..enc4``: encoder stages of 2, 2, 4, 4 :class:`EncoderBlock` (5x5 separable convs,
  bottleneck ``out/4``; the first block of a stage has stride 2 and a separable 3x3
  projection shortcut), widths 64, 128, 256, 512;
* ``encdec``: 3x3 separable ``512 -> 64`` bridge, ReLU;
* ``dec1..dec4``: :class:`DecoderStage` (3x3 separable residual block, 2x2 stride-2
  transposed conv, separable 3x3 projection of the skip, summed);
* ``out0`` (separable residual block) and ``out1`` (3x3 conv back to ``in_channels``);
* global residual: ``output = input + out1(...)``.

Parameter names are the official ``models/net_torch.py`` names, so the official
checkpoints convert by a near-identity mapping (:func:`convert_pmrnet_torch`,
:func:`convert_pmrnet_mge`).

Input space: the official model was trained on packed RGGB raw (``in_channels=4``,
``H/2 x W/2``) after the k-sigma transform (see :mod:`ppRestore.data.raw`) multiplied by
``inp_scale = 256``; the network itself is scale-agnostic and applies no normalisation,
so :func:`ppRestore.data.raw.denoise_raw` does that pre/post-processing. With
``in_channels`` 1 or 3 the same architecture works on ordinary ``[0, 1]`` images (for
example the document-cleaning configs); the output has as many channels as the input.
Four stride-2 stages mean H and W must be multiples of 16; the official pipeline pads
to 32 (:attr:`PmrNet.pad_multiple`).
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ..registry import MODELS, Arch, Source, register_arch

# Official channel widths (net_torch.py: Network.__init__).
_STEM = 16
_ENC = (64, 128, 256, 512)
_ENC_BLOCKS = (2, 2, 4, 4)
_BRIDGE = 64
_DEC = (64, 32, 32, 16)


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    separable: bool = False,
    relu: bool = False,
) -> nn.Sequential:
    """Plain or depthwise-separable conv with an optional ReLU.

    Sub-layer names (``conv`` / ``depthwise`` + ``pointwise``, ``relu``) follow the
    official code so state-dict keys match it.
    """
    layers = []
    if separable:
        # Depthwise has no bias: the pointwise conv right after it carries one.
        layers.append(
            (
                "depthwise",
                nn.Conv2D(
                    in_channels,
                    in_channels,
                    kernel_size,
                    stride=stride,
                    padding=padding,
                    groups=in_channels,
                    bias_attr=False,
                ),
            )
        )
        layers.append(("pointwise", nn.Conv2D(in_channels, out_channels, 1)))
    else:
        layers.append(
            (
                "conv",
                nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            )
        )
    if relu:
        layers.append(("relu", nn.ReLU()))
    return nn.Sequential(*layers)


class EncoderBlock(nn.Layer):
    """Two 5x5 separable convs (bottleneck ``mid``) plus a shortcut, then ReLU."""

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = conv2d(in_channels, mid_channels, 5, stride, 2, separable=True, relu=True)
        self.conv2 = conv2d(mid_channels, out_channels, 5, 1, 2, separable=True)
        if stride == 1 and in_channels == out_channels:
            self.proj = nn.Identity()
        else:
            self.proj = conv2d(in_channels, out_channels, 3, stride, 1, separable=True)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.proj(x))


def encoder_stage(
    in_channels: int, out_channels: int, num_blocks: int, mids: Sequence[int] | None = None
) -> nn.Sequential:
    """A stride-2 :class:`EncoderBlock` followed by ``num_blocks - 1`` stride-1 ones.

    ``mids``: each block's bottleneck width (default ``out_channels // 4``).
    """
    mids = list(mids) if mids is not None else [max(1, out_channels // 4)] * num_blocks
    blocks = [EncoderBlock(in_channels, mids[0], out_channels, stride=2)]
    blocks += [EncoderBlock(out_channels, m, out_channels) for m in mids[1:]]
    return nn.Sequential(*blocks)


class DecoderBlock(nn.Layer):
    """Residual pair of separable convs (ReLU after the first only)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, mid: int | None = None
    ) -> None:
        # mid: conv0's width when it differs from out_channels (a channel-pruned network)
        super().__init__()
        pad = kernel_size // 2
        mid = out_channels if mid is None else mid
        self.conv0 = conv2d(in_channels, mid, kernel_size, 1, pad, separable=True, relu=True)
        self.conv1 = conv2d(mid, out_channels, kernel_size, 1, pad, separable=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv1(self.conv0(x)) + x


class DecoderStage(nn.Layer):
    """Decode, upsample x2 by transposed conv, add the projected encoder skip."""

    def __init__(
        self, in_channels: int, skip_in_channels: int, out_channels: int, mid: int | None = None
    ) -> None:
        super().__init__()
        self.decode_conv = DecoderBlock(in_channels, in_channels, 3, mid=mid)
        self.upsample = nn.Conv2DTranspose(in_channels, out_channels, kernel_size=2, stride=2)
        self.proj_conv = conv2d(skip_in_channels, out_channels, 3, 1, 1, separable=True, relu=True)

    def forward(self, x: paddle.Tensor, skip: paddle.Tensor) -> paddle.Tensor:
        return self.upsample(self.decode_conv(x)) + self.proj_conv(skip)


@MODELS.register
class PmrNet(nn.Layer):
    """PMRID's separable-conv U-Net (Wang et al., ECCV 2020).

    Args:
        in_channels: 4 for packed Bayer raw (the official model), 1 or 3 for grey or
            colour images. The output has the same number of channels.
        width: channel multiplier (1.0 = official widths, 1.03 M parameters); smaller
            values give small models for tests and quick experiments.
        inp_scale: the network runs on ``input * inp_scale`` and divides its output back
            (``(x*s + net(x*s)) / s``), so data can stay in ``[0, 1]`` units. The official
            raw model expects 256 (``run_benchmark.py``); :func:`~ppRestore.data.raw.denoise_raw`
            applies whatever part of that factor the model does not.
        channels: optional explicit widths, as ``tools/prune.py`` writes for a
            channel-pruned network (overrides ``width``): ``{stem: int, enc: [4],
            enc_mid: [[per block] x 4], bridge: int, dec: [4], dec_mid: [5]}``
            (``dec_mid``: the decoder stages' residual blocks, then ``out0``'s).
    """

    pad_multiple = 32
    scale = 1

    def __init__(
        self,
        in_channels: int = 4,
        width: float = 1.0,
        inp_scale: float = 1.0,
        channels: Dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"PmrNet: in_channels must be >= 1, got {in_channels}")
        if width <= 0:
            raise ValueError(f"PmrNet: width must be > 0, got {width}")
        if not inp_scale > 0:
            raise ValueError(f"PmrNet: inp_scale must be > 0, got {inp_scale}")
        self.inp_scale = float(inp_scale)

        def ch(c: int) -> int:
            # Keep at least 4 channels so the encoders' out/4 bottleneck stays non-empty.
            return max(4, int(round(c * width)))

        self.in_channels = in_channels
        self.out_channels = in_channels
        stem, enc, bridge, dec = (
            ch(_STEM),
            [ch(c) for c in _ENC],
            ch(_BRIDGE),
            [ch(c) for c in _DEC],
        )

        enc_mid, dec_mid = [None] * 4, [None] * 5
        if channels is not None:
            try:
                stem, bridge = int(channels["stem"]), int(channels["bridge"])
                enc, dec = [int(c) for c in channels["enc"]], [int(c) for c in channels["dec"]]
                enc_mid = [[int(c) for c in m] for m in channels["enc_mid"]]
                dec_mid = [int(c) for c in channels["dec_mid"]]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"PmrNet: bad channels {channels!r} ({e})") from None
            ok = len(enc) == 4 and len(dec) == 4 and len(dec_mid) == 5
            ok = ok and [len(m) for m in enc_mid] == list(_ENC_BLOCKS)
            if not ok:
                raise ValueError(
                    "PmrNet: channels needs enc: 4 values, enc_mid: blocks (2, 2, 4, 4), "
                    f"dec: 4, dec_mid: 5; got {channels!r}"
                )
        self.conv0 = conv2d(in_channels, stem, 3, 1, 1, relu=True)
        self.enc1 = encoder_stage(stem, enc[0], _ENC_BLOCKS[0], enc_mid[0])
        self.enc2 = encoder_stage(enc[0], enc[1], _ENC_BLOCKS[1], enc_mid[1])
        self.enc3 = encoder_stage(enc[1], enc[2], _ENC_BLOCKS[2], enc_mid[2])
        self.enc4 = encoder_stage(enc[2], enc[3], _ENC_BLOCKS[3], enc_mid[3])
        self.encdec = conv2d(enc[3], bridge, 3, 1, 1, separable=True, relu=True)
        self.dec1 = DecoderStage(bridge, enc[2], dec[0], dec_mid[0])
        self.dec2 = DecoderStage(dec[0], enc[1], dec[1], dec_mid[1])
        self.dec3 = DecoderStage(dec[1], enc[0], dec[2], dec_mid[2])
        self.dec4 = DecoderStage(dec[2], stem, dec[3], dec_mid[3])
        self.out0 = DecoderBlock(dec[3], dec[3], 3, mid=dec_mid[4])
        self.out1 = conv2d(dec[3], in_channels, 3, 1, 1)

    def forward(self, inp: paddle.Tensor) -> paddle.Tensor:
        # Four stride-2 stages: a size that is not a multiple of 16 would fail deep inside
        # with a shape mismatch at a skip connection; say so up front. (-1 = dynamic
        # dimension during export, checked at run time by the predictor's padding.)
        for n in inp.shape[-2:]:
            if isinstance(n, int) and n > 0 and n % 16:
                raise ValueError(
                    f"PmrNet needs H and W divisible by 16 (pad to {self.pad_multiple}), "
                    f"got input shape {list(inp.shape)}"
                )
        s = self.inp_scale
        if s != 1.0:
            inp = inp * s
        conv0 = self.conv0(inp)
        conv1 = self.enc1(conv0)
        conv2 = self.enc2(conv1)
        conv3 = self.enc3(conv2)
        conv4 = self.enc4(conv3)
        x = self.encdec(conv4)
        x = self.dec1(x, conv3)
        x = self.dec2(x, conv2)
        x = self.dec3(x, conv1)
        x = self.dec4(x, conv0)
        x = self.out1(self.out0(x))
        out = inp + x
        return out / s if s != 1.0 else out


# --------------------------------------------------------------------------------------
# Official checkpoint converters
# --------------------------------------------------------------------------------------


def _strip_prefix(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    # Checkpoints saved from DataParallel / wrapped modules carry "module." prefixes.
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _model_shapes(model) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fit(arr: np.ndarray, want: Tuple[int, ...]) -> np.ndarray:
    """Reshape ``arr`` to ``want`` when only singleton axes differ; else leave it for
    the strict loader to report as mismatched."""
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape == want:
        return arr
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    if squeeze(arr.shape) == squeeze(want) and arr.size == int(np.prod(want)):
        return arr.reshape(want)
    return arr


def convert_pmrnet_torch(state: Dict[str, np.ndarray], model) -> Dict[str, np.ndarray]:
    """Official PyTorch checkpoint (``models/torch_pretrained.ckp``) -> PmrNet.

    Key names are identical, and Paddle's layouts equal PyTorch's (Conv2D
    ``(out, in/groups, kH, kW)``; Conv2DTranspose ``(in, out/groups, kH, kW)``), so this
    only casts to float32 and drops a ``module.`` prefix. Unknown or missing keys are left
    for the strict loader to report.
    """
    shapes = _model_shapes(model)
    out = {}
    for k, v in _strip_prefix(state).items():
        arr = np.asarray(v, dtype=np.float32)
        out[k] = _fit(arr, shapes[k]) if k in shapes else arr
    return out


def convert_pmrnet_mge(state: Dict[str, np.ndarray], model) -> Dict[str, np.ndarray]:
    """Official MegEngine checkpoint (``models/mge_pretrained.ckp``) -> PmrNet.

    The file is a pickle of numpy arrays (read it with
    :func:`ppRestore.weights.safe_load.restricted_loads`) with the same key names as
    ``net_torch.py`` but MegEngine's layouts: grouped (depthwise) conv weights are
    ``(groups, out/groups, in/groups, kH, kW)`` = ``(C, 1, 1, k, k)`` -> ``(C, 1, k, k)``,
    and biases are ``(1, C, 1, 1)`` -> ``(C,)``. MegEngine's ConvTranspose2d weight is
    ``(in, out, kH, kW)`` like Paddle's, so it is copied as is.
    """
    shapes = _model_shapes(model)
    out = {}
    for k, v in _strip_prefix(state).items():
        arr = np.asarray(v, dtype=np.float32)
        if k in shapes:
            want = shapes[k]
            if arr.ndim == 5 and len(want) == 4:
                # (G, O/G, I/G, kh, kw) -> (O, I/G, kh, kw): merge the group axis.
                arr = arr.reshape((arr.shape[0] * arr.shape[1],) + arr.shape[2:])
            elif k.endswith(".bias") and arr.ndim == 4:
                arr = arr.reshape(-1)
        out[k] = arr
    return out


def _looks_pmrid(state: Dict[str, np.ndarray]) -> bool:
    keys = _strip_prefix(state)
    return "conv0.conv.weight" in keys and any(k.startswith("enc1.") for k in keys)


def _looks_torch(state: Dict[str, np.ndarray], container: str = "") -> bool:
    """net_torch.py keys in a torch file; MegEngine writes 5-D grouped weights instead."""
    five_d = any(np.ndim(v) == 5 for v in state.values())
    return _looks_pmrid(state) and not five_d and container.startswith("torch")


def _looks_mge(state: Dict[str, np.ndarray], container: str = "") -> bool:
    """MegEngine's ``mge_pretrained.ckp``: a plain pickle, grouped conv weights 5-D."""
    five_d = any(np.ndim(v) == 5 for v in state.values())
    return _looks_pmrid(state) and (five_d or container == "pickle")


register_arch(
    Arch(
        name="pmrnet",
        model="PmrNet",
        defaults={"in_channels": 4},
        sources=(
            Source(
                "torch",
                convert_pmrnet_torch,
                _looks_torch,
                url="https://github.com/MegEngine/PMRID (models/torch_pretrained.ckp)",
            ),
            Source(
                "mge",
                convert_pmrnet_mge,
                _looks_mge,
                url="https://github.com/MegEngine/PMRID (models/mge_pretrained.ckp)",
            ),
        ),
        weights={
            "pmrid": {
                "url": "https://raw.githubusercontent.com/MegEngine/PMRID/"
                "8ebb9e8e96559881dee957f34243933c5beb77dd/models/torch_pretrained.ckp",
                "sha256": "9361614f3514d27351d81909f2215c0fdc38619c0288d936b7266485ac106c14",
                "config": "configs/pmrnet/pmrnet_raw.yml",
                "size_mb": 4.2,
            },
        },
    )
)
