"""Schedules, optimizers, EMA, gradient clipping and the CPU precision fallback."""

import math

import numpy as np
import paddle
import pytest

from ppRestore.optim import ModelEMA, WarmupCosine, build_lr_scheduler, build_optimizer


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_lr())
        sched.step()
    return out


def test_cosine_warmup_values():
    s = build_lr_scheduler(
        {
            "type": "CosineWarmup",
            "learning_rate": 1.0,
            "warmup_iters": 4,
            "warmup_start_lr": 0.0,
            "eta_min": 0.1,
        },
        14,
    )
    lrs = _lrs(s, 15)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert lrs[9] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[14] == pytest.approx(0.1)
    # T_max (CMFNet configs): the cosine spans T_max steps after warm-up
    t = WarmupCosine(1.0, total_iters=1000, warmup_iters=2, T_max=4)
    assert _lrs(t, 7)[-1] == pytest.approx(0.0)


def test_multistep_and_state_roundtrip():
    s = build_lr_scheduler(
        {"type": "MultiStepDecay", "learning_rate": 1.0, "milestones": [2, 4], "gamma": 0.5}, 10
    )
    assert _lrs(s, 6) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    s2 = build_lr_scheduler(
        {"type": "MultiStepDecay", "learning_rate": 1.0, "milestones": [2, 4], "gamma": 0.5}, 10
    )
    s2.set_state_dict(s.state_dict())
    assert s2.get_lr() == s.get_lr() and s2.last_epoch == s.last_epoch
    with pytest.raises(ValueError, match="unknown lr_scheduler"):
        build_lr_scheduler({"type": "Poly"}, 10)


def test_grad_clip_and_adamw():
    lin = paddle.nn.Linear(4, 4)
    opt = build_optimizer({"type": "Adam", "grad_clip": 1e-3}, lin.parameters(), 1.0)
    assert isinstance(opt._grad_clip, paddle.nn.ClipGradByGlobalNorm)
    opt_w = build_optimizer({"type": "AdamW", "weight_decay": 0.05}, lin.parameters(), 1e-3)
    assert isinstance(opt_w, paddle.optimizer.AdamW)
    with pytest.raises(ValueError, match="unknown option"):
        build_optimizer({"type": "Adam", "momentum": 0.9}, lin.parameters(), 1.0)


def test_ema_tracks_weights():
    lin = paddle.nn.Linear(2, 2)
    ema = ModelEMA(lin, decay=0.5)
    w0 = lin.weight.numpy().copy()
    lin.weight.set_value(paddle.zeros_like(lin.weight))
    ema.update(lin)  # d = min(0.5, 2/11)
    d = 2 / 11
    np.testing.assert_allclose(ema.model.weight.numpy(), w0 * d, rtol=1e-6)
    assert ema.model.weight.stop_gradient


def test_cpu_precision_falls_back_with_message(tmp_path, caplog):
    import tests.tiny_models  # noqa: F401
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from tests.train_utils import tiny_config

    cfg = load_config(tiny_config(str(tmp_path), iters=1))
    paddle.set_device("cpu")
    import logging

    from ppRestore.engine.logger import get_logger

    get_logger().propagate = True  # let caplog's root handler see the records
    try:
        with caplog.at_level(logging.WARNING, logger="ppRestore"):
            tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "o"), precision="bf16")
    finally:
        logging.getLogger("ppRestore").propagate = False
    assert tr._amp is None
    assert "precision=bf16 is not supported on cpu" in caplog.text
    with pytest.raises(ValueError, match="precision"):
        Trainer.from_config(cfg, save_dir=str(tmp_path / "o"), precision="fp8")


def test_trainer_passes_aux_only_when_needed(tmp_path, monkeypatch):
    import tests.tiny_models as tm
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from tests.train_utils import tiny_config

    calls = []
    orig = tm.TinyRestorer.forward

    def spy(self, x, return_aux=False):
        calls.append(return_aux)
        return orig(self, x, return_aux=return_aux)

    monkeypatch.setattr(tm.TinyRestorer, "forward", spy)
    path = tiny_config(str(tmp_path), iters=2)
    cfg = load_config(
        path, ["loss.types=[{type: L1Loss}, {type: AuxFeatL2}]", "loss.coef=[1.0, 0.1]"]
    )
    tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "a"))
    vals = tr.train_step()
    assert calls == [True] and vals["loss_AuxFeatL2"] > 0
    assert vals["loss"] == pytest.approx(
        vals["loss_L1Loss"] + 0.1 * vals["loss_AuxFeatL2"], rel=1e-5
    )
    calls.clear()
    tr2 = Trainer.from_config(load_config(path), save_dir=str(tmp_path / "b"))
    tr2.train_step()
    assert calls == [False]


def test_workers_do_not_change_the_trajectory(tmp_path):
    """Per-sample seeding: 0 or 2 DataLoader workers, shared memory or not, same weights."""
    import tests.tiny_models  # noqa: F401
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from ppRestore.weights.safe_load import load_weights
    from tests.train_utils import tiny_config

    path = tiny_config(str(tmp_path), iters=4, save_interval=4)
    outs = []
    for i, (nw, shm) in enumerate([(0, True), (2, True), (2, False)]):
        Trainer.from_config(
            load_config(path),
            save_dir=str(tmp_path / f"o{i}"),
            num_workers=nw,
            use_shared_memory=shm,
        ).train()
        outs.append(load_weights(tmp_path / f"o{i}" / "iter_4" / "model.pdparams"))
    for o in outs[1:]:
        for k in o:
            np.testing.assert_array_equal(o[k], outs[0][k])


def _all_configs():
    import glob
    import os

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    return sorted(
        p
        for p in glob.glob(os.path.join(root, "**", "*.yml"), recursive=True)
        if "_base_" not in os.path.basename(p)
        and "/_base_/" not in p
        and "/tune/" not in p  # search spaces for tools/tune.py: tests/test_tuning.py
    )


@pytest.mark.parametrize("path", _all_configs(), ids=lambda p: p.split("configs/")[-1])
def test_every_config_builds_its_training_parts(path):
    """Loss, schedule, optimizer and trainer options of every shipped config build."""
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import options_from_config
    from ppRestore.losses import build_loss

    cfg = load_config(path)
    opts = options_from_config(cfg)
    assert opts.iters > 0 and opts.batch_size > 0
    loss = dict(cfg.get("loss") or {"type": "L1Loss"})
    if "types" in loss:  # PerceptualLoss needs a local VGG19 file: tested in test_losses.py
        keep = [i for i, t in enumerate(loss["types"]) if t.get("type") != "PerceptualLoss"]
        loss = {
            "types": [loss["types"][i] for i in keep],
            "coef": [loss.get("coef", [1.0] * 99)[i] for i in keep],
        }
    if loss.get("types") != []:
        build_loss(loss)
    sched = build_lr_scheduler(cfg.get("lr_scheduler"), opts.iters)
    build_optimizer(cfg.get("optimizer"), paddle.nn.Linear(2, 2).parameters(), sched)
    assert sched.get_lr() >= 0


def test_to_static_training_matches_dynamic(tmp_path):
    import tests.tiny_models  # noqa: F401
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from ppRestore.weights.safe_load import load_weights
    from tests.train_utils import tiny_config

    path = tiny_config(str(tmp_path), iters=3, save_interval=3)
    for st in (False, True):
        Trainer.from_config(
            load_config(path, [f"train.to_static={st}"]), save_dir=str(tmp_path / f"o{st}")
        ).train()
    a = load_weights(tmp_path / "oFalse" / "iter_3" / "model.pdparams")
    b = load_weights(tmp_path / "oTrue" / "iter_3" / "model.pdparams")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)
    aux = load_config(
        path,
        [
            "train.to_static=true",
            "loss.types=[{type: L1Loss}, {type: AuxFeatL2}]",
            "loss.coef=[1, 1]",
        ],
    )
    vals = Trainer.from_config(aux, save_dir=str(tmp_path / "aux")).train_step()
    assert vals["loss_AuxFeatL2"] > 0


def test_model_pretrained_starts_training_from_those_weights(tmp_path):
    """``model.pretrained`` (PaddleSeg's key): the trainer starts from those weights;
    inference-side builders ignore it, and a missing file is an error, not a warning."""
    import tests.tiny_models  # noqa: F401
    from ppRestore.builder import build_model
    from ppRestore.config import load_config
    from ppRestore.engine.trainer import Trainer
    from ppRestore.weights.safe_load import WeightsError, save_weights
    from tests.train_utils import tiny_config

    paddle.seed(11)
    src = build_model({"type": "TinyRestorer"})
    w = str(tmp_path / "start.pdparams")
    save_weights(src.state_dict(), w)
    path = tiny_config(str(tmp_path), iters=2)
    tr = Trainer.from_config(
        load_config(path, [f"model.pretrained={w}"]), save_dir=str(tmp_path / "a")
    )
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(tr.model.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    fresh = Trainer.from_config(load_config(path), save_dir=str(tmp_path / "b"))
    assert any(
        not np.array_equal(fresh.model.state_dict()[k].numpy(), v.numpy())
        for k, v in src.state_dict().items()
    )
    # export / val / infer build the model without loading it (weights come from --model_path)
    build_model({"type": "TinyRestorer", "pretrained": str(tmp_path / "gone.pdparams")})
    with pytest.raises(WeightsError):
        Trainer.from_config(
            load_config(path, [f"model.pretrained={tmp_path / 'gone.pdparams'}"]),
            save_dir=str(tmp_path / "c"),
        )


def test_in_training_eval_scores_the_same_noisy_set_as_tools_val(tmp_path):
    """--seed changes the training randomness only: the val noise comes from the
    config (train.seed), so a run's eval and tools/val.py see the same images."""
    import tests.tiny_models  # noqa: F401
    from ppRestore.config import load_config
    from ppRestore.data.datasets import build_dataset, val_seed
    from ppRestore.engine.trainer import Trainer
    from tests.train_utils import tiny_config

    path = tiny_config(str(tmp_path), iters=1)
    cfg = load_config(path)
    assert val_seed(cfg) == 3  # tiny_config's train.seed
    tr = Trainer.from_config(cfg, save_dir=str(tmp_path / "o"), seed=5, do_eval=True)
    assert tr.opts.seed == 5
    ref = build_dataset(load_config(path)["val_dataset"], mode="val", seed=val_seed(cfg))
    for i in range(len(ref)):
        np.testing.assert_array_equal(tr.evaluator.dataset[i][0], ref[i][0])
    other = build_dataset(load_config(path)["val_dataset"], mode="val", seed=5)
    assert not np.array_equal(other[0][0], ref[0][0])  # the seed does matter
