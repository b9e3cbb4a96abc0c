"""Bad inputs through the command-line tools, as a user runs them.

Every failure must be one ``error:``/``FAILED`` line naming the file or key, with a
non-zero exit code and no Python traceback. Subprocess runs are few (each pays the
Paddle import); the rest call ``main()`` in-process, where a traceback would surface
as an exception and fail the test the same way.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALICIOUS = os.path.join(REPO, "tests", "fixtures", "malicious")


def run_cli(script: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_minloglevel="3")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def run_main(script: str, *args: str, capsys) -> tuple:
    code = runpy.run_path(os.path.join(REPO, script))["main"](list(args))
    cap = capsys.readouterr()
    return code, cap.err


def _error_lines(stderr: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith(("error:", "FAILED"))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-layer colour DnCNN with random weights, its config, and a val config."""
    pytest.importorskip("paddle")
    from ppRestore.builder import build_model
    from ppRestore.weights.safe_load import save_weights

    d = tmp_path_factory.mktemp("cli_rel")
    model_cfg = {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4}
    save_weights(build_model(model_cfg).state_dict(), str(d / "w.pdparams"))
    (d / "model.yml").write_text(yaml.safe_dump({"model": model_cfg}), encoding="utf-8")
    return d


def _val_cfg(d, root) -> str:
    cfg = {
        "model": {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4},
        "val_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": str(root),
            "channels": 3,
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
        },
    }
    p = d / f"val_{abs(hash(str(root)))}.yml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(p)


# ---------------------------------------------------------------- tools/val.py


def test_val_bad_image_in_the_set_is_one_line(tiny, bad_images_dir, tmp_path):
    r = run_cli(
        "tools/val.py", "-c", _val_cfg(tmp_path, bad_images_dir),
        "--model_path", str(tiny / "w.pdparams"), "--save_dir", str(tmp_path / "out"),
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "empty.png: empty file" in errs[0], r.stderr


@pytest.mark.parametrize(
    "case, phrase, code",
    [
        ("malicious", "refused to load global 'os.system'", 2),
        ("http", "only https:// URLs are allowed", 2),
        ("missing_root", "dataset folder not found", 2),
        ("bad_key", "unknown key 'val_datset'. Did you mean 'val_dataset'?", 2),
        ("bad_override", "unknown key 'itres'", 2),
        ("save_dir_under_file", "Not a directory", 1),
    ],
)
def test_val_bad_inputs(tiny, tmp_path, monkeypatch, capsys, case, phrase, code):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(root / "a.png")
    cfg = _val_cfg(tmp_path, root)
    w = str(tiny / "w.pdparams")
    args = ["-c", cfg, "--model_path", w, "--save_dir", str(tmp_path / "out")]
    if case == "malicious":
        args[3] = os.path.join(MALICIOUS, "os_system.pdparams")
    elif case == "http":
        args[3] = "http://example.com/w.pdparams"
    elif case == "missing_root":
        args[1] = _val_cfg(tmp_path, tmp_path / "nope")
    elif case == "bad_key":
        (tmp_path / "k.yml").write_text("val_datset: {type: X}\n")
        args[1] = str(tmp_path / "k.yml")
    elif case == "bad_override":
        args += ["-o", "itres=3"]
    elif case == "save_dir_under_file":
        (tmp_path / "file.txt").write_text("x")
        args[-1] = str(tmp_path / "file.txt" / "out")
    got, err = run_main("tools/val.py", *args, capsys=capsys)
    assert got == code, err
    errs = _error_lines(err)
    assert len(errs) == 1 and phrase in errs[0], err
    assert not (tmp_path / "pprestore_pwned_marker").exists()


# ---------------------------------------------------------------- tools/train.py


def _train_cfg(d, root) -> str:
    cfg = {
        "model": {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4},
        "train_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": str(root),
            "channels": 3,
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
            "transforms": [{"type": "PairedRandomCrop", "patch_size": 8}],
        },
        "loss": {"types": [{"type": "MSELoss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [100]},
        "iters": 2,
        "batch_size": 2,
    }
    p = d / "train.yml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(p)


def test_train_bad_image_in_training_set_fails_fast(bad_images_dir, tmp_path):
    """Paddle's DataLoader reads in a helper thread even with num_workers=0; an exception
    there used to kill the thread and leave training waiting forever. Now: one line."""
    r = run_cli(
        "tools/train.py", "-c", _train_cfg(tmp_path, bad_images_dir),
        "--save_dir", str(tmp_path / "run"), cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and bad_images_dir in errs[0], r.stderr


@pytest.mark.parametrize("case", ["malicious", "incomplete"])
def test_train_resume_from_bad_checkpoint(tmp_path, monkeypatch, capsys, case):
    from PIL import Image

    pytest.importorskip("paddle")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(root / f"{i}.png")
    cfg = _train_cfg(tmp_path, root)
    ck = tmp_path / "ck"
    ck.mkdir()
    with open(os.path.join(MALICIOUS, "os_system.pdparams"), "rb") as f:
        (ck / "model.pdparams").write_bytes(f.read())
    if case == "malicious":
        (ck / "COMPLETE").write_text('{"iteration": 1}')
        (ck / "train_state.json").write_text('{"iteration": 1}')
    args = ["-c", cfg, "--save_dir", str(tmp_path / "run"), "--resume_model", str(ck)]
    code, err = run_main("tools/train.py", *args, capsys=capsys)
    assert code != 0
    errs = _error_lines(err)
    phrase = "refused to load global 'os.system'" if case == "malicious" else "incomplete"
    assert len(errs) == 1 and phrase in errs[0], err
    assert not (tmp_path / "pprestore_pwned_marker").exists()
