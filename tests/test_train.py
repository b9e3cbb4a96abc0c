"""End-to-end training through tools/train.py: VisualDL, val.py, signals, kill -9 resume."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ppRestore.engine import checkpoint as ckpt
from ppRestore.weights.safe_load import load_weights
from tests.train_utils import REPO_ROOT, run_train, tiny_config, train_cmd


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def _final(save_dir, it):
    return load_weights(os.path.join(save_dir, f"iter_{it}", "model.pdparams"))


def test_cli_train_eval_visualdl_and_val(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=6, save_interval=3)
    out = str(tmp_path / "out")
    r = run_train(
        "-c",
        cfg,
        "--save_dir",
        out,
        "--do_eval",
        "--use_vdl",
        "--batch_size",
        "3",
        "-o",
        "train.log_iters=2",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (
        "[TRAIN] epoch:" in r.stdout
        and "ips:" in r.stdout
        and "ETA" in r.stdout
        and "reader_cost" in r.stdout
    )
    assert "[EVAL] iter: 6, PSNR:" in r.stdout
    import yaml

    saved = yaml.safe_load(open(os.path.join(out, "config.yaml")))
    assert saved["batch_size"] == 3 and saved["train"]["log_iters"] == 2  # resolved config
    assert os.path.isfile(os.path.join(out, "best_model", "model.pdparams"))
    assert [i for i, _ in ckpt.list_checkpoints(out)] == [3, 6]

    # VisualDL: scalars and image triplets read back
    import cv2
    from visualdl import LogReader

    reader = LogReader(file_path=glob.glob(os.path.join(out, "vdl", "vdlrecords.*"))[0])
    tags = reader.get_tags()
    for t in [
        "Train/loss",
        "Train/lr",
        "Train/ips",
        "Train/loss_CharbonnierLoss",
        "Evaluate/PSNR",
        "Evaluate/SSIM",
    ]:
        assert t in tags["scalar"], t
    loss = reader.get_data("scalar", "Train/loss")
    assert [d.id for d in loss] == [2, 4, 6] and all(np.isfinite(d.value) for d in loss)
    psnr = reader.get_data("scalar", "Evaluate/PSNR")
    assert [d.id for d in psnr] == [3, 6]
    img = reader.get_data("image", tags["image"][0])[-1].image.encoded_image_string
    trip = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_UNCHANGED)
    assert trip.shape == (32, 96, 3)  # input | output | target

    # tools/val.py: per-image CSV + summary matching the training-time evaluation
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    code = (
        "import sys, runpy; import tests.tiny_models; sys.argv=['val.py']+sys.argv[1:]; "
        f"runpy.run_path({os.path.join(REPO_ROOT, 'tools', 'val.py')!r}, run_name='__main__')"
    )
    vdir = str(tmp_path / "val")
    v = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "-c",
            cfg,
            "--model_path",
            os.path.join(out, "iter_6", "model.pdparams"),
            "--save_dir",
            vdir,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert v.returncode == 0, v.stderr[-2000:]
    rows = open(os.path.join(vdir, "per_image.csv")).read().strip().splitlines()
    assert (
        rows[0].startswith("name,psnr,ssim,input_psnr")
        and len(rows) == 1 + 6 + 1
        and rows[-1].startswith("mean,")
    )
    import json

    summary = json.load(open(os.path.join(vdir, "summary.json")))
    last_eval = float(r.stdout.split("[EVAL] iter: 6, PSNR: ")[1].split(",")[0])
    assert abs(summary["psnr"] - last_eval) < 1e-3


def test_bad_config_exit_code(tmp_path):
    cfg = tiny_config(str(tmp_path))
    r = run_train("-c", cfg, "-o", "train.sav_interval=3", "--save_dir", str(tmp_path / "o"))
    assert r.returncode == 2 and "sav_interval" in r.stderr
    r = run_train(
        "-c", cfg, "--resume_model", str(tmp_path / "nope"), "--save_dir", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "checkpoint folder not found" in r.stderr


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        train_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )


def _wait_for(proc, text, timeout=120):
    t0 = time.time()
    lines = []
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"'{text}' not seen; output: {''.join(lines)[-2000:]}")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_saves_and_exits_cleanly(tmp_path, sig, code):
    cfg = tiny_config(str(tmp_path), iters=100000, save_interval=1000)
    out = str(tmp_path / "o")
    p = _start(["-c", cfg, "--save_dir", out, "--log_iters", "10"], tmp_path)
    _wait_for(p, "iter: 30/")
    p.send_signal(sig)
    rest, _ = p.communicate(timeout=60)
    assert p.returncode == code, rest[-2000:]
    assert "Stopped by signal" in rest
    it, path = ckpt.list_checkpoints(out)[-1]
    assert it >= 30 and ckpt.is_complete(path)


def _reference(tmp_path, iters, save_interval):
    cfg = tiny_config(
        str(tmp_path), iters=iters, save_interval=save_interval, keep_checkpoint_max=3
    )
    ref = str(tmp_path / "ref")
    r = run_train("-c", cfg, "--save_dir", ref, "--log_iters", "1000")
    assert r.returncode == 0, r.stderr[-2000:]
    return cfg, _final(ref, iters)


def _kill_loop(tmp_path, cfg, kills, max_delay, seed, max_lines=3):
    """Start/resume, SIGKILL at a random moment after training began; repeat; then finish.

    Each kill lands after a random number (1..max_lines) of logged iterations plus a
    random delay of up to ``max_delay`` seconds. Counting iterations rather than only
    waiting wall-clock time keeps the number of kills independent of machine speed (a
    fast, idle machine otherwise finishes the run before all kills have happened).
    """
    rng = np.random.default_rng(seed)
    out = str(tmp_path / "killed")
    args = ["-c", cfg, "--save_dir", out, "--resume_model", "auto", "--log_iters", "1"]
    done_kills = mid_save = 0
    for _ in range(kills):
        p = _start(args, tmp_path)
        try:
            for _ in range(int(rng.integers(1, max_lines + 1))):
                _wait_for(p, "[TRAIN]")
        except AssertionError:  # the run had already finished: nothing left to kill
            p.wait(timeout=60)
            break
        time.sleep(float(rng.uniform(0, max_delay)))
        p.kill()  # SIGKILL: no handler runs, possibly in the middle of a save
        p.wait(timeout=60)
        done_kills += p.returncode == -signal.SIGKILL
        # a hidden temp folder left behind means the kill landed inside a save
        mid_save += any(".tmp-" in d for d in os.listdir(out)) if os.path.isdir(out) else 0
        p.stdout.close()
    r = run_train(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [d for d in os.listdir(out) if ".tmp-" in d]  # cleaned at the next start
    return out, done_kills, mid_save


def test_kill9_resume_equals_uninterrupted(tmp_path):
    """kill -9 three times at random points, resume with auto each time: same final weights."""
    iters = 40
    cfg, ref = _reference(tmp_path, iters, 2)
    out, kills, _ = _kill_loop(tmp_path, cfg, kills=3, max_delay=0.3, seed=0)
    assert kills >= 1
    assert _max_diff(ref, _final(out, iters)) <= 1e-6


@pytest.mark.slow
def test_kill9_twenty_random_points(tmp_path):
    """20 SIGKILLs at random moments (saves every iteration, so many land mid-save)."""
    iters = 300
    cfg, ref = _reference(tmp_path, iters, 1)
    out, kills, mid_save = _kill_loop(tmp_path, cfg, kills=20, max_delay=0.05, seed=1)
    print(f"{kills} SIGKILLs, {mid_save} of them during a checkpoint save")
    assert kills == 20, kills
    assert mid_save >= 1  # the interesting case did happen
    assert _max_diff(ref, _final(out, iters)) <= 1e-6
