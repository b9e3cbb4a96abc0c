"""tools/infer.py, tools/export.py and deploy/python/infer.py as a user runs them.

The CLIs run in a subprocess; the test-only models are registered by importing
``toy_models`` first (``python -c`` wrapper), everything else is the real CLI.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import paddle
import pytest
import toy_models  # noqa: F401
import yaml

from ppRestore.data.io import read_image, write_image
from ppRestore.inference.batch import output_path
from ppRestore.registry import MODELS
from ppRestore.weights.safe_load import save_weights
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")


def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return helpers.run_cli(script, *args, preload=("toy_models",))


run_inproc = helpers.run_main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    paddle.seed(0)
    save_weights(MODELS.get("_ToyDownUp")().state_dict(), str(d / "w.pdparams"))
    (d / "toy.yml").write_text(yaml.safe_dump({"model": {"type": "_ToyDownUp"}, "task": "test"}))
    imgs = d / "imgs"
    rng = np.random.default_rng(0)
    write_image(str(imgs / "a.png"), rng.integers(0, 256, (21, 30, 3), dtype=np.uint8))
    write_image(str(imgs / "b.jpg"), rng.integers(0, 256, (17, 13, 3), dtype=np.uint8))
    write_image(str(imgs / "grey.png"), rng.integers(0, 256, (9, 11, 1), dtype=np.uint8))
    write_image(str(imgs / "c16.tif"), rng.integers(0, 65535, (10, 12, 3), dtype=np.uint16))
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d


def test_infer_file(setup, tmp_path):
    d = setup
    r = run_cli(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--image_path",
        str(d / "imgs" / "a.png"),
        "--save_dir",
        str(tmp_path),
        "--compare",
    )
    assert r.returncode == 0, r.stderr
    out = read_image(str(tmp_path / "a.png"))
    assert out.data.shape == (21, 30, 3)
    cmp = read_image(str(tmp_path / "a_compare.png")).data
    assert cmp.shape == (18 + 21, 30 * 2 + 8, 3)  # a label band above input | output
    band = cmp[:18]
    assert band.min() < 128 and band.max() == 255  # dark text on white
    assert (band[:, :30] < 128).any() and (band[:, 38:] < 128).any()  # both halves labelled
    assert "1 restored, 0 failed" in r.stderr


def test_infer_folder_with_a_broken_file(setup, tmp_path):
    d = setup
    r = run_cli(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--image_path",
        str(d / "imgs"),
        "--save_dir",
        str(tmp_path / "out"),
        "--tile",
        "16",  # the smallest tile accepted; still tiles a 21 x 30 image
        "--tile_overlap",
        "4",
    )
    assert r.returncode == 1  # one file failed
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "broken.png" in failed[0]
    assert "4 restored, 1 failed: broken.png" in r.stderr
    for name in ("a.png", "b.jpg", "grey.png", "c16.tif"):
        src = read_image(str(d / "imgs" / name))
        out = read_image(output_path(name, str(tmp_path / "out"), src.data.dtype))
        assert out.data.shape == src.data.shape and out.data.dtype == src.data.dtype
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.jpg", "c16.tif", "grey.png"]


def test_infer_refuses_to_overwrite_inputs_and_missing_weights(setup, tmp_path, capsys):
    d = setup
    before = (d / "imgs" / "a.png").read_bytes()
    code, err = run_inproc(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--image_path",
        str(d / "imgs" / "a.png"),
        "--save_dir",
        str(d / "imgs"),
        capsys=capsys,
    )
    assert code != 0 and "--overwrite" in err
    assert (d / "imgs" / "a.png").read_bytes() == before
    code, err = run_inproc(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "missing.pdparams"),
        "--image_path",
        str(d / "imgs" / "a.png"),
        "--save_dir",
        str(tmp_path / "o"),
        capsys=capsys,
    )
    assert code != 0 and "missing.pdparams" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_export_then_deploy_infer(setup, tmp_path, capsys):
    d = setup
    code, err = run_inproc(
        "tools/export.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--save_dir",
        str(tmp_path / "exp"),
        "--no_measure_memory",
        capsys=capsys,
    )
    assert code == 0, err
    assert (tmp_path / "exp" / "deploy.yaml").is_file()
    # deploy/python/infer.py as a user runs it (subprocess)
    r = run_cli(
        "deploy/python/infer.py",
        "--config",
        str(tmp_path / "exp" / "deploy.yaml"),
        "--image_path",
        str(d / "imgs" / "*.png"),
        "--save_dir",
        str(tmp_path / "res"),
        "--cpu_threads",
        "1",
        "--enable_mkldnn",
    )
    assert r.returncode == 1  # broken.png
    assert "2 restored, 1 failed: broken.png" in r.stderr
    # the deploy result equals the dynamic-graph result (same pre/post-processing)
    code, err = run_inproc(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--image_path",
        str(d / "imgs" / "a.png"),
        "--save_dir",
        str(tmp_path / "dyn"),
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    a = read_image(str(tmp_path / "res" / "a.png")).data.astype(int)
    b = read_image(str(tmp_path / "dyn" / "a.png")).data.astype(int)
    assert np.abs(a - b).max() <= 1


def test_unwritable_save_dir_is_one_line(setup, tmp_path, capsys):
    d = setup
    (tmp_path / "afile").write_text("x")
    code, err = run_inproc(
        "tools/infer.py",
        "-c",
        str(d / "toy.yml"),
        "--model_path",
        str(d / "w.pdparams"),
        "--image_path",
        str(d / "imgs" / "a.png"),
        "--save_dir",
        str(tmp_path / "afile" / "sub"),
        capsys=capsys,
    )
    assert code == 1
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in err


def test_animated_gif_restores_the_first_frame_and_says_so(setup, tmp_path, capsys):
    from PIL import Image as PILImage

    from ppRestore.inference.predictor import Predictor

    rng = np.random.default_rng(1)
    frames = [PILImage.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)) for _ in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert read_image(str(gif)).frames == 3
    one = tmp_path / "one.gif"
    frames[0].save(one)
    assert read_image(str(one)).frames == 1

    d = setup
    args = ["-c", str(d / "toy.yml"), "--model_path", str(d / "w.pdparams")]
    code, err = run_inproc(
        "tools/infer.py", *args, "--image_path", str(gif), "--save_dir", str(tmp_path / "o"),
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("NOTE")]
    assert notes == [f"NOTE {gif}: 3 frames; only the first is restored"], err
    ref = Predictor.from_config(str(d / "toy.yml"), str(d / "w.pdparams")).restore(str(one))
    # cv2 writes no GIF: the result is a PNG of the same name
    assert output_path(str(gif), str(tmp_path / "o")).endswith("anim.png")
    out = read_image(str(tmp_path / "o" / "anim.png"))
    np.testing.assert_array_equal(out.data, ref.data)
    # a single-frame file gets no note
    code, err = run_inproc(
        "tools/infer.py", *args, "--image_path", str(one), "--save_dir", str(tmp_path / "p"),
        capsys=capsys,
    )  # fmt: skip
    assert code == 0 and "NOTE" not in err, err


def test_tile_progress_bar_stays_out_of_log_files(tmp_path):
    """A tile bar refreshed per tile would fill a log with carriage-return lines: with
    stderr redirected to a file, nothing is written."""
    import sys as _sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "from ppRestore.inference.cli import TileProgress\n"
        "p = TileProgress()\n"
        "for i in range(1, 6):\n"
        "    p(i, 5)\n"
    )
    log = tmp_path / "err.log"
    with open(log, "w") as f:
        env = dict(os.environ, PYTHONPATH=repo)
        subprocess.run([_sys.executable, "-c", code], stderr=f, check=True, cwd=repo, env=env)
    assert log.read_text() == ""
