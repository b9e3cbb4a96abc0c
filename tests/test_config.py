"""Bad configs and overrides are one-line ConfigErrors that name the key."""

from __future__ import annotations

import os
import re
import textwrap
import time

import pytest

from ppRestore.config import (
    ConfigError,
    apply_overrides,
    load_config,
    parse_override,
    save_config,
    validate,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(p)


BASE = """
model:
  type: DnCNN
  depth: 17
  act: relu
optimizer:
  type: Adam
  weight_decay: 0.0
lr_scheduler:
  type: CosineWarmup
  learning_rate: 1e-3
iters: 1000
batch_size: 16
train_dataset:
  type: NoisyFolder
  transforms:
    - {type: RandomCrop, size: 48}
    - {type: RandomFlip}
"""


@pytest.fixture
def base(tmp_path):
    return _write(tmp_path, "_base_/base.yml", BASE)


def test_base_inheritance_and_inherited_false(tmp_path, base):
    child = _write(
        tmp_path,
        "child.yml",
        """
        _base_: _base_/base.yml
        model:
          depth: 20
        optimizer:
          _inherited_: false
          type: SGD
        """,
    )
    cfg = load_config(child)
    assert cfg["model"] == {"type": "DnCNN", "depth": 20, "act": "relu"}
    assert cfg["optimizer"] == {"type": "SGD"}  # replaced, marker gone
    assert "_base_" not in cfg


def test_inherited_marker_never_leaks(tmp_path):
    """A child section with ``_inherited_`` but no base section must not pass the marker on."""
    p = _write(
        tmp_path,
        "c.yml",
        "model:\n  _inherited_: false\n  type: X\n  infer: {_inherited_: true, a: 1}\n",
    )
    assert load_config(p)["model"] == {"type": "X", "infer": {"a": 1}}


def test_base_cycle_and_missing_base(tmp_path):
    a = _write(tmp_path, "a.yml", "_base_: b.yml\niters: 1\n")
    _write(tmp_path, "b.yml", "_base_: a.yml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(a)
    c = _write(tmp_path, "c.yml", "_base_: [nope.yml]\n")
    with pytest.raises(ConfigError, match="_base_ file not found: nope.yml") as ei:
        load_config(c)
    assert str(ei.value).startswith(c)
    d = _write(tmp_path, "d.yml", "_base_: 3\n")
    with pytest.raises(ConfigError, match="_base_ must be a path"):
        load_config(d)


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("iter: 10\n", "unknown key 'iter'. Did you mean 'iters'?"),
        ("modle: {type: X}\n", "unknown key 'modle'. Did you mean 'model'?"),
        ("iters: '10'\n", "'iters' must be an integer, got str ('10')"),
        ("iters: true\n", "'iters' must be an integer, got bool (True)"),
        ("iters: 1e4\n", "'iters' must be an integer, got float (10000.0)"),
        ("iters: 0\n", "'iters' must be at least 1, got 0"),
        ("batch_size: -2\n", "'batch_size' must be at least 1"),
        ("model: [1, 2]\n", "'model' must be a mapping, got list"),
        ("model: {depth: 3}\n", "'model' needs a 'type:' key"),
        ("model: {type: 3}\n", "'model.type' must be a class name, got 3"),
        ("model: {type: ''}\n", "'model.type' must be a class name"),
        ("task: [deblur]\n", "'task' must be a string, got list"),
        ("3: x\n", "top-level keys must be names"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, phrase):
    p = _write(tmp_path, "bad.yml", text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert phrase in msg, msg
    assert msg.startswith(p) and "\n" not in msg


@pytest.mark.parametrize(
    "raw, phrase",
    [
        ("model: {type: X\n", "not valid YAML"),
        ("a: b: c\n", "not valid YAML"),
        ("- 1\n- 2\n", "top level must be a mapping, got list"),
        ("iters: 1\niters: 2\n", "duplicate key 'iters' (first at line 1)"),
        ("model:\n  type: X\n  depth: 1\n  depth: 2\n", "duplicate key 'depth'"),
        ("when: 2024-13-45\n", "not valid YAML"),
        ("x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_unparsable_files(tmp_path, raw, phrase):
    p = _write(tmp_path, "bad.yml", raw)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert phrase in str(ei.value) and "\n" not in str(ei.value)


def test_not_utf8_missing_and_empty(tmp_path):
    p = tmp_path / "latin1.yml"
    p.write_bytes("task: caf\xe9\n".encode("latin1"))
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "none.yml"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path))  # a folder
    assert load_config(_write(tmp_path, "empty.yml", "")) == {}


def test_scientific_notation_is_a_float(tmp_path, base):
    cfg = load_config(base, ["optimizer.weight_decay=5e-5", "model.scale=1E2"])
    assert cfg["lr_scheduler"]["learning_rate"] == pytest.approx(1e-3)
    assert isinstance(cfg["lr_scheduler"]["learning_rate"], float)
    assert cfg["optimizer"]["weight_decay"] == pytest.approx(5e-5)
    assert cfg["model"]["scale"] == 100.0
    assert parse_override("a=1_000")[1] == 1000  # ints stay ints
    assert parse_override("a=v1e5")[1] == "v1e5"


def test_alias_bomb_in_an_error_is_fast_and_short(tmp_path):
    """YAML anchors make a value with 10**9 leaves from a few lines; the wrong-type error
    must print a bounded repr, not try to expand it."""
    lines = ["iters:", "  - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    p = _write(tmp_path, "bomb.yml", "\n".join(lines) + "\n")
    t0 = time.time()
    # refused as a bomb before validation (it was "'iters' must be an integer, got list")
    with pytest.raises(ConfigError, match="alias bomb") as ei:
        load_config(p)
    assert time.time() - t0 < 5
    assert len(str(ei.value)) < 1000


def _dict_bomb(indent: str) -> str:
    """9 lines that expand to 9**8 mappings: merging two of them walked every path."""
    lines = ["a0: &a0 {x: 1}"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(9)) + "}")
    return "".join(indent + ln + "\n" for ln in lines)


@pytest.mark.parametrize("where", ["base", "child", "both"])
def test_alias_bomb_in_base_and_child_is_refused_fast(tmp_path, where):
    bomb = _dict_bomb("    ")
    tame = "    a0: {x: 1}\n"
    _write(
        tmp_path, "base.yml", "model:\n  type: X\n  lol:\n" + (tame if where == "child" else bomb)
    )
    p = _write(
        tmp_path,
        "child.yml",
        "_base_: base.yml\nmodel:\n  lol:\n" + (tame if where == "base" else bomb),
    )
    t0 = time.time()
    with pytest.raises(ConfigError, match=r"expands to more than 100000 values") as ei:
        load_config(p)
    assert time.time() - t0 < 5  # the merge of two bombs used to run for hours
    assert "\n" not in str(ei.value)
    assert ("base.yml" if where == "base" else "child.yml") in str(ei.value)


@pytest.mark.parametrize(
    "text",
    [
        "model: &m\n  type: X\n  self: *m\n",
        "iters: &l [1, *l]\n",
    ],
)
def test_recursive_alias_is_one_line(tmp_path, text):
    # a recursive anchor in both the base and the child recursed in the merge
    _write(tmp_path, "base.yml", text)
    p = _write(tmp_path, "child.yml", "_base_: base.yml\n" + text)
    with pytest.raises(ConfigError, match="refers to itself") as ei:
        load_config(p)
    assert "\n" not in str(ei.value)


def test_alias_bomb_in_an_override_is_refused(tmp_path, base):
    bomb = "[" + ",".join(["x"] * 10) + "]"
    with pytest.raises(ConfigError, match="refers to itself"):
        load_config(base, ["model.x=&a [*a]"])
    assert load_config(base, [f"model.x={bomb}"])["model"]["x"] == ["x"] * 10


def test_shared_anchors_below_the_limit_still_load(tmp_path):
    p = _write(
        tmp_path,
        "ok.yml",
        "model: &m {type: X, depth: 3}\ntrain_dataset: {type: Y, aug: *m}\n",
    )
    cfg = load_config(p)
    assert cfg["train_dataset"]["aug"] == {"type": "X", "depth": 3}


# ---------------------------------------------------------------- overrides


def test_overrides_apply(base):
    cfg = load_config(
        base,
        [
            "iters=20",
            "model.depth=5",
            "model.new_key=[1, 2]",
            "train_dataset.transforms.0.size=64",
            "train_dataset.transforms.-1.prob=0.5",
            "task=C:/data/x",
            "model.name=",
        ],
    )
    assert cfg["iters"] == 20 and cfg["model"]["depth"] == 5 and cfg["model"]["new_key"] == [1, 2]
    assert cfg["train_dataset"]["transforms"][0] == {"type": "RandomCrop", "size": 64}
    assert cfg["train_dataset"]["transforms"][1]["prob"] == 0.5
    assert cfg["task"] == "C:/data/x"
    assert cfg["model"]["name"] == ""  # optimizer: keys are checked now


def test_override_creates_missing_sections(base):
    cfg = load_config(base, ["val.crop_border=4"])
    assert cfg["val"] == {"crop_border": 4}


@pytest.mark.parametrize(
    "item, phrase",
    [
        ("itres=5", "unknown key 'itres'. Did you mean 'iters'?"),
        ("modle.depth=5", "unknown key 'modle'. Did you mean 'model'?"),
        ("iters", "must look like key.subkey=value"),
        ("=5", "empty key segment"),
        ("model..depth=5", "empty key segment"),
        ("model.=5", "empty key segment"),
        ("iters.x=5", "'iters' holds int 1000, not a mapping"),
        ("train_dataset.transforms.5.size=1", "is a list of 2; '5' is not a valid index"),
        ("train_dataset.transforms.first.size=1", "'first' is not a valid index"),
        ("iters=abc", "'iters' must be an integer, got str ('abc')"),
        ("model=3", "'model' must be a mapping, got int (3)"),
        ("model.type=[1]", "'model.type' must be a class name"),
    ],
)
def test_bad_overrides_name_the_key(base, item, phrase):
    with pytest.raises(ConfigError) as ei:
        load_config(base, [item])
    assert phrase in str(ei.value), str(ei.value)
    assert "\n" not in str(ei.value)


def test_override_must_be_a_string():
    with pytest.raises(ConfigError, match="must be a string"):
        apply_overrides({}, [3])


def test_overrides_do_not_mutate_input():
    cfg = {"model": {"type": "X", "depth": 1}}
    out = apply_overrides(cfg, ["model.depth=2"])
    assert cfg["model"]["depth"] == 1 and out["model"]["depth"] == 2


def test_save_config_round_trip(tmp_path, base):
    cfg = load_config(base, ["model.depth=3", "task=去噪"])
    out = str(tmp_path / "run" / "config.yml")
    save_config(cfg, out)
    assert load_config(out) == cfg


def test_validate_returns_cfg_unchanged():
    cfg = {"iters": 3, "model": {"type": "X"}}
    assert validate(cfg) is cfg


# ---- unknown keys in every section, cross-section checks (issue 17 item 5)


@pytest.mark.parametrize(
    "section, body, typo, suggestion",
    [
        ("infer", {"tile_overlap": 8, "clip": [0, 1]}, "clip", None),
        ("infer", {"tiel": 256}, "tiel", "tile"),
        ("train", {"save_intervl": 5}, "save_intervl", "save_interval"),
        ("val", {"crop_bordr": 4}, "crop_bordr", "crop_border"),
        ("export", {"input_shap": [1, 3, 64, 64]}, "input_shap", "input_shape"),
        ("optimizer", {"type": "Adam", "weight_decai": 0.1}, "weight_decai", "weight_decay"),
        ("lr_scheduler", {"type": "CosineWarmup", "warmup_iter": 5}, "warmup_iter", None),
        ("loss", {"types": [{"type": "L1Loss"}], "coeff": [1.0]}, "coeff", "coef"),
    ],
)
def test_unknown_key_in_a_section_names_the_closest(section, body, typo, suggestion):
    from ppRestore.config import ConfigError, validate

    with pytest.raises(ConfigError) as ei:
        validate({section: body}, source="c.yml")
    msg = str(ei.value)
    assert f"c.yml: {section}: unknown key '{typo}'" in msg and "\n" not in msg
    if suggestion:
        assert f"Did you mean '{suggestion}'?" in msg


def test_section_keys_come_from_their_consumers():
    from dataclasses import fields

    from ppRestore.config_checks import section_keys
    from ppRestore.engine.trainer import _TRAIN_KEYS
    from ppRestore.inference.predictor import InferOptions

    assert section_keys("infer", {}) == [f.name for f in fields(InferOptions)]
    assert set(section_keys("train", {})) == _TRAIN_KEYS
    assert "num_samples" in section_keys("val", {})
    assert section_keys("model", {"type": "X"}) is None  # checked by the constructor


def test_every_shipped_config_passes_the_section_checks():
    import glob

    from ppRestore.config import load_config

    files = [
        f
        for f in glob.glob(os.path.join(REPO, "configs", "**", "*.yml"), recursive=True)
        if os.sep + "tune" + os.sep not in f  # search spaces for tools/tune.py, not configs
    ]
    assert len(files) > 10
    for f in files:
        if os.sep + "_base_" + os.sep not in f:
            load_config(f)


@pytest.mark.parametrize(
    "cfg, phrase",
    [
        (
            {
                "model": {"type": "M", "in_channels": 1},
                "train_dataset": {"type": "D", "channels": 3},
            },
            "train_dataset.channels is 3 (3-channel images) but model.in_channels is 1",
        ),
        (
            {
                "model": {"type": "M", "num_channels": 3},
                "val_dataset": {"type": "D", "channels": "y"},
            },
            "val_dataset.channels is 'y' (1-channel images) but model.num_channels is 3",
        ),
        (
            {
                "model": {"type": "M", "scale": 2},
                "train_dataset": {"type": "D", "degradations": [{"type": "B", "scale": 3}]},
            },
            "train_dataset.degradations downscale by 3 but model.scale is 2",
        ),
        (
            {"model": {"type": "M", "in_c": 3}, "infer": {"color": "y"}},
            "infer.color 'y' needs a 1-channel model, but model.in_c is 3",
        ),
        (
            {"model": {"type": "M", "in_channels": 3}, "infer": {"color": "raw"}},
            "infer.color 'raw' needs a 4-channel model",
        ),
        (
            {"model": {"type": "M", "scale": 4}, "infer": {"scale": 2}},
            "infer.scale is 2 but model.scale is 4",
        ),
    ],
)
def test_sections_must_agree(cfg, phrase):
    from ppRestore.config import ConfigError, validate

    with pytest.raises(ConfigError, match=re.escape(phrase)):
        validate(cfg, source="c.yml")


def test_sections_that_agree_pass():
    from ppRestore.config import validate

    ok = {
        "model": {"type": "M", "num_channels": 1, "scale": 3},
        "train_dataset": {
            "type": "D",
            "channels": "y",
            "degradations": [{"type": "B", "scale": 3}],
        },
        "infer": {"color": "y", "upsample_input": True},
    }
    assert validate(ok) is ok
