"""SRCNN / SRCNNPixelShuffle: shapes, converter parity, Y-channel pipeline, export."""

import os

import numpy as np
import paddle
import pytest

from ppRestore.data.color import rgb2ycbcr, ycbcr2rgb
from ppRestore.data.resize import imresize
from ppRestore.models.srcnn import SRCNN, SRCNNPixelShuffle, convert_srcnn, super_resolve_rgb
from ppRestore.registry import CONVERTERS, MODELS
from ppRestore.weights.safe_load import WeightsError, load_state_dict

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture(name):
    d = np.load(os.path.join(FIX, name))
    state = {k[2:]: d[k] for k in d.files if k.startswith("w:")}
    return d, state


def test_srcnn_shapes_and_backward_odd_sizes():
    paddle.seed(0)
    m = MODELS.build({"type": "SRCNN", "scale": 2, "features": [8, 4]})
    assert m.upsample_input and m.scale == 2 and m.in_channels == m.out_channels == 1
    x = paddle.rand([2, 1, 13, 17])
    x.stop_gradient = False
    y = m(x)
    assert y.shape == [2, 1, 13, 17]
    y.mean().backward()
    assert x.grad is not None and m.body.conv1.weight.grad is not None
    m955 = SRCNN(in_channels=3, kernel_sizes=(9, 5, 5), features=(8, 4))
    assert m955(paddle.rand([1, 3, 11, 7])).shape == [1, 3, 11, 7]
    with pytest.raises(ValueError):
        SRCNN(kernel_sizes=(9, 2, 5))
    with pytest.raises(ValueError, match="features"):
        SRCNN(features=16)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_pixelshuffle_shapes(scale):
    m = SRCNNPixelShuffle(scale=scale, features=(8, 4))
    assert not m.upsample_input and m.scale == scale
    assert m.body.conv3.weight.shape[0] == scale**2
    assert m(paddle.rand([1, 1, 7, 9])).shape == [1, 1, 7 * scale, 9 * scale]


@pytest.mark.parametrize(
    "name",
    ["srcnn_conv_style.npz", "srcnn_features_style.npz"],
    ids=["conv-style", "features-style"],
)
def test_srcnn_converter_parity(name):
    d, state = _fixture(name)
    m = SRCNN(kernel_sizes=tuple(d["meta:kernel_sizes"]), features=tuple(d["meta:features"]))
    conv = CONVERTERS.get("srcnn")
    # DataParallel-saved checkpoints carry "module."; the converter strips it.
    load_state_dict(m, conv({"module." + k: v for k, v in state.items()}, m))
    m.eval()
    y = m(paddle.to_tensor(d["input"])).numpy()
    np.testing.assert_allclose(y, d["output"], atol=1e-5)


def test_srcnn_pixelshuffle_converter_parity():
    d, state = _fixture("srcnn_ps_x3_conv_style.npz")
    m = SRCNNPixelShuffle(scale=3, features=(16, 8))
    load_state_dict(m, convert_srcnn(state, m))
    y = m(paddle.to_tensor(d["input"])).numpy()
    assert y.shape == d["output"].shape == (1, 1, 69, 57)
    np.testing.assert_allclose(y, d["output"], atol=1e-5)


def test_srcnn_converter_rejects_foreign_and_mismatched():
    _, state = _fixture("srcnn_conv_style.npz")
    with pytest.raises(KeyError):
        convert_srcnn({"dncnn.0.weight": np.zeros((1, 1, 3, 3))})
    with pytest.raises(KeyError):
        convert_srcnn({**state, "conv4.weight": np.zeros(1)})
    with pytest.raises(WeightsError):  # widths differ: strict load names the keys
        load_state_dict(SRCNN(), convert_srcnn(state))


def _identity_srcnn(scale, add=0.0):
    """A 1-1-1 SRCNN computing relu(relu(y)) + add = y + add (y >= 0)."""
    m = SRCNN(scale=scale, kernel_sizes=(1, 1, 1), features=(1, 1))
    for conv in (m.body.conv1, m.body.conv2, m.body.conv3):
        conv.weight.set_value(np.ones([1, 1, 1, 1], np.float32))
        conv.bias.set_value(np.zeros([1], np.float32))
    m.body.conv3.bias.set_value(np.array([add], np.float32))
    m.eval()
    return m


def test_y_channel_pipeline():
    rng = np.random.default_rng(0)
    lr = rng.uniform(0.2, 0.8, (6, 5, 3))
    bic = imresize(lr, 3)
    # Identity on Y: the result is the bicubic upscale (clipped).
    out = super_resolve_rgb(_identity_srcnn(3), lr)
    assert out.shape == (18, 15, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.clip(bic, 0, 1), atol=1e-5)
    # +0.05 on Y: only Y changes; Cb/Cr stay the bicubic ones.
    out = super_resolve_rgb(_identity_srcnn(3, add=0.05), lr)
    ycc_out, ycc_bic = rgb2ycbcr(out.astype(np.float64)), rgb2ycbcr(bic)
    inside = (ycbcr2rgb(ycc_bic + [0.05, 0, 0]) >= 0).all(-1) & (
        ycbcr2rgb(ycc_bic + [0.05, 0, 0]) <= 1
    ).all(-1)
    assert inside.mean() > 0.9  # nearly nothing is clipped
    np.testing.assert_allclose(ycc_out[..., 0][inside], ycc_bic[..., 0][inside] + 0.05, atol=1e-5)
    np.testing.assert_allclose(ycc_out[..., 1:][inside], ycc_bic[..., 1:][inside], atol=1e-5)


def test_y_channel_pipeline_pixelshuffle_runs_at_low_res():
    paddle.seed(1)
    m = SRCNNPixelShuffle(scale=2, features=(4, 4))
    m.eval()
    lr = np.random.default_rng(1).random((5, 7, 3))
    out = super_resolve_rgb(m, lr)
    assert out.shape == (10, 14, 3)
    # Cb/Cr are the bicubic ones wherever nothing was clipped.
    ok = (out > 1e-6).all(-1) & (out < 1 - 1e-6).all(-1)
    np.testing.assert_allclose(
        rgb2ycbcr(out.astype(np.float64))[..., 1:][ok],
        rgb2ycbcr(imresize(lr, 2))[..., 1:][ok],
        atol=1e-5,
    )


@pytest.mark.parametrize("cls", [SRCNN, SRCNNPixelShuffle])
def test_srcnn_export_roundtrip(cls, tmp_path):
    from utils_export import export_roundtrip

    paddle.seed(0)
    m = cls(scale=2, features=(8, 4))
    x = np.random.default_rng(0).random((1, 1, 12, 10)).astype(np.float32)
    dyn, inf = export_roundtrip(m, x, str(tmp_path))
    assert inf.shape == dyn.shape
    np.testing.assert_allclose(inf, dyn, atol=1e-4)


@pytest.mark.parametrize("name", ["srcnn_x2", "srcnn_x3", "srcnn_x4", "srcnn_ps_x3"])
def test_srcnn_configs_build(name):
    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "configs", "srcnn", f"{name}.yml"))
    m = build_model(cfg["model"])
    scale = 3 if name.endswith("x3") else int(name[-1])
    assert m.scale == scale and cfg["val"]["crop_border"] == scale and cfg["val"]["test_y_channel"]
    assert cfg["train_dataset"]["degradations"][0] == {"type": "BicubicDownscale", "scale": scale}
    assert cfg["train_dataset"]["upscale_lq"] is m.upsample_input
    patch = cfg["train_dataset"]["transforms"][0]["patch_size"]
    if not m.upsample_input:
        # LR-input models: the HR patch must be a multiple of the SR factor (LR = HR / s)
        assert patch % scale == 0
    # (bicubic-input models: the dataset mod-crops the HR patch to a multiple of s)


def test_identity_init_starts_as_the_identity_and_keeps_the_classic_network():
    paddle.seed(3)
    model = SRCNN(init="identity")
    classic = SRCNN()
    # same parameters, same names and shapes: checkpoints are interchangeable
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in classic.state_dict().items()
    ]
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == 8129
    x = paddle.rand([2, 1, 37, 41])  # odd size: the zero padding must not disturb it
    assert float((model(x) - x).abs().max()) == 0.0
    # the other first-layer filters keep a random init (they are what learns detail)
    w1 = model.body.conv1.weight.numpy()
    assert np.abs(w1[1:]).sum() > 0
    # and it trains: one Adam step on an SR pair moves the output away from the input
    opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters())
    target = x + 0.1 * paddle.rand(x.shape)
    loss = ((model(x) - target) ** 2).mean()
    loss.backward()
    opt.step()
    assert float((model(x) - x).abs().max()) > 0.0
    with pytest.raises(ValueError, match="init"):
        SRCNN(init="zeros")


def _replicate_conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Single-image 'same' correlation with edge replication (MATLAB imfilter 'replicate')."""
    k = w.shape[-1] // 2
    xp = np.pad(x, ((0, 0), (k, k), (k, k)), mode="edge")
    h, wd = x.shape[1:]
    out = np.zeros((w.shape[0], h, wd))
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            for dy in range(w.shape[2]):
                for dx in range(w.shape[3]):
                    out[o] += w[o, i, dy, dx] * xp[i, dy : dy + h, dx : dx + wd]
        out[o] += b[o]
    return out


@pytest.mark.parametrize("cls", [SRCNN, SRCNNPixelShuffle])
def test_padding_mode_replicate_matches_the_authors_imfilter_and_keeps_weights(cls, tmp_path):
    """padding_mode='replicate' = SRCNN.m's imfilter(.., 'same', 'replicate') per layer;
    same state dict as 'zeros', same interior, different outer border."""
    paddle.seed(5)
    zeros = cls(scale=2, features=(6, 4))
    rep = cls(scale=2, features=(6, 4), padding_mode="replicate")
    rep.set_state_dict(zeros.state_dict())
    x = np.random.default_rng(1).random((1, 1, 23, 19)).astype(np.float32)
    xt = paddle.to_tensor(x)
    out_r = rep(xt).numpy()[0]
    # numpy reference of the three layers
    sd = {k: v.numpy().astype(np.float64) for k, v in rep.state_dict().items()}
    h = np.maximum(
        _replicate_conv_reference(x[0], sd["body.conv1.weight"], sd["body.conv1.bias"]), 0
    )
    h = np.maximum(_replicate_conv_reference(h, sd["body.conv2.weight"], sd["body.conv2.bias"]), 0)
    ref = _replicate_conv_reference(h, sd["body.conv3.weight"], sd["body.conv3.bias"])
    if cls is SRCNNPixelShuffle:
        ref = paddle.nn.functional.pixel_shuffle(paddle.to_tensor(ref[None]), 2).numpy()[0]
    np.testing.assert_allclose(out_r, ref, atol=1e-5)
    out_z = zeros(xt).numpy()[0]
    s = 1 if cls is SRCNN else 2
    r = 6 * s  # receptive radius of 9-1-5, in output pixels
    np.testing.assert_allclose(out_r[:, r:-r, r:-r], out_z[:, r:-r, r:-r], atol=1e-5)
    assert np.abs(out_r - out_z).max() > 1e-3
    # and it deploys: the exported graph gives the dynamic result
    from utils_export import export_roundtrip

    dyn, inf = export_roundtrip(rep, x, str(tmp_path))
    np.testing.assert_allclose(inf, dyn, atol=1e-4)
    with pytest.raises(ValueError, match="padding_mode"):
        cls(padding_mode="circular")
