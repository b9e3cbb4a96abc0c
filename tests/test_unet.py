"""U-Net denoiser: shapes for several depths/channel counts, residual, export."""

import numpy as np
import paddle
import pytest

from ppRestore.models.unet import UNet
from ppRestore.registry import MODELS


@pytest.mark.parametrize(
    "depth,shape", [(1, (1, 3, 6, 10)), (2, (2, 3, 12, 20)), (3, (1, 3, 8, 24))]
)
def test_unet_shapes_and_backward(depth, shape):
    paddle.seed(0)
    m = MODELS.build({"type": "UNet", "base_channels": 4, "depth": depth})
    assert m.pad_multiple == 2**depth
    x = paddle.rand(list(shape))
    x.stop_gradient = False
    y = m(x)
    assert y.shape == list(shape)
    y.mean().backward()
    assert x.grad is not None and m.head[0].weight.grad is not None


def test_unet_channel_counts_and_residual():
    paddle.seed(0)
    m = UNet(in_channels=4, out_channels=3, base_channels=4, depth=2, residual=False)
    assert (m.in_channels, m.out_channels) == (4, 3)
    assert m(paddle.rand([1, 4, 8, 8])).shape == [1, 3, 8, 8]
    with pytest.raises(ValueError, match="residual"):
        UNet(in_channels=4, out_channels=3)
    # residual=True: the output is input + tail(...); zeroing the tail gives the identity.
    r = UNet(in_channels=1, out_channels=1, base_channels=4, depth=2)
    r.tail.weight.set_value(np.zeros(r.tail.weight.shape, np.float32))
    r.tail.bias.set_value(np.zeros(r.tail.bias.shape, np.float32))
    x = paddle.rand([1, 1, 8, 12])
    np.testing.assert_allclose(r(x).numpy(), x.numpy())


def test_unet_export_roundtrip(tmp_path):
    from utils_export import export_roundtrip

    paddle.seed(0)
    m = UNet(base_channels=4, depth=2)
    x = np.random.default_rng(0).random((1, 3, 12, 16)).astype(np.float32)
    dyn, inf = export_roundtrip(m, x, str(tmp_path))
    np.testing.assert_allclose(inf, dyn, atol=1e-4)


def test_unet_config_builds():
    import os

    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    m = build_model(load_config(os.path.join(root, "configs", "unet", "unet_denoise.yml"))["model"])
    assert isinstance(m, UNet) and m.pad_multiple == 16
