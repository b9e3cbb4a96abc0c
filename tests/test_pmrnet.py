"""PmrNet: shapes, gradients, and parity with the official PMRID network.

The fixture ``tests/fixtures/pmrnet_parity.npz`` was produced by the official PyTorch code
(``tools/fixtures/make_pmrnet_fixture.py``); no torch is needed here.
"""

from __future__ import annotations

import os

import numpy as np
import paddle  # a hard dependency: a broken install must fail, not skip
import pytest

from ppRestore.registry import CONVERTERS, MODELS  # noqa: E402
from ppRestore.weights.safe_load import WeightsError, load_state_dict  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "pmrnet_parity.npz")


def _load_seeded():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "fixtures", "pmrnet_seeded.py")
    spec = importlib.util.spec_from_file_location("pmrnet_seeded", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


seeded_state = _load_seeded().seeded_state


@pytest.fixture(scope="module")
def fx():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def full_model():
    m = MODELS.get("PmrNet")(in_channels=4)
    m.eval()
    return m


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _run(model, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def _parse_shapes(keys, shapes) -> dict:
    return {str(k): tuple(int(d) for d in str(s).split("x")) for k, s in zip(keys, shapes)}


@pytest.mark.parametrize("in_ch,h,w", [(4, 64, 64), (3, 64, 96), (1, 32, 32)])
def test_forward_backward_shapes(in_ch: int, h: int, w: int) -> None:
    paddle.seed(0)
    model = MODELS.build({"type": "PmrNet", "in_channels": in_ch, "width": 0.25})
    x = paddle.rand([1, in_ch, h, w])
    x.stop_gradient = False
    y = model(x)
    assert y.shape == [1, in_ch, h, w]
    y.mean().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    # The stem conv is the farthest from the loss; it must still learn.
    assert float(model.conv0.conv.weight.grad.abs().sum()) > 0


def test_class_attributes_and_validation() -> None:
    cls = MODELS.get("PmrNet")
    assert cls.pad_multiple == 32 and cls.scale == 1
    m = cls(in_channels=3, width=0.25)
    assert m.in_channels == m.out_channels == 3
    with pytest.raises(ValueError):
        cls(in_channels=0)
    with pytest.raises(ValueError):
        cls(width=0)


def test_size_not_multiple_of_16_is_a_clear_error() -> None:
    m = MODELS.get("PmrNet")(in_channels=3, width=0.25)
    with pytest.raises(ValueError, match="divisible by 16"):
        m(paddle.rand([1, 3, 40, 64]))


def test_global_residual_identity_when_head_is_zero() -> None:
    # With out1 zeroed the network must return its input exactly (inp + 0).
    m = MODELS.get("PmrNet")(in_channels=3, width=0.25)
    m.out1.conv.weight.set_value(np.zeros(m.out1.conv.weight.shape, np.float32))
    m.out1.conv.bias.set_value(np.zeros(m.out1.conv.bias.shape, np.float32))
    x = np.random.default_rng(1).random((2, 3, 32, 64)).astype(np.float32)
    np.testing.assert_array_equal(_run(m, x), x)


def test_param_names_and_count_match_official(full_model, fx) -> None:
    shapes = _shapes(full_model)
    assert shapes == _parse_shapes(fx["keys"], fx["shapes"])
    assert sum(int(np.prod(s)) for s in shapes.values()) == 1_031_908  # official Network


def test_seeded_weights_match_fixture(full_model, fx) -> None:
    state = seeded_state(_shapes(full_model), int(fx["random_seed"]))
    sums = np.array([float(state[k].astype(np.float64).sum()) for k in sorted(state)])
    np.testing.assert_allclose(sums, fx["random_sums"], rtol=0, atol=1e-9)


def test_torch_converter_parity_with_official_network(full_model, fx) -> None:
    # Official-key weights -> pmrnet:torch -> strict load -> same output as the official
    # PyTorch Network carrying them.
    state = seeded_state(_shapes(full_model), int(fx["random_seed"]))
    converted = CONVERTERS.get("pmrnet:torch")(state, full_model)
    load_state_dict(full_model, converted, strict=True)
    out = _run(full_model, fx["input"])
    ref = fx["random_out"]
    err = np.abs(out - ref).max()
    assert err <= 2e-6 * np.abs(ref).max(), err  # fp32 summation-order noise only


def test_mge_converter_parity_with_official_network(full_model, fx) -> None:
    # The same weights laid out as in the MegEngine checkpoint (shapes recorded from the
    # real file) must convert to the same network.
    mge_shapes = _parse_shapes(fx["mge_keys"], fx["mge_shapes"])
    state = seeded_state(_shapes(full_model), int(fx["random_seed"]))
    mge_state = {k: state[k].reshape(mge_shapes[k]) for k in mge_shapes}
    assert any(v.ndim == 5 for v in mge_state.values())  # depthwise (C,1,1,k,k)
    converted = CONVERTERS.get("pmrnet:mge")(mge_state, full_model)
    load_state_dict(full_model, converted, strict=True)
    out = _run(full_model, fx["input"])
    err = np.abs(out - fx["random_out"]).max()
    assert err <= 2e-6 * np.abs(fx["random_out"]).max(), err


def test_converters_map_real_checkpoint_tensors(full_model, fx) -> None:
    shapes = _shapes(full_model)
    keys = [k[len("torch/") :] for k in fx if k.startswith("torch/")]
    t = CONVERTERS.get("pmrnet:torch")({k: fx["torch/" + k] for k in keys}, full_model)
    m = CONVERTERS.get("pmrnet:mge")({k: fx["mge/" + k] for k in keys}, full_model)
    for k in keys:
        assert t[k].shape == shapes[k] and t[k].dtype == np.float32
        np.testing.assert_array_equal(t[k], fx["torch/" + k])
        assert m[k].shape == shapes[k]
        np.testing.assert_array_equal(m[k].ravel(), fx["mge/" + k].ravel())
    # Transposed conv: Paddle's (in, out, kh, kw) equals both official layouts.
    assert shapes["dec2.upsample.weight"] == (64, 32, 2, 2)
    assert fx["mge/enc1.0.conv1.depthwise.weight"].shape == (16, 1, 1, 5, 5)
    assert m["enc1.0.conv1.depthwise.weight"].shape == (16, 1, 5, 5)


def test_converter_strips_module_prefix_and_strict_load_reports(full_model, fx) -> None:
    state = seeded_state(_shapes(full_model), 1)
    wrapped = {"module." + k: v for k, v in state.items()}
    conv = CONVERTERS.get("pmrnet:torch")(wrapped, full_model)
    assert set(conv) == set(state)
    del conv["out1.conv.bias"]
    with pytest.raises(WeightsError, match="out1.conv.bias"):
        load_state_dict(full_model, conv, strict=True)


def test_wrong_in_channels_is_reported(fx) -> None:
    m = MODELS.get("PmrNet")(in_channels=3)
    state = seeded_state(_parse_shapes(fx["keys"], fx["shapes"]), 0)
    with pytest.raises(WeightsError, match="conv0.conv.weight"):
        load_state_dict(m, CONVERTERS.get("pmrnet:torch")(state, m))


OFFICIAL_DIR = os.environ.get("PMRID_OFFICIAL_DIR", "")


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(OFFICIAL_DIR, "models", "mge_pretrained.ckp")),
    reason="set PMRID_OFFICIAL_DIR to a MegEngine/PMRID checkout to check the real weights",
)
def test_real_mge_checkpoint_parity(full_model, fx) -> None:
    # Extra check with the full official MegEngine weights (not shipped with the tests;
    # the seeded-weight tests above cover the mapping in CI).
    from ppRestore.weights.safe_load import restricted_loads
    from ppRestore.weights.zoo import sha256_of

    path = os.path.join(OFFICIAL_DIR, "models", "mge_pretrained.ckp")
    assert sha256_of(path) == str(fx["mge_sha256"])
    with open(path, "rb") as f:
        state = restricted_loads(f.read(), source=path)
    load_state_dict(full_model, CONVERTERS.get("pmrnet:mge")(state, full_model))
    err = np.abs(_run(full_model, fx["input"]) - fx["mge_out"]).max()
    assert err <= 1e-4, err


TORCH_NPZ = os.environ.get("PMRID_TORCH_NPZ", "")


@pytest.mark.skipif(
    not os.path.isfile(TORCH_NPZ),
    reason="set PMRID_TORCH_NPZ to the .npz written by make_pmrnet_fixture.py --dump-torch-npz",
)
def test_real_torch_checkpoint_parity(full_model, fx) -> None:
    # Extra check with the full official PyTorch weights (dumped to numpy by the fixture
    # script, since the tests do not use torch).
    with np.load(TORCH_NPZ) as f:
        state = {k: f[k] for k in f.files}
    load_state_dict(full_model, CONVERTERS.get("pmrnet:torch")(state, full_model))
    err = np.abs(_run(full_model, fx["input"]) - fx["torch_out"]).max()
    assert err <= 1e-4, err


@pytest.mark.parametrize("name", ["pmrnet_document.yml", "pmrnet_raw.yml"])
def test_configs_build_and_run(name: str) -> None:
    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "configs", "pmrnet", name), ["model.width=0.25"])
    model = build_model(cfg["model"])
    c = cfg["model"]["in_channels"]
    out = _run(model, np.full((1, c, 32, 32), 0.5, np.float32))
    assert out.shape == (1, c, 32, 32) and np.isfinite(out).all()
