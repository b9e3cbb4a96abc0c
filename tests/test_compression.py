"""Distillation (ppRestore/compression/distill.py), channel pruning (prune.py,
tools/prune.py) and result grids (tools/val.py --save_grid), on tiny models."""

from __future__ import annotations

import json
import os

import numpy as np
import paddle
import pytest
import yaml

from ppRestore.builder import build_model
from ppRestore.compression.prune import count_params, prune_model
from ppRestore.weights.safe_load import load_state_dict, load_weights, save_weights
from tests.train_utils import REPO_ROOT, make_images


def _tool(name: str):
    """Load tools/<name>.py as a module (without putting tools/ on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"_pprestore_tool_{name}", os.path.join(REPO_ROOT, "tools", f"{name}.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY_DNCNN = {"type": "DnCNN", "in_channels": 1, "num_layers": 4, "features": 8}


def _tiny_cfg(tmp, model, **extra) -> dict:
    data = make_images(
        os.path.join(tmp, "clean"), n=4, size=24, channels=model.get("in_channels", 1)
    )
    cfg = {
        "model": dict(model),
        "iters": 2,
        "batch_size": 2,
        "train_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": data,
            "channels": model.get("in_channels", 1),
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
            "transforms": [{"type": "PairedRandomCrop", "patch_size": 16}],
        },
        "val_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": data,
            "channels": model.get("in_channels", 1),
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
        },
        "loss": {"types": [{"type": "MSELoss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "CosineWarmup", "learning_rate": 1e-3, "warmup_iters": 1},
        "train": {"save_interval": 2, "log_iters": 1, "seed": 1},
    }
    cfg.update(extra)
    return cfg


def _write(path, cfg) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def _save_model(model_cfg, path, seed=0) -> str:
    paddle.seed(seed)
    save_weights(build_model(model_cfg).state_dict(), path)
    return path


# ------------------------------------------------------------------ distillation
def test_distill_student_equal_to_teacher_gives_zero_kd(tmp_path):
    """With the teacher's own weights in the student, the output term is exactly 0: the
    teacher saw the student's batch (recorded by the pre-hook), not another one."""
    from ppRestore.engine.trainer import Trainer

    w = _save_model(TINY_DNCNN, str(tmp_path / "teacher.pdparams"))
    cfg = _tiny_cfg(
        str(tmp_path),
        {**TINY_DNCNN, "pretrained": w},
        distill={"teacher": {"model": TINY_DNCNN, "weights": w}, "gt_weight": 0.0},
    )
    cfg["lr_scheduler"]["learning_rate"] = 0.0
    tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "run"))
    # BatchNorm: the student trains with batch statistics, the teacher runs in eval
    # mode; put the student's BN layers in eval too so both compute the same function
    tr.model.train()
    for layer in tr.model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer.eval()
    lq, gt = tr._next_batch()[:2]
    total, terms = tr._forward_loss(lq, gt)
    assert float(terms["kd_out"]) == pytest.approx(0.0, abs=1e-12)
    assert float(total) == pytest.approx(0.0, abs=1e-12)


def test_distill_trains_with_feature_hints_and_saves_plain_student(tmp_path):
    from ppRestore.engine.trainer import Trainer

    teacher_cfg = {**TINY_DNCNN, "features": 12}
    w = _save_model(teacher_cfg, str(tmp_path / "teacher.pdparams"), seed=3)
    tpath = _write(str(tmp_path / "teacher.yml"), {"model": teacher_cfg})
    student = {**TINY_DNCNN, "features": 4}
    cfg = _tiny_cfg(
        str(tmp_path),
        student,
        distill={
            "teacher": {"config": tpath, "weights": w},
            "output_weight": 0.5,
            "output_loss": {"type": "L1Loss"},
            "features": [{"student": "body.0", "teacher": "body.1", "weight": 0.01}],
        },
    )
    tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "run"))
    adapter = tr.loss.adapters[0]
    assert adapter.weight.shape == [12, 4, 1, 1]  # student 4 ch -> teacher 12 ch
    before_t = {k: v.numpy().copy() for k, v in tr.loss.teacher[0].state_dict().items()}
    before_a = adapter.weight.numpy().copy()
    tr.model.train()
    lq, gt = tr._next_batch()[:2]
    total, terms = tr._forward_loss(lq, gt)
    assert set(terms) == {"MSELoss", "kd_out", "kd_body.0"}
    # the output term is the configured L1 between student and teacher outputs
    with paddle.no_grad():
        t_out = tr.loss.teacher[0](lq)
        s_out = tr.model(lq)
    assert float(terms["kd_out"]) == pytest.approx(float((s_out - t_out).abs().mean()), rel=1e-5)
    expect = (
        float(terms["MSELoss"]) + 0.5 * float(terms["kd_out"]) + 0.01 * float(terms["kd_body.0"])
    )
    assert float(total) == pytest.approx(expect, rel=1e-5)
    tr._iter_data = None
    res = tr.train()
    assert res["iteration"] == 2
    # teacher frozen, adapter trained, checkpoint = the plain student
    for k, v in tr.loss.teacher[0].state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before_t[k])
    assert not np.array_equal(adapter.weight.numpy(), before_a)
    saved = load_weights(os.path.join(res["checkpoint"], "model.pdparams"))
    assert set(saved) == set(build_model(student).state_dict())


def test_distill_config_errors_are_one_line(tmp_path):
    from ppRestore.engine.trainer import Trainer

    w = _save_model(TINY_DNCNN, str(tmp_path / "t.pdparams"))
    base = {"teacher": {"model": TINY_DNCNN, "weights": w}}
    for bad, msg in [
        ({**base, "feature": []}, "unknown key"),
        ({"teacher": {"model": TINY_DNCNN}}, "weights"),
        ({**base, "features": [{"student": "nope", "teacher": "body.0"}]}, "no layer named 'nope'"),
    ]:
        cfg = _tiny_cfg(str(tmp_path), TINY_DNCNN, distill=bad)
        with pytest.raises(ValueError, match=msg):
            Trainer.from_config(cfg, save_dir=str(tmp_path / "run"))


# ------------------------------------------------------------------ pruning
PRUNE_CASES = [
    (
        {"type": "DnCNN", "in_channels": 1, "num_layers": 5, "features": 8, "bn": False},
        (1, 1, 16, 16),
    ),
    (
        {"type": "UNet", "in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 2},
        (1, 3, 16, 16),
    ),
    ({"type": "PmrNet", "in_channels": 3, "width": 0.25}, (1, 3, 32, 32)),
]


@pytest.mark.parametrize("cfg,shape", PRUNE_CASES, ids=[c[0]["type"] for c in PRUNE_CASES])
def test_pruning_zero_filters_is_exact(cfg, shape):
    """Zero half the filters of every group (all producers of a residual group, the
    biases too): they have the lowest L1, so pruning removes exactly them, and since a
    zero channel contributes nothing (ReLU(0) = 0, concat/residual offsets respected)
    the smaller network computes the same output."""
    from ppRestore.compression.prune import SPECS

    paddle.seed(0)
    model = build_model(cfg)
    model.eval()
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    groups = SPECS[cfg["type"]][0](cfg, state)
    rng = np.random.default_rng(0)
    for g in groups:
        drop = rng.choice(g.size, g.size - g.size // 2, replace=False)
        for key, axis in g.prod:
            idx = [slice(None)] * state[key].ndim
            idx[axis] = drop
            state[key][tuple(idx)] = 0.0
        for key, axis, offset in g.slices:
            if (
                key.endswith(".bias")
                and offset == 0
                and axis == 0
                and any(key[: -len(".bias")] == p[: -len(".weight")] for p, _ in g.prod)
            ):
                state[key][drop] = 0.0
    load_state_dict(model, state)
    x = paddle.rand(shape)
    with paddle.no_grad():
        ref = model(x).numpy()
    new_cfg, new_state, report = prune_model(cfg, state, 0.5, min_channels=1)
    assert all(r["after"] == r["before"] // 2 for r in report)
    small = build_model(new_cfg)
    load_state_dict(small, new_state)  # strict
    small.eval()
    with paddle.no_grad():
        out = small(x).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert count_params(new_state) < 0.4 * count_params(state)


def test_pruning_ratio_zero_is_identity_and_bad_ratio_refused():
    cfg = {**TINY_DNCNN, "bn": True}
    paddle.seed(1)
    state = {k: v.numpy() for k, v in build_model(cfg).state_dict().items()}
    new_cfg, new_state, _ = prune_model(cfg, state, 0.0)
    assert new_cfg["features"] == [8, 8, 8]
    for k in state:
        np.testing.assert_array_equal(new_state[k], state[k])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_model(cfg, state, 1.0)
    with pytest.raises(ValueError, match="supports"):
        prune_model({"type": "SRCNN"}, state, 0.5)


def test_prune_tool_writes_a_model_that_trains_exports_and_deploys(tmp_path):
    prune_tool = _tool("prune")
    val_tool = _tool("val")

    from ppRestore.engine.trainer import Trainer
    from ppRestore.inference.export import export_model
    from ppRestore.inference.predictor import Predictor

    model = {**TINY_DNCNN, "bn": True}
    cfg_path = _write(str(tmp_path / "c.yml"), _tiny_cfg(str(tmp_path), model))
    w = _save_model(model, str(tmp_path / "w.pdparams"))
    out = str(tmp_path / "pruned")
    assert (
        prune_tool.main(["-c", cfg_path, "--model_path", w, "--ratio", "0.5", "--save_dir", out])
        == 0
    )
    rep = json.load(open(os.path.join(out, "prune_report.json")))
    assert rep["params_after"] < rep["params_before"] / 3
    with open(os.path.join(out, "config.yml")) as f:
        new_cfg = yaml.safe_load(f)
    assert new_cfg["model"]["features"] == [4, 4, 4]
    assert new_cfg["model"]["pretrained"] == os.path.join(os.path.abspath(out), "model.pdparams")
    # trains from model.pretrained
    tr = Trainer.from_config(new_cfg, save_dir=str(tmp_path / "ft"))
    np.testing.assert_array_equal(
        tr.model.state_dict()["head.weight"].numpy(), load_weights(rep["weights"])["head.weight"]
    )
    res = tr.train()
    ft = os.path.join(res["checkpoint"], "model.pdparams")
    # evaluates and exports; the exported model deploys through the Predictor
    assert (
        val_tool.main(["-c", rep["config"], "--model_path", ft, "--save_dir", str(tmp_path / "v")])
        == 0
    )
    export_model(
        rep["config"], ft, str(tmp_path / "exp"), measure_memory=False, log=lambda *a: None
    )
    pred = Predictor.from_exported(str(tmp_path / "exp"), cpu_threads=1)
    x = np.random.default_rng(0).random((1, 1, 16, 16), dtype=np.float32)
    small = build_model(new_cfg["model"])
    load_state_dict(small, load_weights(ft))
    ref = Predictor.from_model(small).forward(x)
    np.testing.assert_allclose(pred.forward(x), ref, atol=1e-4)
    # user mistakes: one line, exit 2
    assert (
        prune_tool.main(["-c", cfg_path, "--model_path", w, "--ratio", "1.5", "--save_dir", out])
        == 2
    )


# ------------------------------------------------------------------ result grids
def test_val_save_grid_writes_labelled_triplets(tmp_path, capsys):
    val_tool = _tool("val")

    cfg_path = _write(str(tmp_path / "c.yml"), _tiny_cfg(str(tmp_path), TINY_DNCNN))
    w = _save_model(TINY_DNCNN, str(tmp_path / "w.pdparams"))
    save = str(tmp_path / "val")
    assert (
        val_tool.main(["-c", cfg_path, "--model_path", w, "--save_dir", save, "--save_grid", "2"])
        == 0
    )
    from ppRestore.data.io import read_image

    files = sorted(os.listdir(os.path.join(save, "grids")))
    assert files == ["grid_img00.png", "grid_img01.png", "grids.png"]
    g = read_image(os.path.join(save, "grids", "grid_img00.png")).data
    # three 24x24 panels side by side under a white label strip with black text
    assert g.shape[1] == 3 * 24 + 2 * 4 and g.shape[0] == 24 + 36
    strip = g[:36]
    assert (strip < 100).any() and (strip == 255).mean() > 0.5
    # the panels are the images: the ground-truth panel equals the clean input
    clean = read_image(os.path.join(str(tmp_path), "clean", "img00.png")).data
    gt_panel = g[36:, 2 * 28 :, 0]
    np.testing.assert_array_equal(gt_panel, clean.reshape(24, 24))
    stacked = read_image(os.path.join(save, "grids", "grids.png")).data
    assert stacked.shape[0] == 2 * (g.shape[0] + 4)
    assert val_tool.main(["-c", cfg_path, "--model_path", w, "--save_grid", "-1"]) == 2


def test_distill_runs_resume(tmp_path):
    """Output-only distillation resumes bit-exactly; with feature hints the adapters'
    optimizer moments are found again (saved under structured names) in this process."""
    from ppRestore.engine.trainer import Trainer

    tcfg = {**TINY_DNCNN, "features": 12}
    w = _save_model(tcfg, str(tmp_path / "t.pdparams"), seed=2)
    for feats in ([], [{"student": "body.0", "teacher": "body.0", "weight": 0.01}]):
        cfg = _tiny_cfg(
            str(tmp_path),
            TINY_DNCNN,
            distill={"teacher": {"model": tcfg, "weights": w}, "features": feats},
        )
        cfg["iters"] = 4
        a, b = str(tmp_path / f"a{len(feats)}"), str(tmp_path / f"b{len(feats)}")
        full = Trainer.from_config(cfg, save_dir=a).train()
        res = Trainer.from_config(cfg, save_dir=b, resume_model=os.path.join(a, "iter_2")).train()
        assert full["iteration"] == res["iteration"] == 4
        wa = load_weights(os.path.join(full["checkpoint"], "model.pdparams"))
        wb = load_weights(os.path.join(res["checkpoint"], "model.pdparams"))
        if not feats:
            for k in wa:
                np.testing.assert_array_equal(wa[k], wb[k])
        opt = load_weights(os.path.join(a, "iter_2", "model.pdopt"))
        assert any(k.startswith("distill.adapters.0.weight") for k in opt) == bool(feats)


def test_bn_gamma_criterion_prunes_switched_off_channels_exactly():
    """Channels whose BatchNorm gamma and beta are 0 output exactly 0 (eval mode): the
    bn_gamma criterion removes them (output unchanged), the L1 criterion, which looks at
    the conv filters only, does not know they are off."""
    cfg = {"type": "DnCNN", "in_channels": 1, "num_layers": 5, "features": 8, "bn": True}
    paddle.seed(0)
    model = build_model(cfg)
    model.eval()
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    # the head has no BatchNorm (L1 fallback): switch half its filters off by zeroing them
    state["head.weight"][rng.choice(8, 4, replace=False)] = 0.0
    for i in range(3):
        off = rng.choice(8, 4, replace=False)
        state[f"body.{i}.bn.weight"][off] = 0.0
        state[f"body.{i}.bn.bias"][off] = 0.0
        state[f"body.{i}.bn._variance"][:] = 1.0 + rng.random(8).astype(np.float32)
    load_state_dict(model, state)
    x = paddle.rand([1, 1, 16, 16])
    with paddle.no_grad():
        ref = model(x).numpy()
    outs = {}
    for crit in ("bn_gamma", "l1"):
        new_cfg, new_state, _ = prune_model(cfg, state, 0.5, min_channels=1, criterion=crit)
        small = build_model(new_cfg)
        load_state_dict(small, new_state)
        small.eval()
        with paddle.no_grad():
            outs[crit] = small(x).numpy()
    np.testing.assert_allclose(outs["bn_gamma"], ref, atol=1e-5)
    assert np.abs(outs["l1"] - ref).max() > 1e-3
    with pytest.raises(ValueError, match="criterion"):
        prune_model(cfg, state, 0.5, criterion="l2")


def test_prune_tool_recalibrates_batchnorm(tmp_path):
    prune_tool = _tool("prune")
    model = {**TINY_DNCNN, "bn": True}
    cfg_path = _write(str(tmp_path / "c.yml"), _tiny_cfg(str(tmp_path), model))
    w = _save_model(model, str(tmp_path / "w.pdparams"))
    outs = {}
    for n in (0, 2):
        out = str(tmp_path / f"p{n}")
        args = ["-c", cfg_path, "--model_path", w, "--ratio", "0.5", "--save_dir", out]
        assert prune_tool.main([*args, "--criterion", "bn_gamma", "--recalibrate_bn", str(n)]) == 0
        rep = json.load(open(os.path.join(out, "prune_report.json")))
        assert rep["bn_recalibration_batches"] == n and rep["criterion"] == "bn_gamma"
        outs[n] = load_weights(rep["weights"])
    # same channels kept (same weights), new statistics: measured on data, not sliced
    np.testing.assert_array_equal(outs[0]["body.0.conv.weight"], outs[2]["body.0.conv.weight"])
    assert not np.allclose(outs[0]["body.0.bn._mean"], outs[2]["body.0.bn._mean"])
    assert (
        np.isfinite(outs[2]["body.0.bn._variance"]).all()
        and (outs[2]["body.0.bn._variance"] > 0).all()
    )


def test_pprestore_prune_subcommand_parses_runs_and_is_the_tool(tmp_path, capsys):
    from ppRestore.commands import main as pprestore
    from ppRestore.commands.prune import main as prune_main
    from ppRestore.commands.prune import parse_args

    assert _tool("prune").main is prune_main  # tools/prune.py is a shim over the command
    args = parse_args(["-c", "c.yml", "--model_path", "w", "--ratio", "0.25", "--save_dir", "o"])
    assert (args.ratio, args.min_channels, args.multiple, args.criterion) == (0.25, 4, 1, "l1")
    assert args.recalibrate_bn == 0 and args.opts == []
    assert pprestore(["--help"]) == 0
    assert "prune" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        pprestore(["prune", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pprestore prune" in out and "--ratio" in out
    with pytest.raises(SystemExit) as e:  # --save_dir is required: argparse's exit 2
        pprestore(["prune", "-c", "c.yml", "--model_path", "w", "--ratio", "0.5"])
    assert e.value.code == 2

    model = {**TINY_DNCNN, "bn": True}
    cfg_path = _write(str(tmp_path / "c.yml"), _tiny_cfg(str(tmp_path), model))
    w = _save_model(model, str(tmp_path / "w.pdparams"))
    out_dir = str(tmp_path / "pruned")
    base = ["prune", "-c", cfg_path, "--model_path", w, "--save_dir", out_dir]
    assert pprestore([*base, "--ratio", "0.5", "--multiple", "2"]) == 0
    assert "pruned DnCNN" in capsys.readouterr().out
    with open(os.path.join(out_dir, "config.yml")) as f:
        assert yaml.safe_load(f)["model"]["features"] == [4, 4, 4]
    assert pprestore([*base, "--ratio", "1.0"]) == 2
    assert "--ratio must be in [0, 1)" in capsys.readouterr().err
    assert pprestore([*base[:4], str(tmp_path / "nope.pdparams"), *base[5:], "--ratio", "0.5"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
