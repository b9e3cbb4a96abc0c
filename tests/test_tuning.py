"""tools/tune.py / ppRestore.tuning on a tiny DnCNN config (Optuna: the [tune] extra)."""

from __future__ import annotations

import csv
import os

import pytest
import yaml

from tests.train_utils import REPO_ROOT, make_images

pytest.importorskip("optuna", reason="the [tune] extra (installed by .ci/run)")


def _tool(name: str):
    """Load tools/<name>.py as a module (without putting tools/ on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"_pprestore_tool_{name}", os.path.join(REPO_ROOT, "tools", f"{name}.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cfg(tmp) -> str:
    data = make_images(os.path.join(tmp, "clean"), n=4, size=24, channels=1)
    ds = {
        "type": "SyntheticDataset",
        "dataset_root": data,
        "channels": 1,
        "degradations": [{"type": "GaussianNoise", "sigma": 25}],
    }
    cfg = {
        "model": {
            "type": "DnCNN",
            "in_channels": 1,
            "num_layers": 3,
            "features": 4,
            "bn": False,
            "zero_init_tail": True,
        },
        "iters": 1000,
        "batch_size": 2,
        "train_dataset": {**ds, "transforms": [{"type": "PairedRandomCrop", "patch_size": 16}]},
        "val_dataset": ds,
        "loss": {"types": [{"type": "MSELoss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "CosineWarmup", "learning_rate": 1e-3, "warmup_iters": 1},
        "train": {"log_iters": 100, "seed": 0},
    }
    path = os.path.join(tmp, "c.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def _space(tmp, name, params, **kw) -> str:
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        yaml.safe_dump({"iters": 4, "eval_interval": 2, "params": params, **kw}, f)
    return path


def _rows(save):
    with open(os.path.join(save, "trials.csv")) as f:
        return list(csv.DictReader(f))


def test_tune_writes_csv_best_config_plots_and_resumes(tmp_path, capsys):
    tune = _tool("tune")

    cfg = _cfg(str(tmp_path))
    space = _space(
        str(tmp_path),
        "s.yml",
        {
            "lr_scheduler.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "optimizer.type": {"type": "categorical", "choices": ["Adam", "AdamW"]},
            "loss.types.0.type": {"type": "categorical", "choices": ["MSELoss", "L1Loss"]},
        },
        pruner={"type": "none"},
    )
    save = str(tmp_path / "tune")
    db = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["-c", cfg, "--space", space, "--sampler", "random", "--storage", db, "--save_dir", save]
    assert tune.main([*args, "--trials", "2"]) == 0
    rows = _rows(save)
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    # zero_init_tail: trials start at the noisy input (~20.6 dB) and stay near it
    assert all(float(r["psnr"]) > 15 and r["last_step"] == "4" for r in rows)
    best = max(rows, key=lambda r: float(r["psnr"]))
    with open(os.path.join(save, "best_config.yml")) as f:
        bc = yaml.safe_load(f)
    # the best trial's parameters applied to the config; its own iters kept
    assert bc["optimizer"]["type"] == best["optimizer.type"]
    assert bc["loss"]["types"][0]["type"] == best["loss.types.0.type"]
    assert bc["lr_scheduler"]["learning_rate"] == pytest.approx(
        float(best["lr_scheduler.learning_rate"])
    )
    assert bc["iters"] == 1000
    for png in ("history.png", "importance.png"):
        with open(os.path.join(save, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # resume from the storage: two more trials to reach four, the first two kept
    assert tune.main([*args, "--trials", "4"]) == 0
    rows2 = _rows(save)
    assert len(rows2) == 4 and rows2[:2] == rows
    assert tune.main([*args, "--trials", "4"]) == 0  # already there: runs nothing
    assert len(_rows(save)) == 4
    assert "nothing to run" in capsys.readouterr().out


def test_median_pruner_stops_a_trial_that_falls_behind(tmp_path):
    """A first study trial with a sane learning rate, then (same storage) one with a
    destructive one (0.5): its first evaluation is below the median, so it is pruned."""
    from ppRestore.config import load_config
    from ppRestore.tuning import load_space, run_study

    cfg = load_config(_cfg(str(tmp_path)))
    db = f"sqlite:///{tmp_path / 'p.db'}"
    pr = {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    good = load_space(
        _space(
            str(tmp_path),
            "g.yml",
            {"lr_scheduler.learning_rate": {"type": "float", "low": 0.001, "high": 0.001}},
            pruner=pr,
        )
    )
    bad = load_space(
        _space(
            str(tmp_path),
            "b.yml",
            {"lr_scheduler.learning_rate": {"type": "float", "low": 0.5, "high": 0.5}},
            pruner=pr,
        )
    )
    save = str(tmp_path / "t")
    run_study(cfg, good, 1, save, sampler="random", storage=db, log=lambda *a: None)
    res = run_study(cfg, bad, 2, save, sampler="random", storage=db, log=lambda *a: None)
    rows = _rows(save)
    assert [r["state"] for r in rows] == ["COMPLETE", "PRUNED"]
    assert rows[1]["last_step"] == "2"  # stopped at its first report, not trained to 4
    assert res["best_params"] == {"lr_scheduler.learning_rate": 0.001}


def test_grid_sampler_and_space_errors(tmp_path):
    tune = _tool("tune")

    from ppRestore.tuning import TuneError, load_space

    cfg = _cfg(str(tmp_path))
    space = _space(
        str(tmp_path),
        "grid.yml",
        {
            "lr_scheduler.learning_rate": {
                "type": "float",
                "low": 1e-3,
                "high": 1e-2,
                "grid": [1e-3, 1e-2],
            },
            "batch_size": {"type": "categorical", "choices": [2]},
        },
        pruner={"type": "none"},
    )
    save = str(tmp_path / "g")
    assert (
        tune.main(
            ["-c", cfg, "--space", space, "--sampler", "grid", "--trials", "2", "--save_dir", save]
        )
        == 0
    )
    got = sorted(float(r["lr_scheduler.learning_rate"]) for r in _rows(save))
    assert got == [1e-3, 1e-2]  # the grid, each point once
    bad = _space(str(tmp_path), "bad.yml", {"x": {"type": "float", "low": 1, "high": 0}})
    with pytest.raises(TuneError, match="low"):
        load_space(bad)
    nogrid = _space(
        str(tmp_path),
        "ng.yml",
        {"lr_scheduler.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}},
    )
    assert (
        tune.main(
            ["-c", cfg, "--space", nogrid, "--sampler", "grid", "--trials", "1", "--save_dir", save]
        )
        == 2
    )
    assert tune.main(["-c", cfg, "--space", str(tmp_path / "missing.yml"), "--trials", "1"]) == 2


def test_shipped_search_spaces_apply_to_the_dncnn_config():
    import glob

    from ppRestore.config import load_config, validate
    from ppRestore.tuning import apply_params, load_space

    base = load_config(os.path.join(REPO_ROOT, "configs", "dncnn", "dncnn_s32_sigma25.yml"))
    spaces = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "tune", "*.yml")))
    assert spaces
    for path in spaces:
        space = load_space(path)
        for name, spec in space["params"].items():
            value = spec["choices"][0] if spec["type"] == "categorical" else spec["low"]
            cfg = validate(apply_params(base, {name: value}))
            node, new = base, cfg
            for part in name.split("."):  # every path names a key the config already has
                key = int(part) if isinstance(node, list) else part
                assert isinstance(node, list) or key in node, f"{path}: {name}"
                node, new = node[key], new[key]
            assert new == value


def test_pprestore_tune_subcommand_parses_runs_and_is_the_tool(tmp_path, capsys):
    from ppRestore.commands import main as pprestore
    from ppRestore.commands.tune import main as tune_main
    from ppRestore.commands.tune import parse_args

    assert _tool("tune").main is tune_main  # tools/tune.py is a shim over the command
    args = parse_args(["-c", "c.yml", "--space", "s.yml", "--trials", "3"])
    assert (args.trials, args.sampler, args.storage, args.save_dir) == (
        3,
        "tpe",
        None,
        "output/tune",
    )
    with pytest.raises(SystemExit) as e:
        pprestore(["tune", "--help"])
    assert e.value.code == 0
    assert "usage: pprestore tune" in capsys.readouterr().out

    cfg = _cfg(str(tmp_path))
    space = _space(
        str(tmp_path),
        "s.yml",
        {"lr_scheduler.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-3}},
        pruner={"type": "none"},
    )
    save = str(tmp_path / "t")
    base = ["tune", "-c", cfg, "--space", space, "--sampler", "random", "--save_dir", save]
    assert pprestore([*base, "--trials", "1"]) == 0
    assert "best: trial 0" in capsys.readouterr().out
    assert [r["state"] for r in _rows(save)] == ["COMPLETE"]
    assert pprestore([*base, "--trials", "0"]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
