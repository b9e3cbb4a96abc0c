"""Datasets, degradations, transforms, the resumable sampler and split_dataset."""

import os

import numpy as np
import pytest

from ppRestore.data.datasets import PairedFolderDataset, ResumableBatchSampler, SyntheticDataset
from ppRestore.data.degradations import DegradationPipeline
from ppRestore.data.transforms import Compose, PairedRandomCrop
from ppRestore.registry import DEGRADATIONS
from tests.train_utils import make_images

ALL_SAME_SIZE = [
    {"type": "GaussianNoise", "sigma": [5, 50], "gray_prob": 0.5},
    {"type": "SaltPepperNoise", "amount": 0.1},
    {"type": "GaussianBlur", "sigma": [0.5, 2.0]},
    {"type": "MotionBlur", "length": 9},
    {"type": "JPEGCompression", "quality": [20, 60]},
    {"type": "RainStreaks"},
    {"type": "Haze"},
    {"type": "PoissonGaussianNoise"},
]


@pytest.mark.parametrize("cfg", ALL_SAME_SIZE, ids=lambda c: c["type"])
@pytest.mark.parametrize("channels", [1, 3])
def test_degradations_shape_range_determinism(cfg, channels):
    img = np.random.default_rng(0).random((24, 20, channels)).astype(np.float32)
    op = DEGRADATIONS.build(cfg)
    a = op(img.copy(), np.random.default_rng([1, 2]))
    b = op(img.copy(), np.random.default_rng([1, 2]))
    c = op(img.copy(), np.random.default_rng([1, 3]))
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)  # same generator seed -> same output
    assert not np.array_equal(a, img)  # it does degrade
    if cfg["type"] not in ("Haze",):  # random per-image parameters/noise differ by seed
        assert not np.array_equal(a, c)


def test_gaussian_noise_sigma_and_blur_kernel():
    img = np.full((200, 200, 3), 0.5, np.float32)
    out = DEGRADATIONS.build({"type": "GaussianNoise", "sigma": 25})(img, np.random.default_rng(0))
    assert abs((out - img).std() * 255 - 25) < 0.5
    gray = DEGRADATIONS.build({"type": "GaussianNoise", "sigma": 25, "gray_prob": 1.0})(
        img, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])  # one noise map for all channels
    # blur of an impulse equals the (normalised) kernel
    imp = np.zeros((21, 21, 1), np.float32)
    imp[10, 10] = 1
    blurred = DEGRADATIONS.build({"type": "GaussianBlur", "sigma": 1.0, "kernel_size": 7})(
        imp, np.random.default_rng(0)
    )
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)
    assert blurred[10, 10, 0] == blurred.max()


def test_degradation_errors():
    with pytest.raises(ValueError, match="sigma"):
        DEGRADATIONS.build({"type": "GaussianNoise", "sigma": 300})
    with pytest.raises(ValueError, match="scale"):
        DEGRADATIONS.build({"type": "BicubicDownscale", "scale": 5})
    with pytest.raises(KeyError, match="GaussianNoise"):
        DEGRADATIONS.build({"type": "GausianNoise"})


def test_bicubic_downscale_uses_matlab_imresize():
    from ppRestore.data import resize

    img = np.random.default_rng(0).random((26, 25, 3)).astype(np.float32)
    out = DEGRADATIONS.build({"type": "BicubicDownscale", "scale": 4})(
        img, np.random.default_rng(0)
    )
    assert out.shape == (6, 6, 3)
    np.testing.assert_allclose(out, np.clip(resize.imresize(img[:24, :24], 0.25), 0, 1), atol=1e-6)


def test_paired_crop_is_scale_aware():
    def up(x):  # nearest-neighbour x4: each LQ pixel is a 4x4 GT block
        return np.repeat(np.repeat(x, 4, 0), 4, 1)

    lq = np.arange(8 * 8, dtype=np.float32).reshape(8, 8, 1)
    gt = up(lq)
    a, b = PairedRandomCrop(16)(lq, gt, np.random.default_rng(5))
    assert a.shape == (4, 4, 1) and b.shape == (16, 16, 1)
    np.testing.assert_array_equal(up(a), b)  # still aligned
    t = Compose(
        [{"type": "RandomHorizontalFlip"}, {"type": "RandomVerticalFlip"}, {"type": "RandomRot90"}]
    )
    for s in range(8):
        a2, b2 = t(a, b, np.random.default_rng(s))
        np.testing.assert_array_equal(up(a2), b2)
    with pytest.raises(ValueError, match="divisible"):
        PairedRandomCrop(18)(lq, gt, np.random.default_rng(0))


def test_paired_folder_dataset(tmp_path):
    make_images(str(tmp_path / "lq"), n=3)
    make_images(str(tmp_path / "gt"), n=3, seed=1)
    ds = PairedFolderDataset(
        str(tmp_path), transforms=[{"type": "PairedRandomCrop", "patch_size": 16}]
    )
    lq, gt, idx = ds[1]
    assert lq.shape == gt.shape == (3, 16, 16) and int(idx) == 1
    grey = PairedFolderDataset(str(tmp_path), channels=1, mode="val")
    assert grey[0][0].shape == (1, 32, 32)
    os.rename(tmp_path / "gt" / "img02.png", tmp_path / "gt" / "other.png")
    with pytest.raises(
        ValueError, match=r"only in lq/: \['img02.png'\].*only in gt/: \['other.png'\]"
    ):
        PairedFolderDataset(str(tmp_path))


def test_synthetic_dataset_determinism(tmp_path):
    root = make_images(str(tmp_path / "c"), n=4)
    degs = [
        {"type": "GaussianBlur", "sigma": [0.5, 2]},
        {"type": "GaussianNoise", "sigma": [5, 30]},
    ]
    tr = [{"type": "PairedRandomCrop", "patch_size": 16}, {"type": "RandomRot90"}]
    ds = SyntheticDataset(root, degradations=degs, transforms=tr, seed=7)
    n = len(ds)
    a, b = ds[2], ds[2]
    np.testing.assert_array_equal(a[0], b[0])  # same key -> same sample
    e1 = ds[n + 2]  # the same image in epoch 1 gets a different crop/noise
    assert int(e1[2]) == 2 and not np.array_equal(a[0], e1[0])
    ds2 = SyntheticDataset(root, degradations=degs, transforms=tr, seed=7)
    np.testing.assert_array_equal(ds2[n + 2][0], e1[0])  # reproducible across instances
    val = SyntheticDataset(root, degradations=degs, mode="val", seed=7)
    np.testing.assert_array_equal(val[1][0], val[n + 1][0])  # val ignores the epoch
    assert val[1][0].shape == (3, 32, 32)


def test_synthetic_sr_dataset(tmp_path):
    root = make_images(str(tmp_path / "c"), n=2, size=30)
    ds = SyntheticDataset(root, degradations=[{"type": "BicubicDownscale", "scale": 3}], mode="val")
    lq, gt, _ = ds[0]
    assert gt.shape == (3, 30, 30) and lq.shape == (3, 10, 10)
    up = SyntheticDataset(
        root, degradations=[{"type": "BicubicDownscale", "scale": 3}], upscale_lq=True, mode="val"
    )
    assert up[0][0].shape == (3, 30, 30)


def test_resumable_sampler_order_sharding_resume():
    data = list(range(10))
    s = ResumableBatchSampler(data, 3, seed=1)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == len(s) == 3
    expect = np.random.default_rng([1, 2]).permutation(10)
    assert [k - 20 for b in full for k in b] == list(expect[:9])  # keys carry the epoch
    s.set_epoch(2)
    s.start_batch = 1
    assert list(s) == full[1:]  # resume mid-epoch
    assert list(s) == full  # start_batch applies once
    r0 = ResumableBatchSampler(data, 2, seed=1, num_replicas=2, rank=0)
    r1 = ResumableBatchSampler(data, 2, seed=1, num_replicas=2, rank=1)
    k0 = {k for b in r0 for k in b}
    k1 = {k for b in r1 for k in b}
    assert not k0 & k1 and len(k0) == len(k1) == 4


def test_split_dataset(tmp_path):
    from tools.split_dataset import main, split_names

    names = [f"{i}.png" for i in range(20)]
    s1, s2 = split_names(names, [0.7, 0.15, 0.15], 0), split_names(names, [0.7, 0.15, 0.15], 0)
    assert s1 == s2 and [len(s1[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert sorted(sum(s1.values(), [])) == sorted(names)
    assert split_names(names, [0.7, 0.15, 0.15], 1) != s1
    src = make_images(str(tmp_path / "src"), n=5)
    assert (
        main(["--src", src, "--out", str(tmp_path / "out"), "--ratios", "0.6", "0.4", "--symlink"])
        == 0
    )
    tr = sorted(os.listdir(tmp_path / "out" / "train"))
    assert len(tr) == 3 and os.path.islink(tmp_path / "out" / "train" / tr[0])
    assert len(os.listdir(tmp_path / "out" / "val")) == 2


def test_pipeline_scale():
    assert DegradationPipeline([{"type": "GaussianNoise"}]).scale == 1
    assert (
        DegradationPipeline(
            [{"type": "GaussianBlur"}, {"type": "BicubicDownscale", "scale": 2}]
        ).scale
        == 2
    )


def test_flip_rot_pad_and_paired_image_dataset(tmp_path):
    from ppRestore.data.transforms import PadToSize, PairedRandomFlipRot

    lq = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    seen = set()
    for s in range(40):
        a, b = PairedRandomFlipRot()(lq, lq * 2, np.random.default_rng(s))
        np.testing.assert_array_equal(a * 2, b)
        seen.add(a.tobytes())
    assert len(seen) == 8  # all 8 dihedral variants occur
    a, b = PadToSize(8)(
        lq[::1, ::1], np.repeat(np.repeat(lq, 2, 0), 2, 1), np.random.default_rng(0)
    )
    assert a.shape == (4, 4, 1) and b.shape == (8, 8, 1)
    assert a[3, 0, 0] == lq[1, 0, 0]  # reflect padding
    make_images(str(tmp_path / "input"), n=2)
    make_images(str(tmp_path / "target"), n=2)
    from ppRestore.registry import DATASETS

    ds = DATASETS.build(
        {
            "type": "PairedImageDataset",
            "dataset_root": str(tmp_path),
            "transforms": [{"type": "PairedRandomCrop", "crop_size": 8}],
        }
    )
    assert ds[0][0].shape == (3, 8, 8)


@pytest.mark.shared_data
def test_base_snippets_build_on_kodak24(shared_data):
    from ppRestore.config import load_config
    from ppRestore.data.datasets import build_dataset

    cfg = load_config(
        os.path.join(
            os.path.dirname(os.path.dirname(__file__)),
            "configs",
            "cmfnet",
            "cmfnet_reduced_kodak24_blur.yml",
        ),
        [
            f"train_dataset.dataset_root={shared_data}/kodak24",
            f"val_dataset.dataset_root={shared_data}/kodak24",
        ],
    )
    assert cfg["loss"]["types"][0]["type"] == "CMFNetLoss" and cfg["optimizer"]["grad_clip"] == 1.0
    tr = build_dataset(cfg["train_dataset"], mode="train", seed=0)
    assert len(tr) == 24 * 20
    lq, gt, _ = tr[3]
    assert lq.shape == gt.shape == (3, 48, 48)
    val = build_dataset(cfg["val_dataset"], mode="val", seed=0)
    assert val[0][0].shape == (3, 128, 128)


def test_channels_y_is_matlab_luma(tmp_path):
    """channels: y gives MATLAB rgb2ycbcr's Y (16-235, 8-bit rounded), built from YAML."""
    from ppRestore.data.io import write_image
    from ppRestore.registry import DATASETS

    img = np.zeros((4, 6, 3), np.uint8)
    img[:2] = 255  # white -> Y 235
    img[2:, :, 0] = 255  # pure red -> Y 81 (MATLAB: 16 + 65.481 = 81.481 -> 81)
    write_image(str(tmp_path / "c" / "a.png"), img)
    grey = np.full((4, 6, 1), 100, np.uint8)  # a grey image is already Y
    write_image(str(tmp_path / "c" / "b.png"), grey)
    ds = DATASETS.build(
        {"type": "SyntheticDataset", "dataset_root": str(tmp_path / "c"), "channels": "y"},
        mode="val",
    )
    y = ds[0][1][0] * 255
    np.testing.assert_allclose(y[:2], 235, atol=1e-4)
    np.testing.assert_allclose(y[2:], 81, atol=1e-4)
    np.testing.assert_allclose(ds[1][1][0] * 255, 100, atol=1e-4)
    with pytest.raises(ValueError, match="channels must be 1, 3 or 'y'"):
        SyntheticDataset(str(tmp_path / "c"), channels="rgb")


def _locate(patch: np.ndarray, full: np.ndarray) -> tuple:
    """(top, left) where ``patch`` (C x h x w) sits in ``full`` (C x H x W); unique."""
    h, w = patch.shape[1:]
    hits = [
        (y, x)
        for y in range(full.shape[1] - h + 1)
        for x in range(full.shape[2] - w + 1)
        if np.array_equal(full[:, y : y + h, x : x + w], patch)
    ]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.parametrize("upscale", [True, False])
def test_degrade_first_crops_the_whole_image_degradation(tmp_path, upscale):
    """degrade_first: the LQ patch is exactly the crop of the whole-image LQ (so patch
    borders see no resize-edge mirroring), cached for deterministic degradations; the
    default patch-first LQ differs from it near the patch edge."""
    root = make_images(str(tmp_path / "c"), n=2, size=40)
    degs = [{"type": "BicubicDownscale", "scale": 2}]
    crop = [{"type": "PairedRandomCrop", "patch_size": 16}]
    full = SyntheticDataset(root, degradations=degs, upscale_lq=upscale, mode="val")
    first = SyntheticDataset(
        root,
        degradations=degs,
        upscale_lq=upscale,
        transforms=crop,
        degrade_first=True,
        cache=True,
        seed=3,
    )
    patchwise = SyntheticDataset(
        root, degradations=degs, upscale_lq=upscale, transforms=crop, seed=3
    )
    for key in range(6):
        lq, gt, idx = first[key]
        f_lq, f_gt, _ = full[int(idx)]
        top, left = _locate(gt, f_gt)
        s = 1 if upscale else 2
        assert top % s == 0 and left % s == 0
        np.testing.assert_array_equal(
            lq, f_lq[:, top // s : top // s + lq.shape[1], left // s : left // s + lq.shape[2]]
        )
        assert lq.shape[1:] == ((16, 16) if upscale else (8, 8))
    assert len(first._lq_cache) == 2  # both images cached after a few samples
    np.testing.assert_array_equal(first[1][0], first[1][0])
    # patch-first: same crop size, but the LQ's border comes from the patch alone
    lq, gt, idx = patchwise[0]
    f_lq, f_gt, _ = full[int(idx)]
    top, left = _locate(gt, f_gt)
    s = 1 if upscale else 2
    ref = f_lq[:, top // s : top // s + lq.shape[1], left // s : left // s + lq.shape[2]]
    assert np.abs(lq - ref).max() > 1e-3


def test_degrade_first_random_degradations_are_not_cached(tmp_path):
    root = make_images(str(tmp_path / "c"), n=2, size=24)
    ds = SyntheticDataset(
        root,
        degradations=[{"type": "GaussianNoise", "sigma": 25}],
        transforms=[{"type": "PairedRandomCrop", "patch_size": 8}],
        degrade_first=True,
        cache=True,
    )
    assert not ds.degrade.deterministic
    a, b = ds[0], ds[len(ds)]  # same image, next epoch: new noise
    assert a[0].shape == (3, 8, 8) and not ds._lq_cache
    assert not np.array_equal(a[0] - a[1], b[0] - b[1])
