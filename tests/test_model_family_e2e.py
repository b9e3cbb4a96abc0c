"""Every model's shipped config: train 2 iterations with the Trainer, restore with the
dynamic-graph Predictor, export, and restore again through Paddle Inference (equal
outputs). Widths and data are shrunk with ``-o`` overrides so the whole file runs in
well under a minute on 2 CPU cores; the configs' structure (model type, datasets,
degradations, losses, infer section) is what is under test."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.train_utils import make_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

L1 = "loss={types: [{type: L1Loss}], coef: [1.0]}"
CROP = "train_dataset.transforms=[{type: PairedRandomCrop, patch_size: 24}]"

# config -> model-shrinking overrides (data overrides are added per case below)
CASES = {
    "cmfnet/cmfnet_deblur.yml": ["model.n_feat=4", "model.scale_unetfeats=2", "model.reduction=2"],
    "pmrnet/pmrnet_document.yml": ["model.width=0.125"],
    "pmrnet/pmrnet_raw.yml": ["model.width=0.125"],
    "srcnn/srcnn_x3.yml": ["model.features=[8, 4]"],
    "srcnn/srcnn_ps_x3.yml": ["model.features=[8, 4]"],
    "dncnn/dncnn_s_sigma25.yml": ["model.num_layers=3", "model.features=8"],
    "unet/unet_denoise.yml": ["model.base_channels=4", "model.depth=2"],
    # PerceptualLoss needs a local VGG19 file; the dynamic conv is what matters here.
    "dmcnn/dmcnn_deblur.yml": ["model.base_channels=8", L1],
}


def _data_overrides(name: str, root: str) -> list:
    if name.startswith("cmfnet"):
        for split in ("train", "test"):
            make_images(os.path.join(root, split, "input"), n=2, size=32, seed=1)
            make_images(os.path.join(root, split, "target"), n=2, size=32, seed=2)
        return [
            f"train_dataset.dataset_root={root}/train",
            f"val_dataset.dataset_root={root}/test",
            "train_dataset.transforms=[{type: PairedRandomCrop, crop_size: 24}]",
        ]
    if name == "pmrnet/pmrnet_document.yml":
        return ["train_dataset.num=2", "train_dataset.size=64", "val_dataset.num=1"]
    make_images(os.path.join(root, "c"), n=2, size=48)
    common = [f"train_dataset.dataset_root={root}/c", f"val_dataset.dataset_root={root}/c"]
    if name == "pmrnet/pmrnet_raw.yml":
        return common + ["train_dataset.patch_size=32", "train_dataset.repeat=1"]
    if name == "srcnn/srcnn_ps_x3.yml":  # its loss skips 18 px per side: a 24-px crop is too small
        return common + [CROP.replace("24", "48")]
    return common + [CROP]


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_trains_infers_and_exports(name, tmp_path):
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from ppRestore.inference.export import export_model
    from ppRestore.inference.predictor import Predictor

    root = str(tmp_path / "data")
    opts = CASES[name] + _data_overrides(name, root) + ["iters=2", "batch_size=1"]
    cfg = load_config(os.path.join(REPO, "configs", name), opts)
    res = Trainer.from_config(
        cfg, save_dir=str(tmp_path / "run"), save_interval=2, log_iters=1, num_workers=0
    ).train()
    assert res["iteration"] == 2
    weights = os.path.join(res["checkpoint"], "model.pdparams")
    assert os.path.isfile(weights)

    dyn = Predictor.from_config(cfg, weights)
    export_model(cfg, weights, str(tmp_path / "export"), measure_memory=False, log=lambda m: None)
    exported = Predictor.from_exported(str(tmp_path / "export"))
    assert dyn.meta["backend"] == "dynamic" and exported.meta["backend"] != "dynamic"
    assert exported.meta["model_type"] == cfg["model"]["type"]
    rng = np.random.default_rng(0)
    if cfg.get("infer", {}).get("color") == "raw":
        bayer = rng.random((38, 46)).astype(np.float32) * 0.5
        a = dyn.restore_raw(bayer, 1600, "RGGB")
        b = exported.restore_raw(bayer, 1600, "RGGB")
        assert a.shape == bayer.shape
    else:
        img = (rng.random((27, 35, 3)) * 255).astype(np.uint8)  # odd size on purpose
        a = dyn.restore(img)
        b = exported.restore(img)
        scale = int(getattr(dyn.options, "scale", 1) or 1)
        assert a.shape == (27 * scale, 35 * scale, 3) and a.dtype == np.uint8
    # the exported graph gives the dynamic graph's result (uint8 outputs may differ by 1
    # level where a value sits on a rounding boundary)
    assert np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) <= 1.0
