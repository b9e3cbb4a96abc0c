"""Synthetic document (pen-mark removal) pairs: determinism, locality of strokes, I/O."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ppRestore.data import documents
from ppRestore.data.io import read_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pairs_are_deterministic_and_seed_dependent() -> None:
    a = documents.make_document_pair(3, 96)
    b = documents.make_document_pair(3, 96)
    c = documents.make_document_pair(4, 96)
    np.testing.assert_array_equal(a.lq, b.lq)
    np.testing.assert_array_equal(a.gt, b.gt)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.gt, c.gt)


@pytest.mark.parametrize("seed", range(6))
def test_strokes_change_pixels_only_where_drawn(seed: int) -> None:
    pair = documents.make_document_pair(seed, (80, 120))
    assert pair.lq.shape == pair.gt.shape == (80, 120, 3) and pair.lq.dtype == np.uint8
    changed = np.any(pair.lq != pair.gt, axis=2)
    assert changed.any(), "no pen mark was drawn"
    assert not np.any(changed & ~pair.mask), "pixels changed outside the stroke mask"
    # The mask is not a blanket: most of the page stays untouched.
    assert pair.mask.mean() < 0.5
    # Strokes are visible, not sub-level dust: a good share of the masked pixels change.
    assert changed.sum() >= 0.5 * pair.mask.sum()


def test_page_has_printed_text() -> None:
    page = documents.render_page(128, 0)
    grey = page.mean(axis=2)
    paper = np.median(grey)
    dark = grey < paper - 80
    assert 0.01 < dark.mean() < 0.4  # text present, page not black
    # Text is laid out in lines: some rows have ink, some are blank.
    rows = dark.any(axis=1)
    assert rows.any() and not rows.all()


def test_pen_colours_appear() -> None:
    # Over several pages, the marks include bluish and reddish ink (R vs B balance).
    blue = red = False
    for s in range(12):
        p = documents.make_document_pair(s, 96)
        ink = p.lq[p.mask & np.any(p.lq != p.gt, axis=2)].astype(int)
        if len(ink):
            blue |= bool(np.any(ink[:, 2] - ink[:, 0] > 60))
            red |= bool(np.any(ink[:, 0] - ink[:, 2] > 60))
    assert blue and red


def test_bad_size_rejected() -> None:
    with pytest.raises(ValueError, match="32x32"):
        documents.render_page(16)


def test_folder_writer_and_cli(tmp_path) -> None:
    names = documents.write_document_pairs(str(tmp_path / "a"), 3, 64, seed=7)
    assert names == ["00000.png", "00001.png", "00002.png"]
    for n in names:
        lq = read_image(str(tmp_path / "a" / "lq" / n)).data
        gt = read_image(str(tmp_path / "a" / "gt" / n)).data
        assert lq.shape == gt.shape == (64, 64, 3)
    ref = documents.make_document_pair((7, 1), 64)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a" / "lq" / "00001.png")).data, ref.lq)

    out = tmp_path / "b"
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "make_document_pairs.py"),
            "--out",
            str(out),
            "--num",
            "2",
            "--size",
            "48",
            "64",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (
        sorted(os.listdir(out / "lq"))
        == sorted(os.listdir(out / "gt"))
        == ["00000.png", "00001.png"]
    )
    assert read_image(str(out / "gt" / "00000.png")).data.shape == (48, 64, 3)


def test_dataset_samples() -> None:
    from ppRestore.registry import DATASETS

    ds = DATASETS.build(
        {"type": "SyntheticDocumentDataset", "num": 4, "size": 64, "mode": "val", "seed": 2}
    )
    lq, gt, idx = ds[1]
    assert lq.shape == gt.shape == (3, 64, 64) and lq.dtype == np.float32 and int(idx) == 1
    assert 0 <= lq.min() and lq.max() <= 1
    np.testing.assert_array_equal(ds[1][0], lq)  # val pages are fixed
    ref = documents.make_document_pair((2, 1), 64)
    np.testing.assert_allclose(gt, ref.gt.transpose(2, 0, 1) / 255.0, atol=1e-7)

    tr = documents.SyntheticDocumentDataset(num=4, size=64, mode="train", seed=2, channels=1)
    a, _, i0 = tr[1]
    b, _, i1 = tr[5]  # epoch 1, same index: a fresh page
    assert a.shape == (1, 64, 64) and int(i0) == int(i1) == 1
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(tr[5][0], b)
