"""Bad and odd images at the ``ppRestore.data.io`` level (generated at test time)."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest

from ppRestore.data import io as pio
from ppRestore.data.io import (
    ImageReadError,
    ImageWriteError,
    decode_image,
    list_images,
    read_image,
    write_image,
)


@pytest.fixture(scope="module")
def gen():
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tools", "fixtures", "make_bad_images.py")
    spec = importlib.util.spec_from_file_location("_make_bad_images_io", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pil_decode(data: bytes, transpose: bool = False) -> np.ndarray:
    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(data))
    if transpose:
        img = ImageOps.exif_transpose(img)
    return np.asarray(img.convert("RGB"))


# ---------------------------------------------------------------- every case of the folder


def test_every_case_in_the_folder(bad_images_dir, gen):
    files = list_images(bad_images_dir)
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(gen.CASES)  # notes.txt is skipped, everything else listed
    for f in files:
        name = os.path.basename(f)
        _, kind, expect = gen.CASES[name]
        if kind == "good":
            img = read_image(f)
            shape, dtype, has_alpha = expect
            assert img.data.shape == shape, name
            assert str(img.data.dtype) == dtype, name
            assert (img.alpha is not None) == has_alpha, name
            if has_alpha:
                assert img.alpha.shape == shape[:2] and img.alpha.dtype == img.data.dtype
            assert img.path == f
        else:
            with pytest.raises(ImageReadError) as ei:
                read_image(f)
            msg = str(ei.value)
            assert expect in msg and msg.startswith(f + ":") and "\n" not in msg, msg


# ---------------------------------------------------------------- pixel content, case by case


def test_png_rgb_exact(gen):
    np.testing.assert_array_equal(decode_image(gen.make_good_png()).data, gen.rgb8())


@pytest.mark.parametrize("h, w", [(1, 1), (7, 7), (1, 9), (9, 1)])
def test_tiny_images(gen, h, w):
    a = gen.rgb8(h, w)
    np.testing.assert_array_equal(decode_image(gen._png(a)).data, a)


def test_grey16_keeps_full_depth(gen):
    img = decode_image(gen.make_grey16())
    assert img.data.dtype == np.uint16 and img.max_value == 65535
    np.testing.assert_array_equal(img.data[..., 0], gen.grey16())
    assert np.any(img.data % 256 != 0)  # the low byte is really there


@pytest.mark.parametrize("maker", ["make_rgb16", "make_tiff16"])
def test_rgb16_keeps_full_depth(gen, maker):
    img = decode_image(getattr(gen, maker)())
    assert img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, gen.rgb16())
    f = img.to_float()
    assert f.dtype == np.float32 and f.max() <= 1.0


def test_rgba16_alpha_full_depth(gen):
    img = decode_image(gen.make_rgba16())
    np.testing.assert_array_equal(img.data, gen.rgb16())
    assert img.alpha.dtype == np.uint16 and np.any(img.alpha % 256 != 0)


def test_rgba_alpha_kept(gen):
    img = decode_image(gen.make_rgba())
    np.testing.assert_array_equal(img.data, gen.rgb8())
    np.testing.assert_array_equal(img.alpha, gen.alpha8())


def test_grey_alpha(gen):
    img = decode_image(gen.make_grey_alpha())
    np.testing.assert_array_equal(img.data[..., 0], gen.rgb8()[..., 1])
    np.testing.assert_array_equal(img.alpha, gen.alpha8())


def test_palette_without_and_with_transparency(gen):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    idx = np.arange(12 * 16).reshape(12, 16) % 4
    img = decode_image(gen.make_palette())
    assert img.alpha is None
    np.testing.assert_array_equal(img.data, colours[idx])
    img = decode_image(gen.make_palette_transparent())
    np.testing.assert_array_equal(img.data, colours[idx])
    np.testing.assert_array_equal(img.alpha, np.where(idx == 1, 0, 255))


def test_bilevel_becomes_grey(gen):
    img = decode_image(gen.make_bilevel())
    assert set(np.unique(img.data)) <= {0, 255}
    np.testing.assert_array_equal(img.data[..., 0] > 0, gen.rgb8()[..., 0] > 127)


def test_cmyk_jpeg_is_converted_to_rgb(gen):
    data = gen.make_cmyk_jpeg()
    img = decode_image(data)
    assert img.data.shape == (12, 16, 3)
    np.testing.assert_array_equal(img.data, _pil_decode(data))
    assert np.abs(img.data.astype(int) - gen.rgb8()).mean() < 12


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_matches_pillow(gen, orientation):
    data = gen.make_exif_jpeg(orientation)
    np.testing.assert_array_equal(decode_image(data).data, _pil_decode(data, transpose=True))


@pytest.mark.parametrize("orientation, rot", [(3, 2), (6, -1), (8, 1)])
def test_exif_rotation_direction(gen, orientation, rot):
    """3 = 180 deg, 6 = display rotated 90 deg clockwise, 8 = 90 deg counter-clockwise."""
    data = gen.make_exif_jpeg(orientation)
    stored = _pil_decode(data)  # the pixels as stored, not rotated
    np.testing.assert_array_equal(decode_image(data).data, np.rot90(stored, k=rot))


def test_malformed_exif_orientation_is_ignored(gen):
    from PIL import Image

    img = Image.fromarray(gen.rgb8())
    exif = img.getexif()
    exif[0x0112] = 99  # not a valid orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())
    np.testing.assert_array_equal(decode_image(buf.getvalue()).data, gen.rgb8())


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "maker, phrase",
    [
        ("make_empty", "empty file (0 bytes)"),
        ("make_text", "not an image file"),
        ("make_truncated_png", "truncated"),
        ("make_truncated_jpeg", "truncated"),
    ],
)
def test_bad_bytes_are_one_line_errors(gen, maker, phrase):
    with pytest.raises(ImageReadError) as ei:
        decode_image(getattr(gen, maker)(), "x.png")
    assert phrase in str(ei.value) and str(ei.value).startswith("x.png: ")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_decompression_bomb_header_is_refused():
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 10))
    )
    with pytest.raises(ImageReadError, match="too large"):
        decode_image(png, "bomb.png")


def test_float_tiff_is_refused_not_clipped():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 0.5, np.float32), "F").save(buf, "TIFF")
    with pytest.raises(ImageReadError, match="floating-point"):
        decode_image(buf.getvalue(), "f.tif")


def test_missing_path_and_folder_path(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(str(tmp_path / "nope.png"))
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(str(tmp_path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(str(fifo))


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    p.write_bytes(b"\0" * 2048)
    monkeypatch.setattr(pio, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(str(p))


def test_non_ascii_names_round_trip(tmp_path, gen):
    p = tmp_path / "图像_ü" / "結果 ñ.png"
    write_image(str(p), gen.rgb8())
    assert os.listdir(tmp_path / "图像_ü") == ["結果 ñ.png"]
    np.testing.assert_array_equal(read_image(str(p)).data, gen.rgb8())
    assert list_images(str(tmp_path / "图像_ü")) == [str(p)]


# ---------------------------------------------------------------- list_images


def test_list_images_rules(tmp_path, gen):
    d = tmp_path / "imgs"
    d.mkdir()
    with pytest.raises(ImageReadError, match="folder is empty"):
        list_images(str(d))
    (d / "notes.txt").write_text("x")
    (d / ".hidden.png").write_bytes(gen.make_good_png())
    (d / "sub.png").mkdir()  # a folder named like an image
    with pytest.raises(ImageReadError, match="has no image files"):
        list_images(str(d))
    for n in ["b.PNG", "a.jpg", "c.tiff"]:
        (d / n).write_bytes(b"x")
    assert [os.path.basename(f) for f in list_images(str(d))] == ["a.jpg", "b.PNG", "c.tiff"]
    assert list_images(str(d / "notes.txt")) == [str(d / "notes.txt")]  # explicit file: as given
    assert [os.path.basename(f) for f in list_images(str(d / "*.jpg"))] == ["a.jpg"]
    with pytest.raises(ImageReadError, match="no file matches"):
        list_images(str(d / "*.webp"))
    with pytest.raises(ImageReadError, match="no such file or folder"):
        list_images(str(tmp_path / "missing"))


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".ppm", ".webp"])
def test_write_read_round_trip_8bit(tmp_path, gen, ext):
    p = write_image(str(tmp_path / f"o{ext}"), gen.rgb8())
    got = read_image(p).data
    if ext == ".webp":  # lossy by default
        assert np.abs(got.astype(int) - gen.rgb8()).mean() < 8
    else:
        np.testing.assert_array_equal(got, gen.rgb8())


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_write_16bit_keeps_depth_and_alpha(tmp_path, gen, ext):
    a = gen.rgb16()
    alpha = (np.arange(a.shape[0] * a.shape[1]).reshape(a.shape[:2]) * 601 % 65536).astype(
        np.uint16
    )
    img = read_image(write_image(str(tmp_path / f"o{ext}"), a, alpha))
    np.testing.assert_array_equal(img.data, a)
    np.testing.assert_array_equal(img.alpha, alpha)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_write_grey_with_alpha_stays_grey(tmp_path, gen, ext):
    g = gen.rgb8()[..., :1]
    img = read_image(write_image(str(tmp_path / f"o{ext}"), g, gen.alpha8()))
    np.testing.assert_array_equal(img.alpha, gen.alpha8())
    np.testing.assert_array_equal(img.data, g)


def test_write_16bit_grey_with_alpha_png_stays_grey_16bit(tmp_path):
    """Neither OpenCV nor Pillow writes a 16-bit grey+alpha PNG (it used to come back as
    RGBA); ppRestore writes colour type 4 itself. OpenCV, an independent decoder, must
    read the same samples back (it expands grey+alpha to BGRA)."""
    import cv2

    rng = np.random.default_rng(3)
    g = rng.integers(0, 65536, (23, 31, 1), dtype=np.uint16)
    a = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    path = write_image(str(tmp_path / "la16.png"), g, a)
    raw = open(path, "rb").read()
    assert raw[24:26] == bytes([16, 4])  # IHDR: bit depth 16, colour type 4 (grey+alpha)
    img = read_image(path)
    assert img.data.shape == (23, 31, 1) and img.data.dtype == np.uint16
    np.testing.assert_array_equal(img.data, g)
    np.testing.assert_array_equal(img.alpha, a)
    cv = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert cv.dtype == np.uint16 and cv.shape == (23, 31, 4)
    for c in range(3):
        np.testing.assert_array_equal(cv[..., c], g[..., 0])
    np.testing.assert_array_equal(cv[..., 3], a)
    # an 8-bit alpha is widened to the grey's depth, full range kept
    a8 = rng.integers(0, 256, (23, 31), dtype=np.uint8)
    img = read_image(write_image(str(tmp_path / "la16b.png"), g, a8))
    np.testing.assert_array_equal(img.alpha, a8.astype(np.uint16) * 257)


def test_jpeg_drops_alpha_and_rounds_16bit(tmp_path):
    a = np.full((8, 8, 3), 65535, np.uint16)
    a[0, 0] = 257 * 10
    img = read_image(write_image(str(tmp_path / "o.jpg"), a, np.zeros((8, 8), np.uint16)))
    assert img.alpha is None and img.data.dtype == np.uint8
    assert img.data[4, 4].tolist() == [255, 255, 255]


def test_pgm_grey_only(tmp_path, gen):
    p = write_image(str(tmp_path / "g.pgm"), gen.rgb8()[..., :1])
    np.testing.assert_array_equal(read_image(p).data[..., 0], gen.rgb8()[..., 0])
    with pytest.raises(ImageWriteError, match="grey images only"):
        write_image(str(tmp_path / "c.pgm"), gen.rgb8())


@pytest.mark.parametrize(
    "name, data, phrase",
    [
        ("o.xyz", np.zeros((4, 4, 3), np.uint8), "cannot encode image as '.xyz'"),
        ("o.png", np.zeros((4, 4, 3), np.float32), "float32"),
        ("o.png", np.zeros((4, 4, 2), np.uint8), "shape"),
        ("o.png", np.zeros((0, 4, 3), np.uint8), "shape"),
    ],
)
def test_write_bad_data_is_one_line(tmp_path, name, data, phrase):
    with pytest.raises(ImageWriteError, match=phrase) as ei:
        write_image(str(tmp_path / name), data)
    assert str(ei.value).startswith(str(tmp_path / name)) and "\n" not in str(ei.value)
    assert os.listdir(tmp_path) == []


def test_save_dir_under_a_regular_file(tmp_path, gen):
    """An unwritable save_dir that even root cannot write: a path below a regular file."""
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ImageWriteError, match="cannot write to folder") as ei:
        write_image(str(tmp_path / "file.txt" / "out" / "a.png"), gen.rgb8())
    assert "\n" not in str(ei.value)


def test_read_only_save_dir(tmp_path, gen):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("running as root: permissions are not enforced (see the file.txt test)")
        with pytest.raises(ImageWriteError, match="cannot write"):
            write_image(str(d / "a.png"), gen.rgb8())
    finally:
        d.chmod(0o755)


def test_target_is_a_folder(tmp_path, gen):
    (tmp_path / "a.png").mkdir()
    with pytest.raises(ImageWriteError, match="is a folder"):
        write_image(str(tmp_path / "a.png"), gen.rgb8())


def test_overwriting_the_input_is_atomic(tmp_path, gen, monkeypatch):
    """save_dir == input folder: a failure while writing leaves the input untouched."""
    src = tmp_path / "in.png"
    src.write_bytes(gen.make_good_png())
    before = src.read_bytes()

    def boom(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pio.os, "replace", boom)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_image(str(src), np.zeros((12, 16, 3), np.uint8))
    assert src.read_bytes() == before
    assert os.listdir(tmp_path) == ["in.png"]  # no temporary file left behind
    monkeypatch.undo()
    write_image(str(src), np.zeros((12, 16, 3), np.uint8))
    assert read_image(str(src)).data.max() == 0
