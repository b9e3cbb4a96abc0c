"""DMCNN: dynamic convolution against references, model shapes, identity init, export."""

import numpy as np
import paddle
import pytest

from ppRestore.models.dmcnn import DMCNN, DynamicConv2D, dynamic_conv2d, dynamic_conv2d_unfold
from ppRestore.registry import MODELS


def _numpy_dynamic_conv(x, kern, k, groups):
    """Direct per-pixel definition with explicit loops and edge (replicate) padding."""
    n, c, h, w = x.shape
    r = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    out = np.zeros_like(x)
    per = c // groups
    for ch in range(c):
        g = ch // per
        for i in range(k):
            for j in range(k):
                out[:, ch] += kern[:, (i * k + j) * groups + g] * xp[:, ch, i : i + h, j : j + w]
    return out


@pytest.mark.parametrize("k,c,groups", [(1, 2, 1), (3, 3, 1), (3, 4, 2), (5, 3, 3), (3, 6, 6)])
def test_dynamic_conv_loop_equals_unfold_and_numpy(k, c, groups):
    rng = np.random.default_rng(k * 10 + groups)
    x = rng.standard_normal((2, c, 5, 7)).astype(np.float32)
    kern = rng.standard_normal((2, groups * k * k, 5, 7)).astype(np.float32)
    ref = _numpy_dynamic_conv(x.astype(np.float64), kern.astype(np.float64), k, groups)
    loop = dynamic_conv2d(paddle.to_tensor(x), paddle.to_tensor(kern), k, groups).numpy()
    unf = dynamic_conv2d_unfold(paddle.to_tensor(x), paddle.to_tensor(kern), k, groups).numpy()
    np.testing.assert_allclose(unf, ref, atol=1e-5)
    np.testing.assert_allclose(loop, ref, atol=1e-5)


def test_dynamic_conv_identity_kernel_and_errors():
    x = paddle.rand([1, 3, 4, 6])
    kern = np.zeros((1, 9, 4, 6), np.float32)
    kern[:, 4] = 1.0  # centre tap
    np.testing.assert_allclose(dynamic_conv2d(x, paddle.to_tensor(kern), 3).numpy(), x.numpy())
    with pytest.raises(ValueError):
        dynamic_conv2d(x, paddle.to_tensor(kern), 2)
    with pytest.raises(ValueError):
        dynamic_conv2d(x, paddle.zeros([1, 18, 4, 6]), 3, groups=2)
    with pytest.raises(ValueError):
        DynamicConv2D(3, impl="im2col")


def _randomise(model, seed=0):
    """Replace the identity/zero initialisation so tests see a non-trivial network."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.set_value((rng.standard_normal(p.shape) * 0.1).astype(np.float32))


def test_dmcnn_identity_at_init_and_shapes():
    paddle.seed(0)
    m = MODELS.build({"type": "DMCNN", "base_channels": 8, "num_blocks": 1, "num_scales": 3})
    assert m.pad_multiple == 4
    m.eval()
    x = paddle.rand([1, 3, 12, 20])
    np.testing.assert_allclose(m(x).numpy(), x.numpy(), atol=1e-6)
    out = m(x, return_aux=True)
    assert out["out"].shape == [1, 3, 12, 20]
    assert [a.shape for a in out["aux"]] == [[1, 3, 6, 10], [1, 3, 3, 5]]


def test_dmcnn_backward_and_loop_equals_unfold():
    paddle.seed(0)
    m = DMCNN(
        base_channels=8, num_blocks=1, num_scales=2, kernel_size=3, kernel_groups=3, feat_groups=2
    )
    _randomise(m)
    x = paddle.rand([2, 3, 10, 14])
    x.stop_gradient = False
    y = m(x)
    assert y.shape == [2, 3, 10, 14]
    y.mean().backward()
    assert x.grad is not None and m.kgen[2].weight.grad is not None
    m.eval()
    with paddle.no_grad():
        loop = m(x).numpy()
        for layer in m.sublayers():
            if isinstance(layer, DynamicConv2D):
                layer.impl = "unfold"
        unf = m(x).numpy()
    np.testing.assert_allclose(loop, unf, atol=1e-5)


@pytest.mark.parametrize("mkldnn", [False, True], ids=["plain", "onednn"])
def test_dmcnn_export_roundtrip(tmp_path, mkldnn):
    from utils_export import export_roundtrip

    paddle.seed(0)
    m = DMCNN(base_channels=8, num_blocks=1, num_scales=3)
    _randomise(m, seed=1)
    x = np.random.default_rng(0).random((1, 3, 12, 16)).astype(np.float32)
    dyn, inf = export_roundtrip(m, x, str(tmp_path), mkldnn=mkldnn)
    assert np.abs(dyn - x).max() > 1e-2  # not the identity
    np.testing.assert_allclose(inf, dyn, atol=1e-4)


def test_dmcnn_config_builds():
    import os

    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "configs", "dmcnn", "dmcnn_deblur.yml"))
    m = build_model(cfg["model"])
    assert isinstance(m, DMCNN) and m.pad_multiple == 4
    assert [t["type"] for t in cfg["loss"]["types"]] == ["L1Loss", "PerceptualLoss"]
