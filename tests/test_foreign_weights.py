"""Official checkpoints used directly: ``--model_path file.pth`` and zoo names.

Covers issue 12 items 1-3: the source is detected from the file, a foreign checkpoint is
converted through the config's architecture and cached by content hash, the result is
exactly the explicit conversion, zoo names download (here from a local HTTPS server via
the mirror setting) and fail offline in one line naming the URL.
"""

from __future__ import annotations

import http.server
import os
import pickle
import re
import ssl
import sys
import threading
import urllib.error

import numpy as np
import pytest
from torch_files import official_cmfnet_checkpoint, write_torch_legacy, write_torch_zip

from ppRestore.weights import convert, foreign, zoo
from ppRestore.weights.convert import convert_checkpoint, read_foreign_checkpoint
from ppRestore.weights.safe_load import WeightsError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures")
CMF_CFG = os.path.join(REPO, "configs", "cmfnet", "cmfnet_deblur.yml")
TINY_OPTS = ["model.n_feat=8", "model.scale_unetfeats=3"]
DEBLUR_PATH = "/FanChiMao/CMFNet/releases/download/v0.0/deblur_GoPro_CMFNet.pth"


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in zoo.MIRROR_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PPRESTORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def official_tiny(tmp_path_factory):
    """A reduced-width CMFNet in the official release format: torch zip of
    {'epoch', 'state_dict' with 'module.' keys, 'optimizer' with Adam state}."""
    state = read_foreign_checkpoint(os.path.join(FIX, "cmfnet_tiny.pth"), backend="zip")
    path = str(tmp_path_factory.mktemp("official") / "deblur_GoPro_CMFNet.pth")
    write_torch_zip(official_cmfnet_checkpoint(state), path)
    return path


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (20, 28, 3), dtype=np.uint8)


def _predictor(model_path: str, opts=TINY_OPTS):
    from ppRestore.inference.predictor import Predictor

    return Predictor.from_config(CMF_CFG, model_path, opts=list(opts))


def test_official_format_is_what_the_release_holds(official_tiny):
    raw = convert.read_torch_zip(official_tiny)
    assert set(raw) == {"epoch", "state_dict", "optimizer"}
    assert all(k.startswith("module.") for k in raw["state_dict"])
    assert {"exp_avg", "exp_avg_sq"} <= set(raw["optimizer"]["state"][0])
    assert convert.checkpoint_container(official_tiny) == "torch-zip"


def test_foreign_file_used_directly_equals_explicit_conversion(
    official_tiny, home, tmp_path, monkeypatch, capsys
):
    dst = str(tmp_path / "explicit.pdparams")
    info = convert_checkpoint(
        "cmfnet", official_tiny, dst, model_kwargs={"n_feat": 8, "scale_unetfeats": 3}
    )
    assert info["source"] == "official"  # detected, not given
    want = _predictor(dst).restore(_image())
    got = _predictor(official_tiny).restore(_image())
    np.testing.assert_array_equal(got, want)
    assert "source 'official' detected" in capsys.readouterr().err
    cached = os.listdir(home / "converted")
    assert len(cached) == 1 and cached[0].startswith(zoo.sha256_of(official_tiny)[:16])
    # Second use: the cache answers, the converter is not run again.
    monkeypatch.setattr(convert, "convert_into", lambda *a, **k: pytest.fail("converted twice"))
    again = _predictor(official_tiny).restore(_image())
    np.testing.assert_array_equal(again, want)


def test_cached_conversion_is_keyed_by_model_shape(official_tiny, home):
    _predictor(official_tiny)
    with pytest.raises(WeightsError, match="mismatched"):  # a different width: reconverted
        _predictor(official_tiny, opts=["model.n_feat=16", "model.scale_unetfeats=3"])


def test_saoyan_legacy_net_pth_detected_and_matches_official_output(home, tmp_path):
    """SaoYan's DnCNN-S sigma 25 weights written as the repo's legacy net.pth."""
    d = np.load(os.path.join(FIX, "dncnn_saoyan_s25.npz"))
    state = {k[2:]: d[k] for k in d.files if k.startswith("w:")}
    path = str(tmp_path / "net.pth")
    write_torch_legacy(state, path)
    assert convert.checkpoint_container(path) == "torch-legacy"
    from ppRestore.inference.predictor import Predictor

    cfg = os.path.join(REPO, "configs", "dncnn", "dncnn_s_sigma25.yml")
    pred = Predictor.from_config(cfg, path)
    x = d["input"][0, 0].astype(np.float32)
    out = pred.restore(x[..., None])[..., 0]
    np.testing.assert_allclose(out, np.clip(d["output"][0, 0], 0, 1), atol=3e-5)


@pytest.mark.parametrize(
    "arch, make, want",
    [
        ("dncnn", lambda d: {k[2:]: d[k] for k in d.files if k.startswith("w:")}, "saoyan"),
        ("dncnn", lambda d: {k[2:]: d[k] for k in d.files if k.startswith("w:")}, "kair"),
    ],
    ids=["saoyan", "kair"],
)
def test_dncnn_sources_detected(arch, make, want):
    d = np.load(os.path.join(FIX, f"dncnn_{'saoyan_s25' if want == 'saoyan' else 'kair_tiny'}.npz"))
    assert convert.detect_source(arch, make(d), "torch-zip") == want


def test_pmrnet_torch_and_megengine_detected():
    from ppRestore.models.pmrnet import PmrNet

    keys = {k: tuple(v.shape) for k, v in PmrNet(in_channels=4, width=0.25).state_dict().items()}
    torch_state = {k: np.zeros(s, np.float32) for k, s in keys.items()}
    mge_state = {
        k: np.zeros((s[0], 1) + s[1:] if len(s) == 4 and s[1] == 1 else s, np.float32)
        for k, s in keys.items()
    }
    assert convert.detect_source("pmrnet", torch_state, "torch-zip") == "torch"
    assert convert.detect_source("pmrnet", mge_state, "pickle") == "mge"


def test_megengine_pickle_used_directly(home, tmp_path):
    """A MegEngine .ckp (plain pickle, 5-D grouped weights) loads through --model_path."""
    from ppRestore.builder import build_model
    from ppRestore.weights.safe_load import load_model_weights

    model = build_model({"type": "PmrNet", "in_channels": 4, "width": 0.25})
    rng = np.random.default_rng(0)
    want = {
        k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.state_dict().items()
    }
    mge = {}
    for k, v in want.items():
        if v.ndim == 4 and v.shape[1] == 1 and "depthwise" in k:
            v = v.reshape((v.shape[0], 1) + v.shape[1:])
        elif k.endswith(".bias") and "upsample" not in k:
            v = v.reshape(1, -1, 1, 1)
        mge[k] = v
    path = str(tmp_path / "mge_pretrained.ckp")
    with open(path, "wb") as f:
        pickle.dump(mge, f, protocol=4)
    fresh = build_model({"type": "PmrNet", "in_channels": 4, "width": 0.25})
    load_model_weights(fresh, path)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), want[k])


def test_unrecognised_checkpoint_is_one_line_naming_file_and_sources(tmp_path):
    path = str(tmp_path / "other.pth")
    write_torch_zip({"state_dict": {"foo.weight": np.zeros((2, 2), np.float32)}}, path)
    with pytest.raises(WeightsError) as ei:
        convert_checkpoint("dncnn", path, str(tmp_path / "o.pdparams"))
    msg = str(ei.value)
    assert "other.pth" in msg and "saoyan" in msg and "kair" in msg and "\n" not in msg


# ---------------------------------------------------------------- convert_weights CLI
def _cli(*argv: str) -> int:
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import convert_weights
    finally:
        sys.path.pop(0)
    return convert_weights.main(list(argv))


def test_help_lists_architectures_and_sources(capsys):
    with pytest.raises(SystemExit):
        _cli("--help")
    out = capsys.readouterr().out
    for word in ("cmfnet", "dncnn", "pmrnet", "saoyan", "kair", "mge", "official", "srcnn"):
        assert word in out


@pytest.mark.parametrize(
    "arch, content, extra, expect",
    [
        ("srcnn", b"not a checkpoint at all", [], "not a readable"),
        # the torch-free reader or torch.load (when installed) reads it: both refuse in one line
        ("cmfnet", b"PK\x03\x04broken zip", [], "not a (zip archive|readable PyTorch checkpoint)"),
        ("dncnn", "saoyan", ["--source", "kair"], "not a KAIR DnCNN checkpoint"),
        ("dncnn", "saoyan", ["--source", "nope"], "no source 'nope'"),
        ("srcnn", "saoyan", [], "not a recognised srcnn checkpoint"),
        ("nope", "saoyan", [], "unknown arch 'nope'"),
    ],
)
def test_cli_failures_are_one_line(tmp_path, capsys, arch, content, extra, expect):
    src = tmp_path / "in.pth"
    if content == "saoyan":
        d = np.load(os.path.join(FIX, "dncnn_saoyan_s25.npz"))
        write_torch_legacy({k[2:]: d[k] for k in d.files if k.startswith("w:")}, str(src))
    else:
        src.write_bytes(content)
    rc = _cli("--arch", arch, "--src", str(src), "--dst", str(tmp_path / "o.pdparams"), *extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and re.search(expect, err) and "in.pth" in err
    assert "\n" not in err and "Traceback" not in err


# ---------------------------------------------------------------- zoo names over https
class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    hits: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path == DEBLUR_PATH:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def mirror(official_tiny, tmp_path, monkeypatch, home):
    from test_zoo_download import _make_cert

    cert, key = _make_cert(tmp_path)
    with open(official_tiny, "rb") as f:
        _Handler.body = f.read()
    _Handler.hits = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    yield f"https://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _infer(*argv: str) -> int:
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import infer
    finally:
        sys.path.pop(0)
    return infer.main(list(argv))


def test_zoo_name_downloads_converts_and_matches_explicit_conversion(
    mirror, official_tiny, tmp_path, monkeypatch, capsys
):
    from ppRestore.data.io import read_image, write_image

    monkeypatch.setenv("PPRESTORE_MIRROR", mirror)
    inp = tmp_path / "in"
    inp.mkdir()
    write_image(str(inp / "a.png"), _image(1))
    args = ["-c", CMF_CFG, "--image_path", str(inp), "-o", *TINY_OPTS]
    assert _infer("--model_path", "cmfnet_deblur", "--save_dir", str(tmp_path / "z"), *args) == 0
    err = capsys.readouterr().err
    assert "source 'official' detected" in err
    assert _infer("--model_path", "cmfnet_deblur", "--save_dir", str(tmp_path / "z2"), *args) == 0
    err = capsys.readouterr().err
    assert "downloading" not in err and "converted" not in err  # both cached now
    assert _Handler.hits == {DEBLUR_PATH: 1}  # downloaded once
    dst = str(tmp_path / "explicit.pdparams")
    convert_checkpoint(
        "cmfnet", official_tiny, dst, model_kwargs={"n_feat": 8, "scale_unetfeats": 3}
    )
    assert _infer("--model_path", dst, "--save_dir", str(tmp_path / "e"), *args) == 0
    z = read_image(str(tmp_path / "z" / "a.png")).data
    np.testing.assert_array_equal(z, read_image(str(tmp_path / "e" / "a.png")).data)
    np.testing.assert_array_equal(z, read_image(str(tmp_path / "z2" / "a.png")).data)


def test_mirror_from_the_config_key(mirror, official_tiny):
    from ppRestore.builder import build_model
    from ppRestore.weights.safe_load import load_model_weights

    m = build_model({"type": "CMFNet", "n_feat": 8, "scale_unetfeats": 3, "weights_mirror": mirror})
    load_model_weights(m, "cmfnet_deblur")
    assert _Handler.hits == {DEBLUR_PATH: 1}


def test_mirror_forms():
    url = "https://github.com/o/r/releases/download/v0.0/f.pth"
    assert zoo.mirrored_url(url, "n", "https://m.example/gh/") == (
        "https://m.example/gh/o/r/releases/download/v0.0/f.pth"
    )
    assert zoo.mirrored_url(url, "n", "https://p.example/{url}") == "https://p.example/" + url
    assert zoo.mirrored_url(url, "n", "https://h/{name}/{file}") == "https://h/n/f.pth"


def test_mirror_folder(tmp_path, home):
    (tmp_path / "w" / "cmfnet_deblur").mkdir(parents=True)
    p = tmp_path / "w" / "cmfnet_deblur" / "deblur_GoPro_CMFNet.pth"
    p.write_bytes(b"x")
    assert zoo.resolve_weights("cmfnet_deblur", mirror=str(tmp_path / "w")) == str(p)
    with pytest.raises(WeightsError, match="neither"):
        zoo.resolve_weights("cmfnet_dehaze", mirror=str(tmp_path / "w"))


def test_zoo_name_offline_is_one_line_naming_the_url(home, tmp_path, monkeypatch, capsys):
    def offline(*a, **k):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(zoo, "_open", offline)
    rc = _infer(
        "-c", CMF_CFG, "--model_path", "cmfnet_deblur",
        "--image_path", os.path.join(REPO, "demo"), "--save_dir", str(tmp_path / "out"),
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert zoo.ZOO["cmfnet_deblur"]["url"] in err
    assert "--model_path" in err and "PPRESTORE_MIRROR" in err


def test_zoo_entries_declared_in_model_files():
    from ppRestore.registry import ARCHS

    declared = {n for a in ARCHS.keys() for n in ARCHS.get(a).weights}
    assert declared == set(zoo.ZOO)
    for name in ("cmfnet_deblur", "cmfnet_dehaze", "cmfnet_deraindrop", "pmrid", "dncnn_b"):
        assert zoo.ZOO[name]["url"].startswith("https://")
    for s in ("15", "25", "50"):
        e = zoo.ZOO[f"dncnn_s_sigma{s}"]
        assert e["url"].startswith("https://raw.githubusercontent.com/SaoYan/DnCNN-PyTorch/")
        assert e["url"].endswith(f"/logs/DnCNN-S-{s}/net.pth") and len(e["sha256"]) == 64
    assert zoo.ZOO["dncnn_b"]["model_kwargs"] == {"num_layers": 20}
    assert zoo.MAX_DOWNLOAD_BYTES > 198 * 2**20  # the ~197.5 MB CMFNet releases fit


def test_foreign_module_reports_arch_without_converter(tmp_path):
    from ppRestore.builder import build_model

    path = str(tmp_path / "u.pth")
    write_torch_zip({"x.weight": np.zeros(2, np.float32)}, path)
    with pytest.raises(WeightsError, match="declares no converter"):
        foreign.load_weights_into(build_model({"type": "UNet", "base_channels": 4}), path)


def test_model_pretrained_takes_the_official_file(official_tiny, home, tmp_path):
    """``model.pretrained: deblur_GoPro_CMFNet.pth`` (fine-tuning from official weights)."""
    from ppRestore.builder import build_model

    dst = str(tmp_path / "explicit.pdparams")
    convert_checkpoint(
        "cmfnet", official_tiny, dst, model_kwargs={"n_feat": 8, "scale_unetfeats": 3}
    )
    cfg = {"type": "CMFNet", "n_feat": 8, "scale_unetfeats": 3}
    m = build_model({**cfg, "pretrained": official_tiny}, load_pretrained=True)
    ref = build_model({**cfg, "pretrained": dst}, load_pretrained=True)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), ref.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v.numpy(), v2.numpy())


@pytest.mark.slow
def test_export_takes_the_official_file(official_tiny, home, tmp_path):
    from ppRestore.inference.export import export_model

    info = export_model(
        CMF_CFG, official_tiny, str(tmp_path / "exp"), opts=list(TINY_OPTS),
        measure_memory=False, log=lambda *a: None,
    )  # fmt: skip
    assert os.path.isfile(tmp_path / "exp" / "deploy.yaml")
    assert info["max_abs_diff"] < 1e-4  # the export matches the converted dynamic model


class _Tty(__import__("io").StringIO):
    def isatty(self) -> bool:
        return True


def test_download_notice_on_a_terminal_is_erased_on_failure(home, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(zoo, "_open", offline)
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with pytest.raises(WeightsError):
        zoo.resolve_weights("cmfnet_deblur")
    out = err.getvalue()
    assert out.startswith("downloading zoo model 'cmfnet_deblur' (~197.5 MB)")
    assert out.endswith("\r\033[K")  # the notice is wiped: the error is the only line left
