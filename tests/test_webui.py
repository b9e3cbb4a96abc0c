"""The web page (tools/webui.py): its logic without a browser, then the real page in
headless Chromium.

The browser test needs ``pip install -e ".[webui,browser]"`` and Debian's ``chromium`` +
``chromium-driver`` (``.ci/run`` installs them and sets ``PPRESTORE_REQUIRE_BROWSER=1``,
so there a missing piece fails instead of skipping). It starts ``tools/webui.py`` as a
user does, uploads a real photo, runs shipped models (SRCNN x3, the demo U-Net), checks
the downloaded result's size and content, shows the one-line message for a bad file,
and saves a screenshot (``$PPRESTORE_SCREENSHOT_DIR`` or the test's tmp folder).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import paddle
import pytest
import yaml

from ppRestore.data.io import read_image, write_image
from ppRestore.gui.webui import Task, WebRestorer, default_tasks, is_loopback, preview_pair
from ppRestore.models.pmrnet import PmrNet
from ppRestore.weights.safe_load import save_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR3 = "Super-resolution x3 (SRCNN)"
DENOISE = default_tasks()[0].label


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("web")
    noisy = read_image(os.path.join(REPO, "demo", "chelsea_noisy.png")).data
    write_image(str(d / "cat crop.png"), noisy[60:124, 150:246])  # 96 x 64, a space in the name
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d


@pytest.fixture(scope="module")
def restorer(tmp_path_factory):
    return WebRestorer(work_dir=str(tmp_path_factory.mktemp("webwork")))


def test_task_list_uses_shipped_and_zoo_weights():
    tasks = {t.label: t for t in default_tasks()}
    assert tasks[DENOISE].default_weights() == "demo_color_denoise"
    assert tasks[SR3].default_weights() == "srcnn_x3"
    for t in tasks.values():
        assert os.path.isfile(t.config_path()), t.config
    # tasks without an explicit name take the zoo entry whose config is theirs
    from ppRestore.weights.zoo import ZOO

    name = next(n for n, e in ZOO.items() if e.get("config") == "configs/srcnn/srcnn_ps_x3.yml")
    assert Task("x", "configs/srcnn/srcnn_ps_x3.yml").default_weights() == name


def test_sr_x3_output_size_download_name_and_previews(restorer, photos):
    res, msg = restorer.run_safe(SR3, str(photos / "cat crop.png"))
    assert res is not None, msg
    assert msg.startswith("Done in ") and "96x64 -> 288x192" in msg
    (out,) = res.files
    assert os.path.basename(out) == "cat crop_restored.png"
    got = read_image(out).data
    assert got.shape == (192, 288, 3)
    # the same numbers as the one Predictor the CLIs use
    from ppRestore.inference.predictor import Predictor

    pred = Predictor.from_config(os.path.join(REPO, "configs/srcnn/srcnn_x3.yml"), "srcnn_x3")
    assert np.array_equal(got, pred.restore(str(photos / "cat crop.png")).data)
    assert res.before.shape == res.after.shape and res.before.dtype == np.uint8
    # self-ensemble reaches the predictor's option without a second model
    res8, msg = restorer.run_safe(SR3, str(photos / "cat crop.png"), self_ensemble=True)
    assert res8 is not None, msg
    pred.options.self_ensemble = True
    want = pred.restore(str(photos / "cat crop.png")).data
    assert np.array_equal(read_image(res8.files[0]).data, want) and not np.array_equal(want, got)


def test_denoise_changes_image_and_reports_progress(restorer, photos):
    seen = []
    res, msg = restorer.run_safe(
        DENOISE, str(photos / "cat crop.png"), tile="32", report=lambda f, m: seen.append((f, m))
    )
    assert res is not None, msg
    got = read_image(res.files[0]).data
    inp = read_image(str(photos / "cat crop.png")).data
    assert got.shape == inp.shape and np.abs(got.astype(int) - inp).mean() > 3
    fracs = [f for f, m in seen if m == "restoring"]
    assert len(fracs) >= 4 and fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)


def test_bad_file_is_one_line_with_the_file_name(restorer, photos):
    res, msg = restorer.run_safe(DENOISE, str(photos / "broken.png"))
    assert res is None
    assert msg.startswith("Cannot read image: broken.png:") and "\n" not in msg
    assert str(photos) not in msg  # the upload's temporary folder is not shown


def test_upload_cap_missing_file_and_missing_weights(photos, tmp_path):
    small = WebRestorer(max_upload_mb=0.001, work_dir=str(tmp_path))
    _, msg = small.run_safe(DENOISE, str(photos / "cat crop.png"))
    assert "above the 0.001 MB upload limit" in msg
    _, msg = small.run_safe(DENOISE, None)
    assert msg.startswith("no file:")
    r = WebRestorer(work_dir=str(tmp_path))
    _, msg = r.run_safe("Remove handwriting (PmrNet document)", str(photos / "cat crop.png"))
    assert "no weights known" in msg
    _, msg = r.run_safe(DENOISE, str(photos / "cat crop.png"), weights_text="nonexistent_zoo")
    assert msg.startswith("Weights problem: weights not found: 'nonexistent_zoo'")


def test_network_bound_page_refuses_server_paths_and_urls(photos, tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("")
    r = WebRestorer(allow_server_paths=False, work_dir=str(tmp_path))
    for spec in ("/etc/passwd", "https://example.com/w.pdparams"):
        _, msg = r.run_safe(DENOISE, str(photos / "cat crop.png"), weights_text=spec)
        assert "only zoo names and uploaded weight files" in msg
    res, msg = r.run_safe(SR3, str(photos / "cat crop.png"), weights_text="srcnn_x3")
    assert res is not None, msg


def test_uploaded_weights_and_raw_frame(tmp_path):
    """Raw: a tiny PmrNet as the 'uploaded' weights, a uint16 .npy frame in, the same
    .npy + preview as tools/infer.py out."""
    paddle.seed(3)
    cfg = {
        "task": "raw_denoise",
        "model": {"type": "PmrNet", "in_channels": 4, "width": 0.125, "inp_scale": 256.0},
        "infer": {"color": "raw"},
    }
    (tmp_path / "raw.yml").write_text(yaml.safe_dump(cfg))
    save_weights(PmrNet(4, width=0.125, inp_scale=256.0).state_dict(), str(tmp_path / "w.pdparams"))
    rng = np.random.default_rng(0)
    frame = rng.integers(64, 1023, (40, 56), dtype=np.uint16)
    np.save(tmp_path / "frame.npy", frame)
    task = Task("raw", str(tmp_path / "raw.yml"))
    r = WebRestorer([task, *default_tasks()], work_dir=str(tmp_path / "work"))
    res, msg = r.run_safe(
        "raw", str(tmp_path / "frame.npy"), weights_file=str(tmp_path / "w.pdparams"), iso=1600
    )
    assert res is not None, msg
    npy, png = res.files
    assert os.path.basename(npy) == "frame.npy" and os.path.basename(png) == "frame.png"
    out = np.load(npy)
    assert out.shape == frame.shape and out.dtype == np.uint16
    assert res.before.shape == res.after.shape
    # the CLI on the same frame writes the same numbers (one raw path)
    cli = subprocess.run(
        [sys.executable, "tools/infer.py", "-c", str(tmp_path / "raw.yml"),
         "--model_path", str(tmp_path / "w.pdparams"), "--image_path", str(tmp_path / "frame.npy"),
         "--save_dir", str(tmp_path / "cli"), "--iso", "1600", "--quiet"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-1500:]
    assert np.array_equal(np.load(tmp_path / "cli" / "frame.npy"), out)
    # an RGB photo on the raw model, and a raw frame on an RGB model: one line each
    write_image(str(tmp_path / "p.png"), np.zeros((8, 8, 3), np.uint8))
    _, msg = r.run_safe("raw", str(tmp_path / "p.png"), weights_file=str(tmp_path / "w.pdparams"))
    assert msg.startswith("Invalid input:") and "\n" not in msg
    _, msg = r.run_safe(DENOISE, str(tmp_path / "frame.npy"))
    assert "needs the raw denoising task" in msg


def test_download_progress_is_reported(tmp_path, monkeypatch, photos):
    """While a zoo download runs, the page says how many MB have arrived (the zoo's
    streaming temp file is watched; the network is replaced by a slow local writer)."""
    from ppRestore.weights import zoo

    monkeypatch.setenv("PPRESTORE_HOME", str(tmp_path / "cache"))
    shipped = zoo.resolve_weights("srcnn_x3")

    def slow_resolve(spec, cache_dir=None, **kw):
        if spec != "srcnn_x3":  # the predictor resolves the local file again
            return spec
        d = os.path.join(zoo.cache_dir(), "0123456789abcdef")
        os.makedirs(d)
        part = os.path.join(d, ".download-x")
        with open(part, "wb") as f:
            for _ in range(4):
                f.write(b"\0" * 600_000)
                f.flush()
                time.sleep(0.4)
        os.remove(part)
        return shipped

    monkeypatch.setattr(zoo, "resolve_weights", slow_resolve)
    seen = []
    res, msg = WebRestorer(work_dir=str(tmp_path / "w")).run_safe(
        SR3, str(photos / "cat crop.png"), report=lambda f, m: seen.append(m)
    )
    assert res is not None, msg
    mb = [m for m in seen if m.startswith("downloading weights 'srcnn_x3': ")]
    assert mb and mb[-1] != mb[0] and "MB so far" in mb[-1]


def test_old_results_are_pruned(tmp_path, photos):
    r = WebRestorer(work_dir=str(tmp_path))
    for i in range(20):
        os.makedirs(tmp_path / f"run-{i:02d}")
        os.utime(tmp_path / f"run-{i:02d}", (i, i))
    res, msg = r.run_safe(SR3, str(photos / "cat crop.png"))
    assert res is not None and os.path.isfile(res.files[0]), msg
    left = sorted(p.name for p in tmp_path.glob("run-*"))
    assert len(left) == 17 and "run-19" in left and "run-00" not in left


def test_preview_pair_lines_up_sr():
    from ppRestore.data.io import Image

    a = Image(np.zeros((10, 20, 3), np.uint8))
    b = Image(np.full((30, 60, 3), 255, np.uint8))
    x, y = preview_pair(a, b)
    assert x.shape == y.shape == (120, 240, 3)


def test_cli_one_line_errors(tmp_path):
    def cli(*a, path=REPO):
        return subprocess.run(
            [sys.executable, "tools/webui.py", *a], cwd=REPO, capture_output=True, text=True,
            env=dict(os.environ, PYTHONPATH=path), timeout=120,
        )  # fmt: skip

    # without the [webui] extra (a stand-in gradio that fails to import, as a missing one)
    (tmp_path / "gradio").mkdir()
    (tmp_path / "gradio" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'gradio'\")"
    )
    r = cli(path=f"{tmp_path}{os.pathsep}{REPO}")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: the web UI needs Gradio (No module named 'gradio'): pip install -e \".[webui]\""
    ]

    r = cli("-c", "nope.yml", "--model_path", "x")
    assert r.returncode == 2 and r.stderr.strip() == "error: -c nope.yml: not found"
    r = cli("--port", "70000")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="needs the [webui] extra")
def test_launch_non_blocking_serves_and_closes():
    """The notebook way: launch(block=False) returns with the page served."""
    from ppRestore.gui.webui import launch

    port = _free_port()
    app = launch(port=port, block=False, inline=False)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"ppRestore" in r.read()
    finally:
        app.close()


# --- the real page in headless Chromium ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [
    name
    for name, ok in (
        ("gradio", importlib.util.find_spec("gradio") is not None),
        ("selenium", importlib.util.find_spec("selenium") is not None),
        ("chromium", CHROMIUM is not None),
        ("chromedriver", CHROMEDRIVER is not None),
    )
    if not ok
]
if MISSING and os.environ.get("PPRESTORE_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"the browser test needs {', '.join(MISSING)} (see .ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "tools/webui.py", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.25)
        else:
            pytest.fail("the page did not come up in 60 s")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        print(f"web UI served after {time.perf_counter() - t0:.1f} s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (.ci/run installs them)")
def test_browser_upload_restore_download(server, photos, tmp_path):
    from PIL import Image as PILImage
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1040", "--lang=en-US"):  # fmt: skip
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    wait = WebDriverWait(driver, 180)

    def status() -> str:
        return driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")

    def run(task: str, path: str) -> str:
        before = status()
        radio = driver.find_element(By.CSS_SELECTOR, f"#task input[value='{task}']")
        radio.find_element(By.XPATH, "..").click()  # the label: the input itself is styled away
        box = driver.find_element(By.ID, "input_file")
        stem = os.path.splitext(os.path.basename(path))[0]  # the page shows stem and suffix apart
        clear = box.find_elements(By.CSS_SELECTOR, "button[aria-label='Clear']")
        if clear:
            clear[0].click()
            wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#input_file tr"))
        box.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(path)
        wait.until(lambda d: stem in box.text and "Uploading" not in box.text)
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: status() and status() != before)
        return status()

    def download() -> tuple:
        link = driver.find_element(By.CSS_SELECTOR, "#output_file a[download]")
        with urllib.request.urlopen(link.get_attribute("href"), timeout=30) as r:
            data = r.read()
        path = tmp_path / link.get_attribute("download")
        path.write_bytes(data)
        return link.get_attribute("download"), np.asarray(PILImage.open(path).convert("RGB"))

    try:
        driver.get(server)
        wait.until(lambda d: d.find_elements(By.ID, "run"))
        crop = str(photos / "cat crop.png")
        inp = read_image(crop).data.astype(int)

        msg = run(SR3, crop)
        assert msg.startswith("Done in ") and "96x64 -> 288x192" in msg, msg
        name, out = download()
        assert name == "cat crop_restored.png"
        assert out.shape == (192, 288, 3)
        nearest = np.repeat(np.repeat(inp, 3, axis=0), 3, axis=1)
        assert np.abs(out.astype(int) - nearest).mean() > 2  # not just the input enlarged

        msg = run(DENOISE, str(REPO + "/demo/chelsea_noisy.png"))
        assert msg.startswith("Done in ") and "451x300 -> 451x300" in msg, msg
        name, out = download()
        noisy = read_image(os.path.join(REPO, "demo", "chelsea_noisy.png")).data.astype(int)
        assert name == "chelsea_noisy_restored.png" and out.shape == noisy.shape
        assert np.abs(out.astype(int) - noisy).mean() > 5
        # the before/after slider shows two images
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#compare img")) >= 2)
        driver.execute_script("window.scrollTo(0, 0)")
        shot_dir = os.environ.get("PPRESTORE_SCREENSHOT_DIR") or str(tmp_path)
        os.makedirs(shot_dir, exist_ok=True)
        shot = os.path.join(shot_dir, "webui.png")
        assert driver.save_screenshot(shot)
        assert PILImage.open(shot).size[0] >= 1000

        msg = run(DENOISE, str(photos / "broken.png"))
        assert msg.startswith("Cannot read image: broken.png:") and "\n" not in msg, msg
        assert driver.find_element(By.ID, "status").is_displayed()
    finally:
        driver.quit()
