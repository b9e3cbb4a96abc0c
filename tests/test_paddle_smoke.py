"""Smoke subset for the supported Paddle range (``PADDLE_MIN`` in ppRestore/__init__.py).

Runs in the normal suite on the current Paddle, and ``.ci/run`` runs this file alone in a
second venv with the lowest supported Paddle (2.6.2, CPU wheel), with
``PPRESTORE_EXPECT_PADDLE=2.6.2`` so the run proves which Paddle it used: restore the
demo photos with the shipped model, export + Paddle Inference round trip, one training
step. Everything goes through the real CLIs in subprocesses, as a user runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ppRestore import check_paddle_version
from ppRestore.data.io import read_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=e, capture_output=True, text=True, timeout=600
    )


def test_paddle_in_supported_range():
    import paddle

    assert check_paddle_version(paddle.__version__) is None, paddle.__version__
    want = os.environ.get("PPRESTORE_EXPECT_PADDLE")
    if want:
        assert paddle.__version__ == want


def test_demo_restore_export_and_deploy_round_trip(tmp_path):
    demo = tmp_path / "demo"
    r = run(
        "tools/infer.py", "-c", "configs/demo.yml", "--model_path", "demo_color_denoise",
        "--image_path", "demo/", "--save_dir", str(demo), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    noisy = read_image(os.path.join(REPO, "demo", "chelsea_noisy.png")).data
    dyn = read_image(str(demo / "chelsea_noisy.png")).data
    assert dyn.shape == noisy.shape
    # the shipped denoiser really changes the photo (smooths the sigma-25 noise)
    assert np.abs(dyn.astype(int) - noisy).mean() > 5

    exp = tmp_path / "export"
    r = run(
        "tools/export.py", "-c", "configs/demo.yml", "--model_path", "demo_color_denoise",
        "--save_dir", str(exp),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    names = os.listdir(exp)
    assert "deploy.yaml" in names and "model.pdiparams" in names
    # Paddle 2.x writes the protobuf program, Paddle 3 the PIR json one
    assert "model.json" in names or "model.pdmodel" in names

    dep = tmp_path / "deploy"
    r = run(
        "deploy/python/infer.py", "--config", str(exp / "deploy.yaml"),
        "--image_path", "demo/chelsea_noisy.png", "--save_dir", str(dep),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    pi = read_image(str(dep / "chelsea_noisy.png")).data
    # Paddle Inference (oneDNN) vs the dynamic graph: same 8-bit result up to rounding
    assert np.abs(pi.astype(int) - dyn).max() <= 2


def test_png_codecs_survive_paddle_import(tmp_path):
    """Paddle 2.x's libraries capture zlib from Pillow/OpenCV when imported first (PNG
    decoding then fails); importing ppRestore first loads the codecs first, and the
    other order warns on 2.x. Paddle 3 has no such problem (no warning)."""
    code = (
        "import ppRestore, paddle, numpy as np\n"
        "from ppRestore.data.io import read_image, write_image\n"
        "a = read_image('demo/chelsea_noisy.png').data\n"
        f"write_image({str(tmp_path / 'o.png')!r}, a)\n"
        f"assert (read_image({str(tmp_path / 'o.png')!r}).data == a).all()\n"
        "print(paddle.__version__)\n"
    )
    r = run("-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    major = int(r.stdout.strip().split(".")[0])
    r = run("-W", "always", "-c", "import paddle\nimport ppRestore")
    assert r.returncode == 0, r.stderr[-2000:]
    warned = "breaks PNG decoding" in r.stderr
    assert warned == (0 < major < 3), r.stderr[-2000:]


def test_one_training_step(tmp_path):
    # synthetic document pairs: no data files needed
    r = run(
        "tools/train.py", "-c", "configs/pmrnet/pmrnet_document.yml", "--save_dir", str(tmp_path),
        "-o", "iters=1", "batch_size=1", "train_dataset.size=64", "train_dataset.num=2",
        "val_dataset.num=1", "val_dataset.size=64",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.isfile(tmp_path / "iter_1" / "model.pdparams")


@pytest.mark.parametrize("version", ["2.5.2", "3.4.0"])
def test_import_refuses_paddle_outside_range_in_one_line(tmp_path, version):
    # a fake distribution ahead of site-packages: importlib.metadata finds it first
    info = tmp_path / f"paddlepaddle-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: paddlepaddle\nVersion: {version}\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    e = dict(os.environ, **env)
    r = subprocess.run(
        [sys.executable, "tools/infer.py", "-c", "configs/demo.yml", "--model_path", "demo_color_denoise", "--image_path", "demo/"], cwd=REPO, env=e, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"paddlepaddle {version}" in lines[0], r.stderr
    assert ">=2.6.2,<3.4" in lines[0]
    # a notebook / library import gets an ImportError with the same line
    r = subprocess.run(
        [sys.executable, "-c", "import ppRestore"], cwd=str(tmp_path), env=e,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("ImportError: ")
    ok = subprocess.run(
        [sys.executable, "-c", "import ppRestore"], cwd=str(tmp_path),
        env=dict(e, PPRESTORE_SKIP_PADDLE_CHECK="1"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
