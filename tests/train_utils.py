"""Helpers for the training tests: tiny image folders and configs."""

import os
import subprocess
import sys

import numpy as np
import yaml

from ppRestore.data.io import write_image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_images(folder: str, n: int = 6, size: int = 32, channels: int = 3, seed: int = 0) -> str:
    """Smooth random images (so blur/denoise are learnable) written as PNG."""
    import cv2

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        low = rng.random((size // 4, size // 4, channels)).astype(np.float32)
        img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC).reshape(
            size, size, channels
        )
        write_image(
            os.path.join(folder, f"img{i:02d}.png"),
            (np.clip(img, 0, 1) * 255).round().astype(np.uint8),
        )
    return folder


def tiny_config(tmp: str, iters: int = 8, save_interval: int = 2, **train) -> str:
    """Write a TinyRestorer denoising config over a tiny synthetic folder; returns its path."""
    data = make_images(os.path.join(tmp, "clean"))
    cfg = {
        "model": {"type": "TinyRestorer"},
        "iters": iters,
        "batch_size": 2,
        "train_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": data,
            "degradations": [{"type": "GaussianNoise", "sigma": [5, 25]}],
            "transforms": [
                {"type": "PairedRandomCrop", "patch_size": 16},
                {"type": "RandomHorizontalFlip"},
                {"type": "RandomRot90"},
            ],
        },
        "val_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": data,
            "degradations": [{"type": "GaussianNoise", "sigma": 15}],
        },
        "loss": {"types": [{"type": "CharbonnierLoss"}, {"type": "EdgeLoss"}], "coef": [1.0, 0.05]},
        "optimizer": {"type": "Adam", "grad_clip": 1.0},
        "lr_scheduler": {"type": "CosineWarmup", "learning_rate": 0.01, "warmup_iters": 2},
        "train": {"save_interval": save_interval, "log_iters": 1, "seed": 3, **train},
    }
    path = os.path.join(tmp, "tiny.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


# Runs tools/train.py in a fresh interpreter with the test models registered.
_LAUNCH = (
    "import sys, runpy; sys.path.insert(0, {root!r}); import tests.tiny_models; "
    "sys.argv = ['tools/train.py'] + sys.argv[1:]; runpy.run_path({script!r}, run_name='__main__')"
)


def train_cmd(*args: str) -> list:
    code = _LAUNCH.format(root=REPO_ROOT, script=os.path.join(REPO_ROOT, "tools", "train.py"))
    return [sys.executable, "-c", code, *args]


def run_train(*args: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1")
    return subprocess.run(
        train_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
        **kw,
    )
