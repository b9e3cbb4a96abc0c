"""tools/infer.py and deploy/python/infer.py under paddle.distributed.launch: the input
list is split across ranks, every file is restored once, and rank 0 reports the run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ppRestore.data.io import read_image, write_image
from ppRestore.inference import shard
from ppRestore.inference.batch import BatchResult

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs", "srcnn", "srcnn_x3.yml")


def test_shard_plan_splits_each_file_exactly_once(monkeypatch):
    files = [f"/d/{i:03d}.png" for i in range(11)]
    parts = []
    for rank in range(3):
        monkeypatch.setenv("PADDLE_TRAINER_ID", str(rank))
        monkeypatch.setenv("PADDLE_TRAINERS_NUM", "3")
        mine, plan = shard.shard_plan(files)
        assert plan.world == 3 and plan.rank == rank and plan.of(rank) == mine
        parts.append(mine)
    assert sorted(sum(parts, [])) == files and [len(p) for p in parts] == [4, 4, 3]
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "1")
    monkeypatch.setenv("PADDLE_TRAINER_ID", "0")
    assert shard.shard_plan(files)[0] == files
    monkeypatch.setenv("PADDLE_TRAINER_ID", "5")
    with pytest.raises(ValueError, match="rank 5 of 1"):
        shard.shard_plan(files)


def test_gather_merges_ranks_and_flags_missing_and_colliding(tmp_path, monkeypatch):
    files = ["a.png", "b.png", "c.png", "d.png"]
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    results = []
    for rank in (1, 0):
        monkeypatch.setenv("PADDLE_TRAINER_ID", str(rank))
        mine, plan = shard.shard_plan(files)
        res = BatchResult(restored=[(f, f"o/{f}") for f in mine], seconds=1.0 + rank, shard=plan)
        if rank == 1:  # d.png's output collides with b.png's
            res.restored[1] = ("d.png", "o/b.png")
        results.append(shard.gather(res, str(tmp_path)))
    r1, r0 = results
    assert not r1.is_primary and "summary is on rank 0" in r1.summary()
    assert r0.is_primary and [f for f, _ in r0.restored] == ["a.png", "b.png", "c.png"]
    assert [f for f, _ in r0.failed] == ["d.png"] and "also the output of" in r0.failed[0][1]
    assert r0.seconds == 2.0 and "2 processes" in r0.summary()
    assert not os.path.exists(tmp_path / shard.SHARD_DIR)  # cleaned up
    # a rank that never reports: its files are failures, after the timeout
    monkeypatch.setenv("PADDLE_TRAINER_ID", "0")
    mine, plan = shard.shard_plan(files)
    res = shard.gather(BatchResult(restored=[(f, f) for f in mine], shard=plan), str(tmp_path), 0.2)
    assert [f for f, _ in res.failed] == ["b.png", "d.png"] and "did not report" in res.failed[0][1]


def _launch(tmp_path, tag, script_args, env):
    log = tmp_path / f"log_{tag}"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(log), *script_args]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    logs = [(log / f"workerlog.{i}").read_text() for i in (0, 1)]
    return r, logs


@pytest.mark.slow
def test_two_process_launch_restores_each_file_once_like_one_process(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    names = [f"im{i}.png" for i in range(5)]
    for i, n in enumerate(names):
        write_image(str(src / n), (rng.random((20 + i, 17 + 2 * i)) * 255).astype(np.uint8))
    (src / "broken.png").write_bytes(b"not a png")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    tool = [os.path.join(REPO, "tools", "infer.py"), "-c", CFG, "--model_path", "srcnn_x3",
            "--image_path", str(src), "--quiet"]  # fmt: skip
    one = subprocess.run(
        [sys.executable, *tool, "--save_dir", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert one.returncode == 1 and "5 restored, 1 failed: broken.png" in one.stderr
    r, logs = _launch(tmp_path, "dyn", [*tool, "--save_dir", str(tmp_path / "two")], env)
    assert r.returncode != 0  # rank 0 reports the broken file with exit code 1
    # one summary for the whole run, on rank 0; rank 1 only names its own share
    assert "5 restored, 1 failed: broken.png" in logs[0] and "2 processes" in logs[0]
    assert "summary is on rank 0" in logs[1] and "5 restored" not in logs[1]
    done = [ln for lg in logs for ln in lg.splitlines() if "restored" in ln]
    assert len(done) == 2
    for n in names:  # each output exists once and equals the single-process one
        a = read_image(str(tmp_path / "one" / n)).data
        b = read_image(str(tmp_path / "two" / n)).data
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path / "two")) == sorted(names)  # shard reports removed

    # the deploy tool shards the same way (exported SRCNN on Paddle Inference)
    exp = tmp_path / "exp"
    subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export.py"), "-c", CFG, "--model_path",
         "srcnn_x3", "--save_dir", str(exp), "--no_measure_memory", "--no_check"],
        check=True, capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    (src / "broken.png").unlink()
    dep = [os.path.join(REPO, "deploy", "python", "infer.py"), "--config", str(exp),
           "--image_path", str(src), "--save_dir", str(tmp_path / "dep"), "--backend", "paddle",
           "--cpu_threads", "1", "--quiet"]  # fmt: skip
    r, logs = _launch(tmp_path, "dep", dep, env)
    assert r.returncode == 0, (r.stderr + logs[0] + logs[1])[-3000:]
    assert "5 restored, 0 failed" in logs[0] and "summary is on rank 0" in logs[1]
    for n in names:
        a = read_image(str(tmp_path / "one" / n)).data.astype(int)
        b = read_image(str(tmp_path / "dep" / n)).data.astype(int)
        assert np.abs(a - b).max() <= 1  # Paddle Inference vs dynamic graph rounding
