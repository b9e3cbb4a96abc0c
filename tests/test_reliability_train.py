"""Issue 15 items 4, 6 and 7 (training side): one training per save_dir, no NaN
checkpoint called good, workers die with the trainer, one-line errors for bad numbers,
a corrupt train_state.json and a full disk, a warning when batch_size changes on resume."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tests.tiny_models  # noqa: F401  (registers TinyRestorer)
from ppRestore.config import load_config
from ppRestore.engine import checkpoint as ckpt
from ppRestore.engine.lock import SaveDirBusyError, SaveDirLock
from ppRestore.engine.trainer import NonFiniteWeightsError, Trainer, options_from_config
from tests.train_utils import REPO_ROOT, run_train, tiny_config, train_cmd


@pytest.fixture(autouse=True)
def _fresh_logger():
    """The package logger keeps the stdout it first saw; an earlier test's captured (now
    closed) stream would turn every log line here into a "Logging error"."""
    lg = logging.getLogger("ppRestore")
    saved = lg.handlers[:]
    lg.handlers.clear()
    yield
    lg.handlers[:] = saved


def _trainer(cfg_path, save_dir, **kw):
    return Trainer.from_config(load_config(cfg_path), save_dir=str(save_dir), **kw)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


# ---------------------------------------------------------------- the save_dir lock


def test_second_lock_on_a_save_dir_is_refused_and_released(tmp_path):
    a = SaveDirLock(str(tmp_path)).acquire()
    with pytest.raises(SaveDirBusyError, match=rf"in use by another training \(PID {os.getpid()}"):
        SaveDirLock(str(tmp_path)).acquire()
    a.release()
    with SaveDirLock(str(tmp_path)):  # free again
        pass


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]); "
        "from ppRestore.engine.lock import SaveDirLock; "
        "lock = SaveDirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), REPO_ROOT], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(SaveDirBusyError, match=f"PID {p.pid}"):
        SaveDirLock(str(tmp_path)).acquire()
    p.kill()
    p.wait()
    assert json.load(open(tmp_path / ".lock"))["pid"] == p.pid  # left behind by kill -9
    SaveDirLock(str(tmp_path)).acquire().release()  # taken over


def test_second_training_in_the_same_save_dir_is_refused(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=2, save_interval=2)
    out = tmp_path / "output"
    held = SaveDirLock(str(out)).acquire()  # "another training" (this process)
    (out / "config.yaml").write_text("first run's config\n")
    r = run_train("-c", cfg, "--save_dir", str(out))
    held.release()
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and "in use by another training" in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert (out / "config.yaml").read_text() == "first run's config\n"  # not replaced
    assert ckpt.list_checkpoints(str(out)) == []


def test_lock_is_released_when_training_raises(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=2, save_interval=1)
    tr = _trainer(cfg, tmp_path / "o")

    def boom():
        raise RuntimeError("boom")

    tr.train_step = boom
    with pytest.raises(RuntimeError, match="boom"):
        tr.train()
    SaveDirLock(str(tmp_path / "o")).acquire().release()  # released on the exception
    del tr.train_step
    assert tr.train()["iteration"] == 2
    SaveDirLock(str(tmp_path / "o")).acquire().release()  # and on a normal end


# ---------------------------------------------------------------- non-finite weights


def test_nan_weights_are_never_saved_nor_called_good(tmp_path):
    """lr 1e39: the first step makes the weights Inf while the loss was still finite;
    the checkpoint used to be saved and later named "last good checkpoint"."""
    cfg = tiny_config(str(tmp_path), iters=4, save_interval=1)
    good = _trainer(cfg, tmp_path / "o")
    good.opts.iters = 1
    good.train()  # a finite iter_1
    before = ckpt.load_checkpoint(str(tmp_path / "o" / "iter_1"))["model"]
    c = load_config(cfg)
    c["lr_scheduler"] = {"type": "CosineWarmup", "learning_rate": 1e39, "warmup_iters": 0}
    tr = Trainer.from_config(c, save_dir=str(tmp_path / "o"))  # a fresh run, same folder
    with pytest.raises(NonFiniteWeightsError) as ei:
        tr.train()
    msg = str(ei.value)
    assert "weights are not finite at iteration 1" in msg and "not saved" in msg
    assert msg.endswith("Last good checkpoint: " + os.path.join(str(tmp_path / "o"), "iter_1"))
    assert [i for i, _ in ckpt.list_checkpoints(str(tmp_path / "o"))] == [1]
    after = ckpt.load_checkpoint(str(tmp_path / "o" / "iter_1"))["model"]
    assert all(np.array_equal(before[k], after[k]) for k in before)  # not replaced by NaN


def test_an_old_nan_checkpoint_is_not_the_last_good_one(tmp_path):
    out = str(tmp_path)
    tr = _trainer(tiny_config(str(tmp_path), iters=2), tmp_path / "o")
    ckpt.save_checkpoint(out, 1, tr.model, None, {})
    for p in tr.model.parameters():
        p.set_value(np.full(p.shape, np.nan, np.float32))
    ckpt.save_checkpoint(out, 2, tr.model, None, {})  # as an older version would have
    assert ckpt.find_latest(out).endswith("iter_2")
    assert ckpt.find_latest_good(out).endswith("iter_1")


def test_nan_lr_cli_is_one_line_exit_1(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=3, save_interval=1)
    c = load_config(cfg)
    c["lr_scheduler"] = {"type": "CosineWarmup", "learning_rate": 1e39, "warmup_iters": 0}
    import yaml

    (tmp_path / "lr.yml").write_text(yaml.safe_dump(c))
    r = run_train("-c", str(tmp_path / "lr.yml"), "--save_dir", str(tmp_path / "o"))
    assert r.returncode == 1, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: weights are not finite"), r.stderr
    assert "Last good checkpoint: none" in r.stderr
    assert ckpt.list_checkpoints(str(tmp_path / "o")) == []


# ---------------------------------------------------------------- one-line errors


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"save_interval": 0}, "--save_interval must be at least 1, got 0"),
        ({"log_iters": 0}, "--log_iters must be at least 1, got 0"),
        ({"num_workers": -1}, "--num_workers must be at least 0, got -1"),
        ({"accum_steps": 0}, "train.accum_steps must be at least 1, got 0"),
        ({"eval_interval": 0}, "train.eval_interval must be at least 1, got 0"),
        ({"save_interval": 2.5}, "--save_interval must be an integer, got 2.5"),
    ],
)
def test_bad_train_numbers_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg.replace(".", r"\.")):
        options_from_config({"iters": 4, "batch_size": 2}, **kw)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--save_interval", "0"], "error: --save_interval must be at least 1, got 0"),
        (["--log_iters", "0"], "error: --log_iters must be at least 1, got 0"),
        (["--num_workers", "-1"], "error: --num_workers must be at least 0, got -1"),
        (["-o", "train.accum_steps=0"], "error: train.accum_steps must be at least 1, got 0"),
    ],
)
def test_bad_train_flags_are_one_line(tmp_path, capsys, args, msg):
    import runpy

    main = runpy.run_path(os.path.join(REPO_ROOT, "tools", "train.py"))["main"]
    cfg = tiny_config(str(tmp_path), iters=2)
    assert main(["-c", cfg, "--save_dir", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [msg]


@pytest.mark.parametrize(
    "content,what",
    [("", "Expecting value"), ('{"iteration": 2, "epo', "Unterminated"), ("{}", "missing")],
)
def test_corrupt_train_state_names_the_file(tmp_path, capsys, content, what):
    cfg = tiny_config(str(tmp_path), iters=2, save_interval=2)
    out = tmp_path / "o"
    _trainer(cfg, out).train()
    state = out / "iter_2" / "train_state.json"
    state.write_text(content)
    with pytest.raises(ckpt.CheckpointError, match=what) as ei:
        ckpt.load_checkpoint(str(out / "iter_2"))
    assert str(ei.value).startswith(f"{state}: corrupt or partial")
    import runpy

    main = runpy.run_path(os.path.join(REPO_ROOT, "tools", "train.py"))["main"]
    code = main(["-c", cfg, "--save_dir", str(out), "--resume_model", str(out / "iter_2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {state}: corrupt")


def test_full_disk_names_the_checkpoint_path(tmp_path, monkeypatch, capsys):
    """ENOSPC while saving (simulated in-process: the writer raises)."""
    cfg = tiny_config(str(tmp_path), iters=2, save_interval=2)
    real = ckpt.save_weights

    def full(state, path):
        real(state, path)
        raise OSError(errno.ENOSPC, "No space left on device")  # no file name, as os.write

    monkeypatch.setattr(ckpt, "save_weights", full)
    import runpy

    main = runpy.run_path(os.path.join(REPO_ROOT, "tools", "train.py"))["main"]
    assert main(["-c", cfg, "--save_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    want = f"error: cannot write checkpoint {tmp_path / 'o' / 'iter_2'} (No space left on device"
    assert len(err) == 1 and err[0].startswith(want), err
    assert ckpt.list_checkpoints(str(tmp_path / "o")) == []
    assert not [d for d in os.listdir(tmp_path / "o") if ".tmp-" in d]


def test_full_tmpfs_names_the_checkpoint_path(tmp_path):
    """The same on a real full file system (a 256 KiB tmpfs; needs root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here (the monkeypatched test above covers ENOSPC)")
    try:
        (mnt / "filler").write_bytes(b"\0" * (200 << 10))
        cfg = tiny_config(str(tmp_path), iters=2, save_interval=2)
        r = run_train("-c", cfg, "--save_dir", str(mnt / "o"))
        assert r.returncode == 1, r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: cannot write checkpoint {mnt / 'o' / 'iter_2'}"), last
        assert "No space left on device" in last and "Traceback" not in r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- resume with other settings


def test_resume_with_another_batch_size_warns(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=4, save_interval=2)
    first = _trainer(cfg, tmp_path / "o")
    first.opts.iters = 2
    first.train()
    rec = _Records()
    logging.getLogger("ppRestore").addHandler(rec)
    try:
        tr = _trainer(cfg, tmp_path / "o", resume_model="auto")
        tr.opts.batch_size = 4  # as --batch_size 4 on the command line
        tr.opts.iters = 6
        tr.resume(ckpt.find_latest(str(tmp_path / "o")))
    finally:
        logging.getLogger("ppRestore").removeHandler(rec)
    assert any("batch_size was 2, now 4" in ln for ln in rec.lines), rec.lines
    assert any("iters was 2, now 6" in ln for ln in rec.lines), rec.lines
    assert all("\n" not in ln for ln in rec.lines)


# ---------------------------------------------------------------- workers die with the trainer


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_kill9_of_the_trainer_ends_its_workers_and_their_shm(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=100000, save_interval=100000)
    shm0 = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1")
    p = subprocess.Popen(
        train_cmd("-c", cfg, "--save_dir", str(tmp_path / "o"), "--num_workers", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = []
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and len(workers) < 2:
            time.sleep(0.5)
            workers = _children(p.pid)
        assert len(workers) >= 2, "the workers never started"
        time.sleep(3)  # let them pass a few batches through shared memory
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    t1 = time.time()
    while time.time() - t1 < 20 and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:  # don't leak them into the rest of the test run
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived the killed trainer"
    assert time.time() - t1 < 10
    mine = [n for n in set(os.listdir("/dev/shm")) - shm0 if any(f"_{w}_" in n for w in workers)]
    for n in mine:
        os.remove(os.path.join("/dev/shm", n))
    assert not mine, f"shared-memory segments left: {mine}"
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
