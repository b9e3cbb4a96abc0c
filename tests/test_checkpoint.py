"""Atomic checkpoints: completeness marker, ENOSPC safety, pruning, exact in-process resume."""

import errno
import os

import numpy as np
import pytest

import tests.tiny_models  # noqa: F401  (registers TinyRestorer)
from ppRestore.config import load_config
from ppRestore.engine import checkpoint as ckpt
from ppRestore.engine.trainer import NonFiniteLossError, Trainer
from ppRestore.weights.safe_load import load_weights
from tests.train_utils import tiny_config


def _trainer(cfg_path, save_dir, **kw):
    return Trainer.from_config(load_config(cfg_path), save_dir=str(save_dir), **kw)


def _weights(path):
    return load_weights(os.path.join(path, "model.pdparams"))


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_inprocess_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=6, save_interval=3, ema={"decay": 0.9}, accum_steps=2)
    ref = _trainer(cfg, tmp_path / "ref").train()
    assert ref["iteration"] == 6
    # a run stopped at 3 ...
    part = _trainer(cfg, tmp_path / "cut")
    part.opts.iters = 3  # same schedule length is in the scheduler; only stop early
    part.train()
    assert [i for i, _ in ckpt.list_checkpoints(str(tmp_path / "cut"))] == [3]
    # ... resumed in the same process: new layers get new paddle tensor names, so this
    # also checks that optimizer state is matched by structured names.
    res = _trainer(cfg, tmp_path / "cut", resume_model="auto").train()
    assert res["iteration"] == 6
    a, b = _weights(tmp_path / "ref" / "iter_6"), _weights(tmp_path / "cut" / "iter_6")
    assert _max_diff(a, b) <= 1e-6
    ea = load_weights(tmp_path / "ref" / "iter_6" / "model_ema.pdparams")
    eb = load_weights(tmp_path / "cut" / "iter_6" / "model_ema.pdparams")
    assert _max_diff(ea, eb) <= 1e-6
    assert _max_diff(a, ea) > 0  # the EMA is a different set of weights


def test_marker_prune_and_stale(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=8, save_interval=2, keep_checkpoint_max=2)
    _trainer(cfg, tmp_path / "o").train()
    out = str(tmp_path / "o")
    assert [i for i, _ in ckpt.list_checkpoints(out)] == [6, 8]
    # an interrupted save: no marker / hidden temp folder -> ignored and cleaned
    os.makedirs(os.path.join(out, "iter_10"))
    open(os.path.join(out, "iter_10", "model.pdparams"), "wb").close()
    os.makedirs(os.path.join(out, ".iter_12.tmp-abc"))
    assert ckpt.find_latest(out).endswith("iter_8")
    with pytest.raises(ckpt.CheckpointError, match="incomplete"):
        ckpt.load_checkpoint(os.path.join(out, "iter_10"))
    ckpt.clean_stale(out)
    assert not os.path.exists(os.path.join(out, ".iter_12.tmp-abc"))


@pytest.mark.parametrize("fail_on", ["model.pdparams", "model.pdopt", "train_state.json"])
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_on):
    cfg = tiny_config(str(tmp_path), iters=4, save_interval=2)
    tr = _trainer(cfg, tmp_path / "o")
    tr.opts.iters = 2
    tr.train()
    out = str(tmp_path / "o")
    before = {
        f: open(os.path.join(out, "iter_2", f), "rb").read()
        for f in os.listdir(os.path.join(out, "iter_2"))
    }

    real_save, real_json = ckpt.save_weights, ckpt._write_json

    def boom(path):
        if os.path.basename(path) == fail_on:
            raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ckpt, "save_weights", lambda s, p: (boom(p), real_save(s, p)))
    monkeypatch.setattr(ckpt, "_write_json", lambda p, o: (boom(p), real_json(p, o)))
    tr.opts.iters = 4
    with pytest.raises(OSError) as ei:
        tr.train()
    assert ei.value.errno == errno.ENOSPC
    assert [i for i, _ in ckpt.list_checkpoints(out)] == [2]  # no half iter_4
    after = {
        f: open(os.path.join(out, "iter_2", f), "rb").read()
        for f in os.listdir(os.path.join(out, "iter_2"))
    }
    assert after == before
    assert not [d for d in os.listdir(out) if ".tmp-" in d]  # temp folder removed


def test_nan_loss_stops_and_keeps_last_good(tmp_path):
    cfg = tiny_config(str(tmp_path), iters=10, save_interval=2)
    c = load_config(cfg, ["loss.types=[{type: NaNAtCall, at: 5}]", "loss.coef=[1.0]"])
    tr = Trainer.from_config(c, save_dir=str(tmp_path / "o"))
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at iteration 5 .*Last good checkpoint: .*iter_4"
    ):
        tr.train()
    assert ckpt.find_latest(str(tmp_path / "o")).endswith("iter_4")
