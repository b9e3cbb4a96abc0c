"""The GUI: its controller (no display needed, runs in CI) and, where Xvfb is installed,
the real Tk window driven by ``tools/gui.py --selftest``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import toy_models  # noqa: F401  (registers the _Toy* test models)
import yaml

from ppRestore.config import ConfigError
from ppRestore.data.io import Image, ImageReadError, ImageWriteError, read_image, write_image
from ppRestore.gui.controller import (
    GuiController,
    ModelSpec,
    RestoreCancelled,
    _PassProgress,
    display_array,
    error_message,
)
from ppRestore.inference.predictor import Predictor
from ppRestore.registry import MODELS
from ppRestore.weights.safe_load import UnsafeWeightsError, WeightsError, save_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gui")
    paddle.seed(0)
    save_weights(MODELS.get("_ToyDownUp")().state_dict(), str(d / "w.pdparams"))
    (d / "toy.yml").write_text(yaml.safe_dump({"model": {"type": "_ToyDownUp"}}))
    (d / "slow.yml").write_text(yaml.safe_dump({"model": {"type": "_ToySlowDownUp"}}))
    save_weights(MODELS.get("_ToyCNN")(channels=1).state_dict(), str(d / "grey.pdparams"))
    (d / "grey.yml").write_text(yaml.safe_dump({"model": {"type": "_ToyCNN", "channels": 1}}))
    rng = np.random.default_rng(0)
    write_image(str(d / "a.png"), rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    write_image(str(d / "rgba.png"), rgba[..., :3], rgba[..., 3])
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d


def ctl_for(d, **kw) -> GuiController:
    return GuiController(ModelSpec(str(d / "toy.yml"), str(d / "w.pdparams")), **kw)


def test_restore_matches_predictor_and_saves(files, tmp_path):
    ctl = ctl_for(files)
    assert ctl.describe_model() == f"{files.name}/toy.yml + {files.name}/w.pdparams"
    ctl.load_image(str(files / "a.png"))
    out = ctl.restore()
    assert ctl.describe_model().startswith("_ToyDownUp on dynamic (pad_multiple 4, scale 1")
    ref = Predictor.from_config(str(files / "toy.yml"), str(files / "w.pdparams")).restore(
        str(files / "a.png")
    )
    # the GUI goes through the one Predictor: bit-identical result
    np.testing.assert_array_equal(out.data, ref.data)
    assert ctl.default_save_path() == str(files / "a_restored.png")
    saved = ctl.save(str(tmp_path / "o.png"))
    np.testing.assert_array_equal(read_image(saved).data, out.data)
    # the input is never overwritten
    with pytest.raises(ImageWriteError, match="overwrite the input"):
        ctl.save(str(files / "a.png"))


def test_alpha_kept_and_new_image_clears_output(files, tmp_path):
    ctl = ctl_for(files)
    ctl.load_image(str(files / "rgba.png"))
    out = ctl.restore()
    assert out.alpha is not None
    ctl.save(str(tmp_path / "o.png"))
    back = read_image(str(tmp_path / "o.png"))
    np.testing.assert_array_equal(back.alpha, read_image(str(files / "rgba.png")).alpha)
    ctl.load_image(str(files / "a.png"))
    assert ctl.output is None
    with pytest.raises(ValueError, match="nothing to save"):
        ctl.save(str(tmp_path / "x.png"))


def test_worker_thread_progress_and_options_without_rebuild(files):
    ctl = ctl_for(files, tile=16)
    ctl.load_image(str(files / "a.png"))
    with ctl._lock:  # hold the worker inside restore() so the job is surely running
        job = ctl.start_restore()
        with pytest.raises(RuntimeError, match="already running"):
            ctl.start_restore()
    assert job.wait(120)
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done", events[-1]
    assert job.seconds > 0
    fr = [v for k, v in events if k == "progress"]
    # 37x53 padded to 40x56, tile 16 with overlap: several tiles, fractions rise to 1
    assert len(fr) > 2 and fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    tiled = job.result.data
    pred = ctl.predictor()
    # tile and self-ensemble change per run without reloading the model
    ctl.set_options(tile="off", self_ensemble=True)
    job = ctl.start_restore()
    assert job.wait(120) and job.result is not None
    assert ctl.predictor() is pred and pred.options.self_ensemble and pred.options.tile is None
    assert np.abs(job.result.data.astype(int) - tiled).max() <= 255  # same size and dtype
    assert job.result.data.shape == tiled.shape
    # switching the model spec rebuilds
    ctl.set_model(config=str(files / "grey.yml"), model_path=str(files / "grey.pdparams"))
    assert ctl.predictor() is not pred


def test_pass_progress_spans_self_ensemble_and_grey_channels(files):
    ctl = GuiController(
        ModelSpec(str(files / "grey.yml"), str(files / "grey.pdparams")),
        tile=16,
        self_ensemble=True,
    )
    ctl.load_image(str(files / "a.png"))
    seen = []
    ctl.restore(progress=seen.append)
    assert ctl.passes_for(ctl.image) == 24  # 8 ensemble passes x 3 channels
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert seen[0] < 1 / 24 + 1e-6  # the first tile is a small part of the whole job


def test_pass_progress_counts_restarts():
    import threading

    got = []
    p = _PassProgress(2, got.append, threading.Event())
    for done in (1, 2, 3, 1, 2, 3):
        p(done, 3)
    assert got == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    ev = threading.Event()
    ev.set()
    with pytest.raises(RestoreCancelled):
        _PassProgress(1, got.append, ev)(1, 3)


def test_cancel_stops_a_tiled_run(files):
    ctl = ctl_for(files, tile=16, self_ensemble=True)
    ctl.load_image(str(files / "a.png"))
    ctl.predictor()  # build first so the cancel lands during the tiles
    job = ctl.start_restore()
    job.cancel()
    assert job.wait(120)
    kinds = []
    while not job.events.empty():
        kinds.append(job.events.get()[0])
    assert kinds[-1] == "cancelled" and job.result is None and ctl.output is None


def test_errors_become_one_line_messages(files, tmp_path):
    ctl = ctl_for(files)
    with pytest.raises(ImageReadError) as e:
        ctl.load_image(str(files / "broken.png"))
    msg = error_message(e.value)
    assert msg.startswith("Cannot read image: ") and "broken.png" in msg and "\n" not in msg

    def job_error(c: GuiController) -> str:
        job = c.start_restore()
        assert job.wait(120)
        kind, payload = job.events.get()
        assert kind == "error"
        assert "\n" not in payload
        return payload

    ctl.load_image(str(files / "a.png"))
    ctl.set_model(config=str(files / "toy.yml"), model_path=str(tmp_path / "missing.pdparams"))
    assert job_error(ctl).startswith("Weights problem: ")
    # weights of another architecture: strict load names the keys
    ctl.set_model(config=str(files / "toy.yml"), model_path=str(files / "grey.pdparams"))
    assert job_error(ctl).startswith("Weights problem: ")
    (tmp_path / "bad.yml").write_text("model: {type: _ToyDownUp}\niter: 3\n")
    ctl.set_model(config=str(tmp_path / "bad.yml"), model_path=str(files / "w.pdparams"))
    m = job_error(ctl)
    assert m.startswith("Config problem: ") and "iters" in m  # the typo's suggestion
    (tmp_path / "unk.yml").write_text("model: {type: _ToyDownUpp}\n")
    ctl.set_model(config=str(tmp_path / "unk.yml"), model_path=str(files / "w.pdparams"))
    assert job_error(ctl).startswith("Config problem: unknown model type")
    ctl.set_model()
    assert job_error(ctl).startswith("Invalid input: no model chosen")
    ctl.set_model(config=str(files / "toy.yml"))
    assert job_error(ctl).startswith("Weights problem: no weights chosen")
    ctl.set_model(model_dir=str(tmp_path))
    assert job_error(ctl).startswith("Not found: ")
    ctl.set_model(config=str(files / "toy.yml"), model_path=str(files / "w.pdparams"))
    ctl.set_options(tile="big")
    assert "tile must be" in job_error(ctl)
    # other kinds, and multi-line (Paddle-style) messages cut to their first line
    assert error_message(ConfigError("a.yml: bad")) == "Config problem: a.yml: bad"
    assert error_message(UnsafeWeightsError("x.pdparams: os.system")).startswith("Refused unsafe")
    assert error_message(WeightsError("w: missing keys")) == "Weights problem: w: missing keys"
    assert error_message(RuntimeError("\n  (InvalidArgument) bad shape\n  [C++ trace]\n")) == (
        "RuntimeError: (InvalidArgument) bad shape"
    )
    assert error_message(MemoryError()).startswith("Out of memory")


def test_no_image_is_an_error(files):
    ctl = ctl_for(files)
    job = ctl.start_restore()
    assert job.wait(60)
    assert job.events.get() == ("error", "Invalid input: no image loaded: open an image first")


def test_display_array_fits_and_converts():
    img16 = Image((np.arange(30 * 40).reshape(30, 40, 1) * 50).astype(np.uint16))
    d = display_array(img16, 20, 100)
    assert d.dtype == np.uint8 and d.shape == (15, 20, 3)
    small = Image(np.zeros((10, 10, 3), np.uint8))
    assert display_array(small, 1000, 1000).shape == (40, 40, 3)  # enlarged at most 4x
    rgb = Image(np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8))
    np.testing.assert_array_equal(display_array(rgb, 80, 50), rgb.data)


def test_import_ppRestore_gui_does_not_import_tk_or_paddle():
    code = (
        "import sys; import ppRestore.gui, ppRestore.gui.controller; "
        "print('tkinter' in sys.modules, 'paddle' in sys.modules)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert r.stdout.split() == ["False", "False"], r.stderr


def test_cli_without_display_fails_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "gui.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # no display (or no Tk at all): exit 1 with one "error:" line, not a traceback
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "gui.py"), "--model_dir", "x", "-c", "y"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not both" in r.stderr


# --- the real window (runs where Xvfb is installed, CI included) -------------------


def _has_tk() -> bool:
    try:
        import tkinter  # noqa: F401

        from PIL import ImageTk  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    shutil.which("Xvfb") is None or not _has_tk(), reason="needs Xvfb and Tk (apt-get install xvfb)"
)
def test_window_selftest_under_xvfb(files, tmp_path):
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once ready,
    # so parallel runs (or other agents' Xvfb) never collide.
    rfd, wfd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(wfd,),
    )
    os.close(wfd)
    try:
        with os.fdopen(rfd) as f:
            disp = ":" + f.readline().strip()
        assert disp != ":", "Xvfb did not start"
        code = (
            "import sys, runpy, toy_models; "
            "sys.argv = ['tools/gui.py'] + sys.argv[1:]; "
            f"runpy.run_path({os.path.join(REPO, 'tools', 'gui.py')!r}, run_name='__main__')"
        )
        out, shot = tmp_path / "out.png", tmp_path / "shot.png"
        env = dict(
            os.environ,
            DISPLAY=disp,
            PYTHONPATH=os.pathsep.join([REPO, TESTS]),
            GLOG_minloglevel="3",
        )
        # the slow twin of toy.yml (same weights): 24 forwards x 50 ms, so the job outlasts
        # many 50 ms polls on any machine (the fast toy once finished inside one poll in CI)
        base = ["-c", str(files / "slow.yml"), "--model_path", str(files / "w.pdparams")]
        base += ["--tile", "16", "--screenshot", str(shot), "--geometry", "900x500"]

        def selftest(image, result) -> subprocess.CompletedProcess:
            args = [*base, "--selftest", str(image), "--selftest_out", str(result)]
            return subprocess.run(
                [sys.executable, "-c", code, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=180,
            )

        r = selftest(files / "a.png", out)
        assert r.returncode == 0, r.stderr
        # the window's event loop kept running while the worker loaded and restored
        polls = int(r.stderr.split("event loop polled ")[1].split()[0])
        assert polls >= 5, r.stderr
        assert "selftest: status: Ready: press Restore." in r.stderr
        ref = Predictor.from_config(str(files / "toy.yml"), str(files / "w.pdparams"), tile=16)
        np.testing.assert_array_equal(
            read_image(str(out)).data, ref.restore(str(files / "a.png")).data
        )
        s = read_image(str(shot)).data
        assert s.shape[:2] == (500, 900)
        assert s.std() > 10  # the images are drawn (not one flat colour)
        # an animation: the first frame is restored, and the status line says so
        from PIL import Image as PILImage

        rng = np.random.default_rng(2)
        frames = [PILImage.fromarray(rng.integers(0, 256, (20, 24), np.uint8)) for _ in range(2)]
        gif = tmp_path / "anim.gif"
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
        r = selftest(gif, tmp_path / "anim_out.png")
        assert r.returncode == 0, r.stderr
        assert "selftest: status: 2 frames: only the first is restored." in r.stderr, r.stderr
        np.testing.assert_array_equal(
            read_image(str(tmp_path / "anim_out.png")).data, ref.restore(str(gif)).data
        )
        # an error ends the self-test with exit code 1 and the one-line message
        r = selftest(files / "broken.png", out)
        assert r.returncode == 1 and "selftest: error: Cannot read image:" in r.stderr
    finally:
        xvfb.terminate()
        xvfb.wait(10)
