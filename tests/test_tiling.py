"""Tiling and padding (numpy-only, no Paddle: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from ppRestore.inference import tiling


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 box filter with zero padding on N x C x H x W (receptive-field radius 1)."""
    p = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    h, w = x.shape[-2:]
    return sum(p[..., i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def toy_cnn(x: np.ndarray, depth: int = 3) -> np.ndarray:
    """A bounded-receptive-field 'CNN': ``depth`` box filters with a non-linearity
    (radius = depth); zero padding like a real conv net."""
    y = x
    for _ in range(depth):
        y = np.tanh(2.0 * box3(y)) + 0.1 * y
    return y.astype(np.float32)


def upsample2(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(toy_cnn(x, 2), 2, axis=2), 2, axis=3)


@pytest.mark.parametrize("h,w,m", [(333, 517, 8), (1, 5, 4), (16, 16, 16), (7, 3, 32)])
def test_pad_to_multiple(h, w, m):
    x = np.random.default_rng(0).random((1, 2, h, w), dtype=np.float32)
    y, h0, w0 = tiling.pad_to_multiple(x, m)
    assert (h0, w0) == (h, w)
    assert y.shape[-2] % m == 0 and y.shape[-1] % m == 0
    assert y.shape[-2] - h < m and y.shape[-1] - w < m
    np.testing.assert_array_equal(y[..., :h, :w], x)
    if h > 1 and y.shape[-2] > h:  # reflect: the first padded row mirrors row h-2
        np.testing.assert_array_equal(y[..., h, :w], x[..., h - 2, :])


def test_tile_starts_cover_and_align():
    for length, tile, ov, m in [
        (100, 32, 8, 4),
        (64, 64, 16, 8),
        (1000, 256, 32, 8),
        (40, 32, 8, 8),
    ]:
        s = tiling.tile_starts(length, tile, ov, m)
        assert s[0] == 0 and s[-1] + tile == length
        assert all(v % m == 0 for v in s)
        assert all(b - a <= tile - ov for a, b in zip(s, s[1:])), s  # overlap >= ov
        assert all(b > a for a, b in zip(s, s[1:]))


def test_blend_windows_partition_of_unity():
    # Two tiles overlapping by 16: their windows sum to one across the overlap.
    a = tiling.blend_window(48, 0, 16)
    b = tiling.blend_window(48, 16, 0)
    total = np.zeros(80)
    total[:48] += a
    total[32:] += b
    np.testing.assert_allclose(total, 1.0, atol=1e-7)
    assert a[-4:].max() < 1e-6  # the outer quarter is ignored (it saw the tile border)


@pytest.mark.parametrize("shape", [(1, 3, 70, 90), (2, 1, 64, 41)])
def test_tiled_equals_whole_when_overlap_covers_receptive_field(shape):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    whole = toy_cnn(x)  # radius 3: receptive field 7
    # overlap 16 >= 7 (receptive field) and overlap // 4 = 4 >= radius 3: exact everywhere
    tiled = tiling.tiled_forward(toy_cnn, x, tile=32, overlap=16)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tiled_small_overlap_equal_away_from_tile_borders():
    x = np.random.default_rng(2).random((1, 3, 96, 96), dtype=np.float32)
    whole = toy_cnn(x)
    tile, ov, r = 32, 4, 3  # overlap smaller than the receptive field
    tiled = tiling.tiled_forward(toy_cnn, x, tile=tile, overlap=ov)
    starts = tiling.tile_starts(96, tile, ov)
    edges = sorted({s for s in starts if s > 0} | {s + tile for s in starts if s + tile < 96})
    far = np.ones(96, bool)
    for e in edges:
        far[max(0, e - r - ov) : e + r + ov] = False
    mask = far[:, None] & far[None, :]
    assert mask.sum() > 500
    np.testing.assert_allclose(tiled[..., mask], whole[..., mask], atol=1e-3)
    # ...and near the borders it really differs (so the check above is not vacuous)
    assert np.abs(tiled - whole).max() > 1e-5


def test_tiled_super_resolution_scale():
    x = np.random.default_rng(3).random((1, 3, 40, 56), dtype=np.float32)
    whole = upsample2(x)
    tiled = tiling.tiled_forward(upsample2, x, tile=24, overlap=12, scale=2, multiple=4)
    assert tiled.shape == (1, 3, 80, 112)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_align_tile_and_choose_tile_size():
    assert tiling.align_tile(100, 10, 8) == (96, 16)
    assert tiling.align_tile(16, 32, 8) == (16, 8)  # overlap capped at tile // 2
    assert tiling.choose_tile_size(100, 100, 100.0, 8, 32, budget=10**7) is None
    t = tiling.choose_tile_size(4000, 3000, 5000.0, 8, 32, budget=2 * 10**9)
    assert t is not None and t % 8 == 0 and t * t * 5000.0 <= 2 * 10**9
    assert tiling.available_memory() > 0
