"""CMFNet port: structure, parameter names/count, exact resampling, official parity."""

from __future__ import annotations

import os

import numpy as np
import paddle  # a hard dependency: a broken install must fail, not skip
import pytest

from ppRestore.models.cmfnet import CMFNet, checkpoint_filter_fn, count_parameters  # noqa: E402
from ppRestore.models.layers.resample import BilinearUp2, bilinear_down2  # noqa: E402
from ppRestore.registry import CONVERTERS, MODELS  # noqa: E402
from ppRestore.weights.convert import read_foreign_checkpoint  # noqa: E402
from ppRestore.weights.safe_load import WeightsError, load_state_dict  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TINY = dict(n_feat=8, scale_unetfeats=3, reduction=4)


@pytest.fixture(scope="module")
def tiny_io():
    return dict(np.load(os.path.join(FIX, "cmfnet_tiny_io.npz")))


@pytest.fixture(scope="module")
def tiny_state():
    return read_foreign_checkpoint(os.path.join(FIX, "cmfnet_tiny.pth"), backend="zip")


def _bilinear_ref(x: np.ndarray, scale: float) -> np.ndarray:
    """PyTorch's bilinear (align_corners=False, given scale_factor) in numpy, per axis."""

    def axis(a: np.ndarray, ax: int) -> np.ndarray:
        n = a.shape[ax]
        m = int(np.floor(n * scale))
        src = np.maximum((np.arange(m) + 0.5) / scale - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        t = (src - lo).reshape([-1 if i == ax else 1 for i in range(a.ndim)])
        return np.take(a, lo, axis=ax) * (1 - t) + np.take(a, hi, axis=ax) * t

    return axis(axis(x.astype(np.float64), 2), 3)


def test_registered():
    assert MODELS.get("CMFNet") is CMFNet
    assert CONVERTERS.get("cmfnet") is checkpoint_filter_fn
    assert CMFNet.pad_multiple == 8 and CMFNet.scale == 1


def test_full_size_parameter_count_equals_official():
    # Official CMFNet(): 17,241,279 parameters (shared PReLU counted once).
    model = CMFNet()
    assert count_parameters(model) == 17_241_279
    prelus = [p for n, p in model.named_parameters() if n.endswith("._weight")]
    assert len(prelus) == 1  # one shared slope


def test_state_dict_keys_match_official(tiny_state):
    model = CMFNet(**TINY)
    keys = list(model.state_dict().keys())
    official = list(tiny_state.keys())  # fixture written by the official code

    # Official PReLU slots: shallow_featN.1 and every block's body.1.
    def is_prelu(k: str) -> bool:
        return k.endswith(".body.1.weight") or (
            k.startswith("shallow_feat") and k.endswith(".1.weight")
        )

    renamed = [k[: -len("weight")] + "_weight" if is_prelu(k) else k for k in official]
    assert keys == renamed  # same names, same order
    for k in (
        "stage1_encoder.encoder_level1.0.CA.conv_du.0.weight",
        "stage2_decoder.skip_attn1.PA.pa.2.weight",
        "stage3_decoder.skip_attn2.SA.conv1.weight",
        "stage3_encoder.down23.down.1.weight",
        "stage1_decoder.up32.up.1.weight",
        "mix.w",
        "sam3o.conv3.weight",
        "shallow_feat2.1._weight",
        "stage3_decoder.decoder_level3.1.body.1._weight",
    ):
        assert k in keys, k
    # One PReLU object under 3 shallow names + 3 branches x (6 encoder + 6 decoder + 2
    # skip-attention blocks) body names.
    sd = model.state_dict()
    prelu_keys = [k for k in keys if k.endswith("._weight")]
    assert len(prelu_keys) == 3 + 3 * (6 + 6 + 2)
    assert len({id(sd[k]) for k in prelu_keys}) == 1


def test_converter_maps_prelu_only(tiny_state):
    model = CMFNet(**TINY)
    out = checkpoint_filter_fn(tiny_state, model)
    changed = {k for k in tiny_state if k not in out}
    assert changed and all(k.endswith(".weight") for k in changed)
    assert {k[: -len("weight")] + "_weight" for k in changed} == {
        k for k in model.state_dict() if k.endswith("._weight")
    }
    for k in changed:  # values untouched
        np.testing.assert_array_equal(out[k[: -len("weight")] + "_weight"], tiny_state[k])


@pytest.mark.parametrize("hw", [(4, 4), (6, 10), (16, 12), (34, 22)])
def test_resample_exact_vs_interpolate(hw):
    import paddle.nn.functional as F

    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    x = paddle.to_tensor(rng.standard_normal((2, 5, *hw)).astype("float32"))
    up = BilinearUp2(5)
    ref_up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert float((up(x) - ref_up).abs().max()) < 1e-6
    ref_down = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    assert float((bilinear_down2(x) - ref_down).abs().max()) < 1e-6
    # And against PyTorch's definition (numpy), including odd sizes for 0.5x.
    np.testing.assert_allclose(up(x).numpy(), _bilinear_ref(x.numpy(), 2.0), atol=1e-6)
    xo = x[:, :, : hw[0] - 1, :]
    np.testing.assert_allclose(
        bilinear_down2(xo).numpy(), _bilinear_ref(xo.numpy(), 0.5), atol=1e-6
    )
    assert len(up.state_dict()) == 0  # the fixed kernel is not a weight
    assert len(up.parameters()) == 0


def test_parity_with_official_outputs(tiny_state, tiny_io):
    model = CMFNet(**TINY)
    load_state_dict(model, checkpoint_filter_fn(tiny_state, model))
    model.eval()
    with paddle.no_grad():
        aux = model(paddle.to_tensor(tiny_io["input"]), return_aux=True)
        plain = model(paddle.to_tensor(tiny_io["input"]))
    assert set(aux) == {"out", "mixed_img", "mix_factor", "sam_imgs", "x_final"}
    for k in ("out", "mixed_img", "mix_factor", "x_final"):
        np.testing.assert_allclose(aux[k].numpy(), tiny_io[k], atol=1e-4, rtol=0, err_msg=k)
    for i in range(3):
        np.testing.assert_allclose(
            aux["sam_imgs"][i].numpy(), tiny_io[f"sam_img{i + 1}"], atol=1e-4, rtol=0
        )
    np.testing.assert_array_equal(plain.numpy(), aux["out"].numpy())
    # The fixture's PReLU/mix were moved off their defaults, so this parity is meaningful.
    assert abs(float(tiny_io["mix_factor"][0]) - 1 / (1 + np.exp(-1))) > 1e-3


def test_shared_prelu_keys_must_agree(tiny_state):
    model = CMFNet(**TINY)
    state = checkpoint_filter_fn(tiny_state, model)
    state["stage2_encoder.encoder_level1.0.body.1._weight"] = np.array([0.9], "float32")
    with pytest.raises(WeightsError, match="shared parameter"):
        load_state_dict(model, state)


def test_shared_prelu_loads_into_one_parameter(tiny_state):
    model = CMFNet(**TINY)
    load_state_dict(model, checkpoint_filter_fn(tiny_state, model))
    want = tiny_state["shallow_feat1.1.weight"]
    sd = model.state_dict()
    for k in sd:
        if k.endswith("._weight"):
            np.testing.assert_array_equal(sd[k].numpy(), want)
    assert float(model.shallow_feat3[1]._weight) == float(
        model.stage3_decoder.skip_attn2.body[1]._weight
    )
    assert model.shallow_feat1[1] is model.stage2_decoder.decoder_level2[0].body[1]


def test_backward_and_shape_check():
    model = CMFNet(n_feat=4, scale_unetfeats=2, reduction=2)
    x = paddle.rand([1, 3, 8, 12])
    aux = model(x, return_aux=True)
    loss = aux["out"].mean() + sum(i.mean() for i in aux["sam_imgs"])
    loss.backward()
    assert model.mix.w.grad is not None
    assert model.shallow_feat1[1]._weight.grad is not None
    with pytest.raises(ValueError, match="divisible by 4"):
        model(paddle.rand([1, 3, 8, 10]))


@pytest.mark.parametrize("name", ["cmfnet_deblur", "cmfnet_dehaze", "cmfnet_deraindrop"])
def test_configs_load_and_build(name):
    from ppRestore.builder import build_model
    from ppRestore.config import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "configs", "cmfnet", name + ".yml")
    cfg = load_config(path, ["model.n_feat=4", "model.scale_unetfeats=2", "model.reduction=2"])
    assert cfg["task"] == name.split("_")[1]
    assert cfg["infer"]["pad_multiple"] == CMFNet.pad_multiple
    assert cfg["loss"] == {"types": [{"type": "CMFNetLoss"}], "coef": [1.0]}
    sched = cfg["lr_scheduler"]
    # Epoch arithmetic of the official recipe: 150 epochs, 3 of them warm-up.
    assert sched["T_max"] + sched["warmup_iters"] == cfg["iters"]
    assert cfg["iters"] == 50 * sched["warmup_iters"] == 150 * cfg["train"]["eval_interval"]
    model = build_model(cfg["model"])
    assert isinstance(model, CMFNet)
    assert list(model.tail.weight.shape) == [3, 4, 3, 3]  # the -o width override took effect
    assert count_parameters(model) == count_parameters(
        CMFNet(n_feat=4, scale_unetfeats=2, reduction=2)
    )
    # Defaults in the base config are the official full-size ones.
    full = load_config(path)["model"]
    assert {k: full[k] for k in ("n_feat", "scale_unetfeats", "reduction", "bias")} == {
        "n_feat": 96,
        "scale_unetfeats": 48,
        "reduction": 4,
        "bias": False,
    }
