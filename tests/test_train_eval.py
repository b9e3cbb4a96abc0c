"""Evaluator: padding to pad_multiple, SR scale crop, per-image CSV, identity metrics."""

import os

import numpy as np
import paddle

from ppRestore.data.datasets import SyntheticDataset
from ppRestore.engine.evaluator import Evaluator, run_model
from tests.train_utils import make_images


class _Identity(paddle.nn.Layer):
    pad_multiple = 8
    scale = 1

    def forward(self, x):
        assert x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0  # padded before the model
        return x


class _Up2(paddle.nn.Layer):
    pad_multiple = 4
    scale = 2

    def forward(self, x):
        return paddle.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def test_run_model_pads_and_crops():
    x = paddle.rand([1, 3, 30, 21])
    np.testing.assert_array_equal(run_model(_Identity(), x), x.numpy())
    assert run_model(_Up2(), x).shape == (1, 3, 60, 42)


def test_evaluator_identity_and_csv(tmp_path):
    root = make_images(str(tmp_path / "c"), n=3, size=30)
    ds = SyntheticDataset(root, degradations=[{"type": "GaussianNoise", "sigma": 20}], mode="val")
    clean = SyntheticDataset(root, mode="val")  # no degradation: lq == gt
    res = Evaluator(clean).evaluate(_Identity(), save_dir=str(tmp_path / "v"))
    assert res.psnr == float("inf") and abs(res.ssim - 1) < 1e-12
    res = Evaluator(ds, crop_border=2).evaluate(_Identity(), save_dir=str(tmp_path / "v"))
    # the identity model's output is the degraded input, so both metrics coincide
    assert abs(res.psnr - res.input_psnr) < 1e-9 and abs(res.ssim - res.input_ssim) < 1e-9
    assert 20 < res.psnr < 25  # sigma 20 noise ~ 22.1 dB
    lines = open(os.path.join(tmp_path, "v", "per_image.csv")).read().splitlines()
    assert lines[0] == "name,psnr,ssim,input_psnr,input_ssim"
    assert [ln.split(",")[0] for ln in lines[1:]] == ["img00.png", "img01.png", "img02.png", "mean"]
    assert len(res.samples) == 3 and res.samples[0][2].shape == (3, 30, 30)


def test_official_cmfnet_config_trains_two_iterations(tmp_path):
    """configs/cmfnet/cmfnet_deblur.yml end to end (tiny widths, tiny paired folder)."""
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer

    for split in ("train", "test"):
        make_images(str(tmp_path / split / "input"), n=2, size=24, seed=1)
        make_images(str(tmp_path / split / "target"), n=2, size=24, seed=2)
    cfg_path = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "configs", "cmfnet", "cmfnet_deblur.yml"
    )
    cfg = load_config(
        cfg_path,
        [
            "model.n_feat=4", "model.scale_unetfeats=2", "model.reduction=2", "iters=2",
            f"train_dataset.dataset_root={tmp_path / 'train'}", f"val_dataset.dataset_root={tmp_path / 'test'}",
            "train_dataset.transforms=[{type: PadToSize, size: [32, 32]}, {type: PairedRandomCrop, crop_size: 32}, {type: PairedRandomFlipRot}]",
            "val_dataset.transforms=[{type: PairedCenterCrop, crop_size: 16}]",
        ],
    )  # fmt: skip
    res = Trainer.from_config(
        cfg, save_dir=str(tmp_path / "o"), do_eval=True, save_interval=2, log_iters=1
    ).train()
    assert (
        res["iteration"] == 2 and res["checkpoint"].endswith("iter_2") and res["best"]["iter"] == 2
    )


def test_evaluator_uses_the_infer_section(tmp_path):
    class _Needs16(paddle.nn.Layer):
        pad_multiple = 4

        def forward(self, x):
            assert x.shape[2] % 16 == 0 and x.shape[3] % 16 == 0
            return x

    root = make_images(str(tmp_path / "c"), n=1, size=20)
    ds = SyntheticDataset(root, mode="val")
    res = Evaluator(ds, infer_cfg={"pad_multiple": 16, "pad_mode": "reflect"}).evaluate(_Needs16())
    assert res.psnr == float("inf")
