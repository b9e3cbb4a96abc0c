"""A config's ``export.int8`` recipe reaches tools/export.py --quantize int8, command-line
flags override it, and a mistyped key is an error naming the closest one."""

from __future__ import annotations

import os

import pytest

from ppRestore.commands.export import _int8_recipe, parser
from ppRestore.config import ConfigError, load_config
from ppRestore.inference.quantize import RECIPE_KEYS, config_recipe, quantize_int8

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PMRNET = os.path.join(REPO, "configs", "pmrnet", "pmrnet_raw.yml")


def _args(*extra: str):
    return parser().parse_args(["-c", PMRNET, "--model_path", "w", *extra])


def test_pmrnet_config_carries_its_measured_recipe():
    got = _int8_recipe(_args())
    assert got["calib_isos"] == [3200] and got["method"] == "percentile"
    assert got["float_skips"] is True and got["keep_fp32"] == ["auto"]
    assert got["max_keep"] == 12 and got["target_psnr"] == 64
    assert set(got) <= set(RECIPE_KEYS)


def test_command_line_flags_override_the_config_recipe():
    got = _int8_recipe(
        _args("--calib_iso", "800", "--calib_method", "minmax", "--int8_keep", "last",
              "--int8_max_keep", "3", "--no_gptq", "--no_equalize")
    )  # fmt: skip
    assert got["calib_isos"] == [800.0] and got["method"] == "minmax"
    assert got["keep_fp32"] == ["last"] and got["max_keep"] == 3
    assert got["gptq"] is False and got["equalize"] is False
    assert got["float_skips"] is True  # not overridden: the config's
    o = _int8_recipe(_args("-o", "export.int8.float_skips=false", "export.int8.max_keep=4"))
    assert o["float_skips"] is False and o["max_keep"] == 4


def test_no_recipe_and_no_flags_means_quantize_int8_defaults():
    args = parser().parse_args(
        ["-c", os.path.join(REPO, "configs", "demo.yml"), "--model_path", "w"]
    )
    assert _int8_recipe(args) == {}
    assert _int8_recipe(parser().parse_args(
        ["-c", os.path.join(REPO, "configs", "demo.yml"), "--model_path", "w", "--equalize"]
    )) == {"equalize": True}  # fmt: skip


def test_every_recipe_key_is_a_quantize_int8_argument():
    import inspect

    params = inspect.signature(quantize_int8).parameters
    assert all(k in params for k in RECIPE_KEYS)


def test_misspelt_recipe_key_names_the_closest(tmp_path):
    cfg = load_config(PMRNET, ["export.int8.float_skip=true"])
    with pytest.raises(ConfigError, match="float_skips"):
        config_recipe(cfg)
    with pytest.raises(ConfigError, match="mapping"):
        config_recipe({"export": {"int8": [1]}})
    with pytest.raises(ConfigError, match="int8"):
        load_config(PMRNET, ["export.int9={}"])


def test_qat_config_exports_the_scheme_its_training_simulates():
    """pmrnet_qat.yml inherits pmrnet_raw.yml but not its post-training recipe."""
    path = os.path.join(REPO, "configs", "compression", "pmrnet_qat.yml")
    got = _int8_recipe(parser().parse_args(["-c", path, "--model_path", "w"]))
    assert got == {"fuse_relu": False, "gptq": False, "float_output": False, "equalize": False}


def test_missing_onnx_tools_are_named_before_any_export_work(monkeypatch, capsys, tmp_path):
    import importlib.util

    from ppRestore.commands import export as cmd

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    called = []
    monkeypatch.setattr("ppRestore.inference.export.export_model", lambda *a, **k: called.append(1))
    rc = cmd.main(["-c", PMRNET, "--model_path", "w", "--save_dir", str(tmp_path),
                   "--quantize", "int8", "--calib_dir", str(tmp_path)])  # fmt: skip
    assert rc == 1 and not called
    err = capsys.readouterr().err
    assert "--quantize int8 needs onnxruntime" in err and "ppRestore[onnx]" in err
