"""Losses: values, parity with the official CMFNet loss, composition, aux, VGG weights."""

import os

import numpy as np
import paddle
import pytest

from ppRestore.losses import (
    CharbonnierLoss,
    CMFNetLoss,
    EdgeLoss,
    PerceptualLoss,
    PSNRLoss,
    SSIMLoss,
    build_loss,
)
from ppRestore.registry import LOSSES

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "cmfnet_loss.npz")


def test_cmfnet_loss_matches_official():
    """Fixture from the official losses.py (tools/fixtures/make_cmfnet_loss_fixture.py)."""
    f = np.load(FIX)
    p, t = paddle.to_tensor(f["pred"]), paddle.to_tensor(f["target"])
    assert abs(-float(PSNRLoss()(p, t)) - float(f["psnr_loss"])) < 1e-4
    assert abs(float(SSIMLoss()(p, t)) - float(f["ssim_loss"])) < 1e-6
    assert abs(float(EdgeLoss()(p, t)) - float(f["edge_loss"])) < 1e-6
    assert abs(float(CharbonnierLoss()(p, t)) - float(f["charbonnier"])) < 1e-6
    assert abs(float(CMFNetLoss()(p, t)) - float(f["total"])) < 1e-7


def test_psnr_loss_is_negative_psnr():
    a = paddle.full([1, 3, 8, 8], 0.5)
    b = paddle.full([1, 3, 8, 8], 0.6)  # MSE 0.01 -> PSNR 20 dB
    assert float(PSNRLoss()(a, b)) == pytest.approx(-20.0, abs=1e-3)


def test_losses_zero_at_identity_and_backprop():
    x = paddle.rand([2, 3, 16, 16])
    x.stop_gradient = False
    for name in ["MSELoss", "L1Loss", "SSIMLoss"]:
        assert float(LOSSES.build({"type": name})(x, x.detach())) == pytest.approx(0.0, abs=1e-6)
    # Charbonnier-based: sqrt(0 + eps^2) = eps at identity
    assert float(EdgeLoss()(x, x.detach())) == pytest.approx(1e-3, abs=1e-7)
    y = paddle.rand([2, 3, 16, 16])
    total, terms = build_loss(
        {"types": [{"type": "L1Loss"}, {"type": "CMFNetLoss"}], "coef": [1.0, 2.0]}
    )(x, y)
    assert float(total) == pytest.approx(
        float(terms["L1Loss"]) + 2 * float(terms["CMFNetLoss"]), rel=1e-6
    )
    total.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_duplicate_loss_names_and_bad_coef():
    loss = build_loss({"types": [{"type": "L1Loss"}, {"type": "L1Loss"}], "coef": [1, 1]})
    assert loss.names == ["L1Loss", "L1Loss_2"]
    with pytest.raises(ValueError, match="coef"):
        build_loss({"types": [{"type": "L1Loss"}], "coef": [1, 2]})


def test_aux_loss_receives_aux_dict():
    @LOSSES.register(name="_TestAuxLoss")
    class _AuxLoss(paddle.nn.Layer):
        needs_aux = True

        def forward(self, pred, target, aux):
            return paddle.mean(aux["feat"] ** 2)

    loss = build_loss({"types": [{"type": "L1Loss"}, {"type": "_TestAuxLoss"}], "coef": [1, 1]})
    assert loss.needs_aux
    x = paddle.rand([1, 3, 4, 4])
    total, terms = loss(x, x, {"out": x, "feat": paddle.full([1], 3.0)})
    assert float(terms["_TestAuxLoss"]) == pytest.approx(9.0)
    assert not build_loss({"type": "L1Loss"}).needs_aux


def test_perceptual_loss_needs_local_weights(tmp_path):
    with pytest.raises(ValueError, match="vgg_weights"):
        PerceptualLoss()
    with pytest.raises(FileNotFoundError, match="not found"):
        PerceptualLoss(vgg_weights=str(tmp_path / "nope.pdparams"))


def test_perceptual_loss_loads_truncated_vgg(tmp_path):
    from paddle.vision.models import vgg19

    from ppRestore.weights.safe_load import save_weights

    full = vgg19(pretrained=False, num_classes=0)
    # only the layers up to relu2_2 (index 8) are needed; a file with them is enough
    state = {
        f"features.{k}": v
        for k, v in full.features.state_dict().items()
        if int(k.split(".")[0]) <= 8
    }
    path = str(tmp_path / "vgg.pdparams")
    save_weights(state, path)
    loss = PerceptualLoss(vgg_weights=path, layers={"relu1_2": 1.0, "relu2_2": 0.5})
    a, b = paddle.rand([1, 3, 16, 16]), paddle.rand([1, 3, 16, 16])
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(a, b)) > 0
    np.testing.assert_array_equal(loss.features[0].weight.numpy(), full.features[0].weight.numpy())


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "CharbonnierLoss"])
def test_crop_border_ignores_the_patch_rim(name):
    """crop_border=k scores only the centre: a difference confined to the outer k pixels
    costs nothing (Charbonnier: only its eps floor), one inside the centre does."""
    a = paddle.zeros([2, 1, 20, 20])
    rim = np.zeros([2, 1, 20, 20], np.float32)
    rim[..., :6, :] = 1.0
    rim[..., :, -6:] = 1.0
    floor = 1e-3 if name == "CharbonnierLoss" else 0.0
    cropped = LOSSES.build({"type": name, "crop_border": 6})
    assert float(cropped(a, paddle.to_tensor(rim))) == pytest.approx(floor, abs=1e-7)
    assert float(LOSSES.build({"type": name})(a, paddle.to_tensor(rim))) > 0.3
    centre = np.zeros_like(rim)
    centre[..., 10, 10] = 1.0  # 1 of the 8x8 centre pixels
    got = float(cropped(a, paddle.to_tensor(centre)))
    assert got == pytest.approx(1.0 / 64 + floor * 63 / 64, rel=1e-4)
    with pytest.raises(ValueError, match="leaves nothing"):
        LOSSES.build({"type": name, "crop_border": 10})(a, a)
