"""DnCNN: shapes, residual semantics, SaoYan (real weights) and KAIR converters, export."""

import os

import numpy as np
import paddle
import pytest

from ppRestore.models.dncnn import DnCNN, convert_dncnn_kair, convert_dncnn_saoyan
from ppRestore.registry import CONVERTERS, MODELS
from ppRestore.weights.safe_load import load_state_dict

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture(name):
    d = np.load(os.path.join(FIX, name))
    return d, {k[2:]: d[k] for k in d.files if k.startswith("w:")}


def test_dncnn_shapes_backward_and_residual_semantics():
    paddle.seed(0)
    m = MODELS.build({"type": "DnCNN", "num_layers": 5, "features": 8})
    assert len(m.body) == 3 and m.head.bias is None  # SaoYan layout: no conv bias with BN
    x = paddle.rand([2, 1, 11, 14])
    x.stop_gradient = False
    y = m(x)
    assert y.shape == [2, 1, 11, 14]
    y.mean().backward()
    assert x.grad is not None and m.body[0].bn.weight.grad is not None
    m.eval()
    x = paddle.rand([1, 1, 9, 7])
    np.testing.assert_allclose(m(x).numpy(), (x - m.noise(x)).numpy(), atol=1e-6)
    c = DnCNN(in_channels=3, num_layers=4, features=8, bn=False)
    assert c.head.bias is not None and c(paddle.rand([1, 3, 5, 6])).shape == [1, 3, 5, 6]
    with pytest.raises(ValueError):
        DnCNN(num_layers=2)


def test_dncnn_saoyan_real_weights_parity():
    """SaoYan's DnCNN-S-25 net.pth (official models.py output) -> ppRestore DnCNN."""
    d, state = _fixture("dncnn_saoyan_s25.npz")
    assert all(k.startswith("module.") for k in state)  # saved from nn.DataParallel
    # Newer PyTorch adds num_batches_tracked to every BN; the converter drops it.
    state["module.dncnn.3.num_batches_tracked"] = np.array(1000, dtype=np.int64)
    m = DnCNN(num_layers=17)
    load_state_dict(m, CONVERTERS.get("dncnn:saoyan")(state, m))
    m.eval()
    x = paddle.to_tensor(d["input"])
    np.testing.assert_allclose(m.noise(x).numpy(), d["noise"], atol=2e-5)
    np.testing.assert_allclose(m(x).numpy(), d["output"], atol=2e-5)
    # The real weights denoise: the estimate is closer to the clean crop than the input.
    err_in = np.mean((d["input"] - d["clean"]) ** 2)
    err_out = np.mean((m(x).numpy() - d["clean"]) ** 2)
    assert err_out < 0.35 * err_in


def test_dncnn_kair_layout_parity():
    d, state = _fixture("dncnn_kair_tiny.npz")
    m = DnCNN(num_layers=5, features=16, bn=False)
    load_state_dict(m, convert_dncnn_kair(state, m))
    m.eval()
    np.testing.assert_allclose(m(paddle.to_tensor(d["input"])).numpy(), d["output"], atol=1e-5)


def test_dncnn_converters_reject_wrong_model_or_layout():
    _, sao = _fixture("dncnn_saoyan_s25.npz")
    _, kair = _fixture("dncnn_kair_tiny.npz")
    with pytest.raises(ValueError, match="num_layers=17"):
        convert_dncnn_saoyan(sao, DnCNN(num_layers=20))
    with pytest.raises(ValueError, match="bn=False"):
        convert_dncnn_kair(kair, DnCNN(num_layers=5, features=16, bn=True))
    with pytest.raises(KeyError):
        convert_dncnn_saoyan(kair)
    with pytest.raises(KeyError):
        convert_dncnn_kair(sao)


@pytest.mark.parametrize("mkldnn", [False, True], ids=["plain", "onednn"])
def test_dncnn_export_roundtrip(tmp_path, mkldnn):
    from utils_export import export_roundtrip

    d, state = _fixture("dncnn_saoyan_s25.npz")
    m = DnCNN(num_layers=17)
    load_state_dict(m, convert_dncnn_saoyan(state, m))
    dyn, inf = export_roundtrip(m, d["input"][:, :, :24, :20], str(tmp_path), mkldnn=mkldnn)
    np.testing.assert_allclose(inf, dyn, atol=1e-4)


@pytest.mark.parametrize("name,layers", [("dncnn_s_sigma25", 17), ("dncnn_b", 20)])
def test_dncnn_configs_build(name, layers):
    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "configs", "dncnn", f"{name}.yml"))
    m = build_model(cfg["model"])
    assert isinstance(m, DnCNN) and m.num_layers == layers and m.bn


def test_zero_init_tail_starts_as_identity_and_keeps_the_checkpoint_layout():
    from ppRestore.models.dncnn import DnCNN

    paddle.seed(0)
    net = DnCNN(in_channels=1, num_layers=5, features=8, zero_init_tail=True)
    ref = DnCNN(in_channels=1, num_layers=5, features=8)
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [
        (k, v.shape) for k, v in ref.state_dict().items()
    ]
    net.train()  # BN in training mode: still exactly the identity
    x = paddle.rand([2, 1, 13, 17])
    assert float((net(x) - x).abs().max()) == 0.0
    # the tail still learns (its input activations are non-zero)
    opt = paddle.optimizer.Adam(1e-2, parameters=net.parameters())
    ((net(x) - 0.5 * x) ** 2).mean().backward()
    opt.step()
    assert float(net.tail.weight.abs().sum()) > 0
