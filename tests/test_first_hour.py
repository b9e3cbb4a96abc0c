"""What a new user meets in the first hour (issue 12 item 5): the README's weights table,
docs/data.md, dataset folders found relative to the config / $PPRESTORE_DATA, labelled
--compare images, the training start-up line / train.log / warnings, progress bars only
on a terminal, and no Paddle noise lines."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ppRestore.config import DATA_ENV, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(rel: str) -> str:
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- docs
def test_readme_says_which_weights_ship_download_or_come_from_you():
    readme = _read("README.md")
    assert "cmfnet_deblur.pdparams \\" not in readme  # the old first "Use it" line
    assert "--model_path cmfnet_deblur " in readme
    for word in ("shipped", "downloaded", "Bring your own", "PPRESTORE_MIRROR", "docs/data.md"):
        assert word in readme
    from ppRestore.weights.zoo import ZOO

    for name in ZOO:  # every zoo name is in the README's table
        base = re.sub(r"_sigma(15|25|50)$", "_sigma", name)
        assert name in readme or base in readme, name


def test_data_page_names_every_dataset_and_layout():
    page = _read("docs/data.md")
    for name in ("train400", "Set12", "Set5", "Kodak24", "GoPro", "DeRainDrop", "O-HAZE"):
        assert name in page
    for cfg in ("cmfnet_deblur", "cmfnet_dehaze", "cmfnet_deraindrop"):
        root = load_config(os.path.join(REPO, "configs", "cmfnet", f"{cfg}.yml"))["train_dataset"][
            "dataset_root"
        ]
        assert root in page, root  # the layout shown is the one the config reads
    assert DATA_ENV in page


def test_model_zoo_gives_a_conversion_command_for_every_source():
    page = _read("docs/model_zoo.md")
    from ppRestore.registry import ARCHS

    for arch in ARCHS.keys():
        if ARCHS.get(arch).sources and arch != "srcnn_ps":
            assert f"--arch {arch} " in page, arch
    assert "DnCNN-B/net.pth" in page and "-o model.num_layers=20" in page


# ---------------------------------------------------------------- dataset folders
def _cfg(tmp_path, root: str) -> str:
    d = tmp_path / "cfgs"
    d.mkdir(exist_ok=True)
    p = d / "c.yml"
    p.write_text(
        "model: {type: DnCNN}\n"
        f"train_dataset: {{type: SyntheticDataset, dataset_root: {root}, channels: 1}}\n"
    )
    return str(p)


def test_dataset_root_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfgs" / "imgs").mkdir(parents=True)
    cfg = load_config(_cfg(tmp_path, "imgs"))
    assert cfg["train_dataset"]["dataset_root"] == str(tmp_path / "cfgs" / "imgs")


def test_dataset_root_under_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "store" / "GoPro" / "train").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(_cfg(tmp_path, "data/GoPro/train"))
    assert cfg["train_dataset"]["dataset_root"] == str(tmp_path / "store" / "GoPro" / "train")
    cfg = load_config(_cfg(tmp_path, "../shared/data/GoPro/train"))
    assert cfg["train_dataset"]["dataset_root"] == str(tmp_path / "store" / "GoPro" / "train")


def test_missing_dataset_names_where_it_looked(tmp_path, monkeypatch):
    from ppRestore.data.datasets import build_dataset

    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(_cfg(tmp_path, "nowhere/train"))
    with pytest.raises(FileNotFoundError) as ei:
        build_dataset(cfg["train_dataset"], mode="train")
    msg = str(ei.value)
    assert "dataset folder not found: nowhere/train" in msg
    assert str(tmp_path / "nowhere" / "train") in msg  # the current folder
    assert str(tmp_path / "cfgs" / "nowhere" / "train") in msg  # the config's folder
    assert DATA_ENV in msg and "docs/data.md" in msg and "\n" not in msg


# ---------------------------------------------------------------- --compare, progress
def test_compare_image_is_labelled_input_and_output():
    from ppRestore.data.io import Image
    from ppRestore.inference.batch import compare_image

    a = Image(np.full((30, 40, 3), 128, np.uint8))
    b = Image(np.full((30, 40, 3), 64, np.uint8))
    c = compare_image(a, b)
    band, body = c[:18], c[18:]
    assert body.shape == (30, 88, 3) and (body[:, :40] == 128).all() and (body[:, 48:] == 64).all()
    assert (band[:, :40] < 128).any() and (band[:, 48:] < 128).any()  # text over each half
    ink = (band[..., 0] < 250).sum(axis=0)
    assert ink[:4].sum() == 0 and ink[40:48].sum() == 0  # margins stay white
    c16 = compare_image(
        Image(np.zeros((30, 40, 1), np.uint16)), Image(np.zeros((30, 40, 1), np.uint16))
    )
    assert c16.dtype == np.uint16 and c16[:18].max() == 65535


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_folder_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, tty):
    from ppRestore.data.io import write_image
    from ppRestore.inference.batch import run_batch

    for n in ("a", "b", "c"):
        write_image(str(tmp_path / f"{n}.png"), np.zeros((8, 8, 3), np.uint8))
    err = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    res = run_batch(lambda im: im, str(tmp_path), str(tmp_path / "out"))
    assert len(res.restored) == 3
    bar = re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d", err.getvalue())  # count and elapsed<ETA
    assert bool(bar) == tty, err.getvalue()


# ---------------------------------------------------------------- Paddle noise
def test_paddle_noise_lines_are_hidden(tmp_path):
    code = "import ppRestore, paddle; print('ok')"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLOG_minloglevel", "PPRESTORE_PADDLE_LOGS")
    }
    env["PYTHONPATH"] = REPO
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "ok" in r.stdout
    assert "No ccache found" not in r.stderr
    if shutil.which("ccache") is None:  # the line exists here, so the filter is what hid it
        env["PPRESTORE_PADDLE_LOGS"] = "1"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert "No ccache found" in r.stderr


# ---------------------------------------------------------------- training start-up
@pytest.mark.slow
def test_training_start_line_log_file_and_warnings(tmp_path):
    from ppRestore.data.io import write_image

    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(str(imgs / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    save = tmp_path / "run"
    base = [
        sys.executable, os.path.join(REPO, "tools", "train.py"),
        "-c", os.path.join(REPO, "configs", "dncnn", "dncnn_s32_sigma25.yml"),
        "--save_dir", str(save), "--device", "cpu", "-o",
        f"train_dataset.dataset_root={imgs}", "train_dataset.repeat=1",
        "model.num_layers=3", "model.features=4",
        "train.log_iters=1", "train.save_interval=2",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(base + ["iters=2", "batch_size=1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    start = [ln for ln in r.stdout.splitlines() if "start:" in ln]
    assert len(start) == 1
    for part in (
        "3 training samples",
        "parameters",
        "iterations 0->2",
        "batch 1",
        "device cpu",
        str(save),
    ):
        assert part in start[0], start[0]
    assert "warmup_iters (100) >= iters (2)" in r.stdout  # the config's warm-up is 100
    log = (save / "train.log").read_text()
    assert "start:" in log and "iter: 2/2" in log
    r = subprocess.run(
        base + ["iters=4", "batch_size=2", "lr_scheduler.warmup_iters=0", "--resume_model", "auto"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "iters was 2, now 4" in r.stdout and "batch_size was 1, now 2" in r.stdout
    assert "warmup_iters" not in r.stdout
    assert "iterations 2->4" in (save / "train.log").read_text()  # appended on resume
