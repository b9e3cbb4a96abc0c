"""The package as users get it from ``pip install .``: build the wheel offline, install it
into a fresh virtual environment (no checkout on its path) and run the ``pprestore``
command from an empty folder with a shipped config and zoo name."""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from ppRestore.commands import main as pprestore
from ppRestore.resources import data_dir, find_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GLOG_minloglevel="3", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_installs_and_pprestore_infer_runs_from_an_empty_folder(tmp_path):
    # setuptools < 70 builds wheels through the 'wheel' package: the [test] extra installs
    # it (CI); a dev venv without it cannot build offline.
    pytest.importorskip("wheel")
    # Build from a copy of what the wheel is made of: an in-tree build would leave
    # build/ in the checkout, and a stale build/lib could slip deleted modules in.
    src = tmp_path / "src"
    src.mkdir()
    keep = ("setup.py", "pyproject.toml", "README.md", "ppRestore", "configs", "pretrained")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "_data")
    for name in keep:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=skip)
        else:
            shutil.copy2(path, src / name)
    whl_dir = tmp_path / "whl"
    r = _run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(whl_dir)],
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = glob.glob(str(whl_dir / "*.whl"))

    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    py = str(venv / "bin" / "python")
    # The new environment borrows this one's dependencies (paddle, numpy, ...) through a
    # .pth line; ppRestore itself comes only from the wheel (its own site-packages is
    # searched first, and the editable install's finder in this one is not run).
    purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], ".")
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]]
    with open(os.path.join(purelib.stdout.strip(), "_deps.pth"), "w") as f:
        f.write("\n".join(dict.fromkeys(deps)) + "\n")
    r = _run(
        [sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--ignore-installed",
         "-q", wheel],
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(empty / "X.png")
    r = _run([py, "-c", "import ppRestore; print(ppRestore.__file__)"], cwd=str(empty))
    assert str(venv) in r.stdout, r.stdout + r.stderr  # not the checkout
    r = _run(
        [str(venv / "bin" / "pprestore"), "infer", "-c", "configs/demo.yml",
         "--model_path", "demo_color_denoise", "--image_path", "X.png", "--save_dir", "Y",
         "--quiet"],
        cwd=str(empty),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.asarray(Image.open(empty / "Y" / "X.png"))
    assert out.shape == (24, 40, 3)
    assert "1 restored, 0 failed" in r.stderr


def test_pprestore_dispatches_and_refuses_unknown_commands(capsys):
    assert pprestore(["--help"]) == 0
    assert "infer" in capsys.readouterr().out
    assert pprestore(["infre"]) == 2
    assert "Did you mean 'infer'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        pprestore(["convert", "--help"])
    assert e.value.code == 0 and "--arch" in capsys.readouterr().out


def test_missing_config_paths_resolve_to_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = os.path.join(data_dir("configs"), "demo.yml")
    assert os.path.isfile(shipped)
    assert find_config("configs/demo.yml") == shipped
    assert find_config("srcnn/srcnn_x3.yml") == os.path.join(
        data_dir("configs"), "srcnn", "srcnn_x3.yml"
    )
    assert find_config("configs/nope.yml") == "configs/nope.yml"
    assert find_config("../configs/demo.yml") == "../configs/demo.yml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yml").write_text("model: {type: X}\n")
    assert find_config("configs/demo.yml") == "configs/demo.yml"  # a local file wins
