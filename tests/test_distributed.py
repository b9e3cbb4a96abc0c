"""Two-process CPU data parallel (gloo) through paddle.distributed.launch."""

import os
import subprocess
import sys

import numpy as np

from ppRestore.engine import checkpoint as ckpt
from ppRestore.weights.safe_load import load_weights
from tests.train_utils import REPO_ROOT, tiny_config


def test_two_process_cpu_launch_identical_weights(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=4, save_interval=2)
    out, save = str(tmp_path / "dump"), str(tmp_path / "o")
    os.makedirs(out)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
        "--log_dir", str(tmp_path / "log"),
        os.path.join(REPO_ROOT, "tests", "dist_worker.py"), cfg, save, out,
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    logs = "".join(
        open(os.path.join(tmp_path, "log", f)).read()
        for f in sorted(os.listdir(tmp_path / "log"))
        if f.startswith("workerlog")
    )
    assert r.returncode == 0, (r.stdout + r.stderr + logs)[-4000:]
    a, b = np.load(os.path.join(out, "rank0.npz")), np.load(os.path.join(out, "rank1.npz"))
    assert int(a["world"]) == int(b["world"]) == 2
    keys = [k for k in a.files if k != "world"]
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])  # gradients were all-reduced every step
    # rank 0 alone saved; its checkpoint holds the same weights
    assert [i for i, _ in ckpt.list_checkpoints(save)] == [2, 4]
    saved = load_weights(os.path.join(save, "iter_4", "model.pdparams"))
    for k in keys:
        np.testing.assert_array_equal(saved[k], a[k])
    # rank 0 alone logged
    assert "[TRAIN]" in open(os.path.join(tmp_path, "log", "workerlog.0")).read()
    assert "[TRAIN]" not in open(os.path.join(tmp_path, "log", "workerlog.1")).read()
