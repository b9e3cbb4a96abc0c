"""Issue 15 items 3 and 7: ordinary photos must not kill a batch, nor produce silent
garbage. The CLI runs in a subprocess under an address-space rlimit, with a tiny model
(``_ToyCNN``, ~450 bytes per input pixel) so a 16-megapixel PNG of zeros (~50 KB on
disk) needs ~7 GB whole but fits in tiles."""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib

import numpy as np
import paddle
import pytest
import toy_models  # noqa: F401
import yaml

from ppRestore.data.io import ImageReadError, decode_image, read_image, write_image
from ppRestore.inference.predictor import InferOptions, NonFiniteOutputError, Predictor
from ppRestore.registry import MODELS
from ppRestore.weights.safe_load import save_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
CAP = 3 << 30  # address space of the CLI process (~1 GiB of it is Paddle itself)


def _infer(cfg, weights, images, out, *extra, env=None, cap=CAP):
    code = (
        "import sys, runpy, toy_models; sys.argv = ['tools/infer.py'] + sys.argv[1:]; "
        f"runpy.run_path({os.path.join(REPO, 'tools/infer.py')!r}, run_name='__main__')"
    )
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), GLOG_minloglevel="3")
    e.update(env or {})

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    args = ["-c", str(cfg), "--model_path", str(weights), "--image_path", str(images)]
    return subprocess.run(
        [sys.executable, "-c", code, *args, "--save_dir", str(out), "--quiet", *extra],
        capture_output=True,
        text=True,
        env=e,
        cwd=REPO,
        timeout=600,
        preexec_fn=limit,
    )


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` RGB (the pixel data is a few bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    paddle.seed(0)
    save_weights(MODELS.get("_ToyCNN")().state_dict(), str(d / "w.pdparams"))
    (d / "toy.yml").write_text(yaml.safe_dump({"model": {"type": "_ToyCNN"}, "task": "test"}))
    imgs = d / "imgs"
    rng = np.random.default_rng(0)
    write_image(str(imgs / "a.png"), rng.integers(0, 256, (21, 30, 3), dtype=np.uint8))
    write_image(str(imgs / "big.png"), np.zeros((4000, 4000, 3), np.uint8))  # 16 MP
    write_image(str(imgs / "c.png"), rng.integers(0, 256, (17, 13, 3), dtype=np.uint8))
    (imgs / "huge.png").write_bytes(_png_header_only(11_000, 11_000))  # 121 MP, 60 bytes
    assert os.path.getsize(imgs / "big.png") < 200_000
    return d


def test_16mp_photo_is_tiled_by_default_under_a_memory_cap(folder, tmp_path):
    """No --tile: the 16 MP image would need ~7 GB whole; it is tiled to fit the 3 GiB
    cap, the 121 MP header is refused in one line and the small images are restored."""
    r = _infer(folder / "toy.yml", folder / "w.pdparams", folder / "imgs", tmp_path / "out")
    err = r.stderr
    assert "Traceback" not in err, err[-3000:]
    assert r.returncode == 1, err[-3000:]  # huge.png failed
    failed = [ln for ln in err.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "huge.png" in failed[0], err[-3000:]
    assert "121.0 MP, above the decode limit of 120 MP" in failed[0]
    assert "3 restored, 1 failed: huge.png" in err
    big = read_image(str(tmp_path / "out" / "big.png"))
    assert big.data.shape == (4000, 4000, 3)
    for n in ("a.png", "c.png"):
        assert os.path.isfile(tmp_path / "out" / n)


def test_out_of_memory_fails_that_file_only(folder, tmp_path):
    """Forcing the whole image (--tile off) under the cap: MemoryError is that file's
    FAILED line; the rest of the folder is still processed."""
    r = _infer(
        folder / "toy.yml",
        folder / "w.pdparams",
        folder / "imgs",
        tmp_path / "out",
        "--tile",
        "off",
    )
    err = r.stderr
    assert "Traceback" not in err, err[-3000:]
    failed = [ln for ln in err.splitlines() if ln.startswith("FAILED")]
    assert any("big.png" in ln and "out of memory" in ln for ln in failed), err[-3000:]
    assert "2 restored, 2 failed" in err
    assert os.path.isfile(tmp_path / "out" / "a.png") and os.path.isfile(tmp_path / "out" / "c.png")
    assert not os.path.exists(tmp_path / "out" / "big.png")


# ------------------------------------------------------------ decode limit, in-process


def test_decode_limit_is_checked_from_the_header(monkeypatch):
    with pytest.raises(ImageReadError, match=r"above the decode limit of 120 MP") as ei:
        decode_image(_png_header_only(11_000, 11_000), "huge.png")
    assert str(ei.value).startswith("huge.png: refused") and "\n" not in str(ei.value)
    # 25 MP is under the limit: the (fake) pixel data is then decoded and found short
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        decode_image(_png_header_only(5000, 5000), "ok.png")
    monkeypatch.setenv("PPRESTORE_MAX_PIXELS", "1000000")
    with pytest.raises(ImageReadError, match=r"25.0 MP, above the decode limit of 1 MP"):
        decode_image(_png_header_only(5000, 5000), "ok.png")
    img = np.zeros((10, 10, 3), np.uint16)  # the 16-bit (OpenCV) path passes the same check
    monkeypatch.setenv("PPRESTORE_MAX_PIXELS", "99")
    from ppRestore.data.io import encode_image

    with pytest.raises(ImageReadError, match="above the decode limit"):
        decode_image(encode_image(".png", img), "x16.png")


# ------------------------------------------------------------ --tile / --max_memory


@pytest.mark.parametrize("tile", [1, 15, -5, "-5", "1", 3.5])
def test_tiny_or_negative_tile_is_refused(tile):
    with pytest.raises(ValueError, match="tile must be at least 16 pixels"):
        InferOptions.merge({"tile": tile})


@pytest.mark.parametrize(
    "tile,want",
    [
        (0, "off"),
        ("off", "off"),
        ("0", "off"),
        ("auto", "auto"),
        (16, 16),
        ("512", 512),
        (None, None),
    ],
)
def test_tile_values_accepted(tile, want):
    assert InferOptions.merge({"tile": tile}).tile == want


def test_max_memory_must_be_positive():
    with pytest.raises(ValueError, match="max_memory must be a positive"):
        InferOptions.merge({"max_memory": -1.0})


@pytest.mark.parametrize(
    "flags,msg",
    [
        (["--tile", "1"], "error: tile must be at least 16 pixels"),
        (["--tile", "-5"], "error: tile must be at least 16 pixels"),
        (["--max_memory", "-1"], "error: --max_memory must be a positive number of GB, got -1"),
        (["--max_memory", "0"], "error: --max_memory must be a positive number of GB, got 0"),
    ],
)
def test_infer_cli_bad_tile_flags_are_one_line(folder, tmp_path, capsys, flags, msg):
    import runpy

    main = runpy.run_path(os.path.join(REPO, "tools/infer.py"))["main"]
    args = ["-c", str(folder / "toy.yml"), "--model_path", str(folder / "w.pdparams")]
    args += ["--image_path", str(folder / "imgs" / "a.png"), "--save_dir", str(tmp_path)]
    assert main(args + flags) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(msg), err
    assert not any("Traceback" in ln for ln in err)


# ------------------------------------------------------------ non-finite outputs


def test_weights_that_overflow_fail_the_file(folder, tmp_path):
    """Finite weights (1e30) that overflow to Inf/NaN at run time: that file FAILS in one
    line and nothing is written (it used to be a garbage image and exit 0)."""
    from ppRestore.inference.batch import run_batch

    m = MODELS.get("_ToyCNN")()
    for p in m.parameters():
        p.set_value(np.full(p.shape, 1e30, np.float32))
    assert all(np.isfinite(p.numpy()).all() for p in m.parameters())
    pred = Predictor.from_model(m)
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        pred.predict(np.full((8, 8, 3), 0.5, np.float32))
    logs = []
    res = run_batch(
        pred.restore_image,
        str(folder / "imgs" / "a.png"),
        str(tmp_path),
        progress=False,
        log=logs.append,
    )
    assert res.exit_code == 1 and not res.restored
    assert len(logs) == 1 and logs[0].startswith("FAILED") and "NaN/Inf" in logs[0]
    assert not os.path.exists(tmp_path / "a.png")


# ------------------------------------------------------------ output-name collisions


def _files_bytes(d):
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d))}


@pytest.mark.parametrize("names", [("a.PNG", "a.png"), ("c.pgm", "c.png")])
def test_overwrite_never_replaces_another_input(tmp_path, names):
    """--overwrite in the input folder: ``a.PNG``'s result is ``a.png`` (and ``c.pgm``'s
    is ``c.png``), another input; the run used to destroy it before reporting."""
    from ppRestore.inference.batch import run_batch

    rng = np.random.default_rng(1)
    for n in names:
        write_image(
            str(tmp_path / ("tmp" + os.path.splitext(n)[1].lower())),
            rng.integers(0, 256, (6, 7, 1), dtype=np.uint8),
        )
        os.replace(tmp_path / ("tmp" + os.path.splitext(n)[1].lower()), tmp_path / n)
    before = _files_bytes(tmp_path)
    calls = []
    with pytest.raises(ValueError, match="output name clash, nothing written") as ei:
        run_batch(
            lambda im: calls.append(im) or im,
            str(tmp_path),
            str(tmp_path),
            overwrite=True,
            progress=False,
        )
    assert "would replace another input" in str(ei.value) and "\n" not in str(ei.value)
    assert calls == [] and _files_bytes(tmp_path) == before


def test_two_inputs_with_one_output_name_are_refused_up_front(tmp_path):
    from ppRestore.inference.batch import run_batch

    src, out = tmp_path / "in", tmp_path / "out"
    write_image(str(src / "a.png"), np.zeros((4, 4, 3), np.uint8))
    os.replace(src / "a.png", src / "a.PNG")
    write_image(str(src / "a.png"), np.ones((4, 4, 3), np.uint8))
    write_image(str(src / "b.png"), np.ones((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a\.PNG and .*a\.png would both be saved as .*a\.png"):
        run_batch(lambda im: im, str(src), str(out), progress=False)
    assert not out.exists() or os.listdir(out) == []
    # without the clash, --overwrite in place still works (each result replaces its own input)
    os.remove(src / "a.PNG")
    res = run_batch(lambda im: im, str(src), str(src), overwrite=True, progress=False)
    assert res.exit_code == 0 and len(res.restored) == 2


def test_collision_cli_is_one_line(folder, tmp_path, capsys):
    import runpy

    src = tmp_path / "in"
    write_image(str(src / "c.png"), np.zeros((20, 20, 3), np.uint8))
    write_image(str(src / "c.pgm"), np.zeros((20, 20, 1), np.uint8))
    main = runpy.run_path(os.path.join(REPO, "tools/infer.py"))["main"]
    args = ["-c", str(folder / "toy.yml"), "--model_path", str(folder / "w.pdparams")]
    code = main(args + ["--image_path", str(src), "--save_dir", str(src), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: output name clash, nothing written")


# ------------------------------------------------------------ 16-bit PPM, ICC profiles


def _pnm(magic: bytes, arr: np.ndarray, maxval: int) -> bytes:
    h, w = arr.shape[:2]
    return magic + f"\n# made by a test\n{w} {h}\n{maxval}\n".encode() + arr.astype(">u2").tobytes()


def test_16bit_colour_ppm_keeps_its_depth():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    img = decode_image(_pnm(b"P6", rgb, 65535), "c16.ppm")
    assert img.data.dtype == np.uint16 and img.data.shape == (5, 7, 3)
    np.testing.assert_array_equal(img.data, rgb)  # was reduced to 8 bits
    grey = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    g = decode_image(_pnm(b"P5", grey, 65535), "g16.pgm")
    np.testing.assert_array_equal(g.data[..., 0], grey)
    # 12-bit data (maxval 4095) is scaled to the full uint16 range the pipeline assumes
    twelve = np.array([[[0, 4095, 2048]]], np.uint16)
    t = decode_image(_pnm(b"P6", twelve, 4095), "c12.ppm")
    np.testing.assert_array_equal(t.data, [[[0, 65535, round(2048 * 65535 / 4095)]]])
    with pytest.raises(ImageReadError, match="truncated"):
        decode_image(_pnm(b"P6", rgb, 65535)[:-10], "short.ppm")


def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    "name,arr",
    [
        ("p.png", np.full((9, 8, 3), 100, np.uint8)),
        ("p.jpg", np.full((9, 8, 3), 100, np.uint8)),
        ("p16.png", np.full((9, 8, 3), 30000, np.uint16)),
        ("g.png", np.full((9, 8), 100, np.uint8)),
    ],
)
def test_icc_profile_travels_from_input_to_output(tmp_path, name, arr):
    from PIL import Image as PILImage

    from ppRestore.inference.batch import run_batch

    icc = _icc()
    src = tmp_path / "in"
    src.mkdir()
    if arr.dtype == np.uint16:  # Pillow cannot write 16-bit colour: add the chunk by hand
        from ppRestore.data.io import _png_with_icc, encode_image

        (src / name).write_bytes(_png_with_icc(encode_image(".png", arr), icc))
    else:
        PILImage.fromarray(arr).save(src / name, icc_profile=icc)
    img = read_image(str(src / name))
    assert img.icc_profile == icc
    pred = Predictor.from_model(MODELS.get("_ToyIdentity")())
    res = run_batch(pred.restore_image, str(src), str(tmp_path / "out"), progress=False)
    assert res.exit_code == 0
    out_path = tmp_path / "out" / name
    with PILImage.open(out_path) as im:
        assert im.info.get("icc_profile") == icc  # Pillow parses what we embedded
    back = read_image(str(out_path))
    assert back.icc_profile == icc and back.data.dtype == arr.dtype
    assert back.data.shape[:2] == arr.shape[:2]


def test_large_icc_profile_spans_several_jpeg_segments(tmp_path):
    from PIL import Image as PILImage

    icc = bytes(range(256)) * 600  # 153600 bytes: three APP2 segments
    write_image(str(tmp_path / "x.jpg"), np.zeros((4, 4, 3), np.uint8), icc_profile=icc)
    with PILImage.open(tmp_path / "x.jpg") as im:
        assert im.info.get("icc_profile") == icc


def test_negative_cpu_threads_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--cpu_threads must be at least 1"):
        Predictor.from_exported(str(tmp_path), cpu_threads=-1)
