"""Registries: unknown/duplicate names, and constructor arguments checked before the call."""

from __future__ import annotations

import os
import re
import sys
import types
from typing import List, Optional, Sequence, Tuple, Union

import pytest

from ppRestore.config import load_config
from ppRestore.registry import MODELS, Registry, RegistryError, build_callable


@pytest.fixture
def reg():
    r = Registry("model")

    @r.register
    class DnCNN:
        def __init__(
            self,
            in_channels: int = 3,
            depth: int = 17,
            features: int = 64,
            act: str = "relu",
            scale: float = 1.0,
            residual: bool = True,
            widths: Tuple[int, ...] = (64, 64),
            extra: Optional[List[int]] = None,  # noqa: UP045 - the typing form on purpose
            sloppy: int = None,  # noqa: RUF013 - deliberately sloppy Optional
            either: Union[int, str] = 0,
        ):
            self.kw = dict(locals())
            self.kw.pop("self")

    @r.register(name="UNet")
    class UNetWithRequired:
        def __init__(self, in_channels, out_channels=3, **kwargs):
            self.kw = {"in_channels": in_channels, "out_channels": out_channels, **kwargs}

    return r


def test_register_and_build(reg):
    m = reg.build({"type": "DnCNN", "depth": 5, "scale": 2, "widths": [8, 8], "extra": None})
    assert m.kw["depth"] == 5 and m.kw["scale"] == 2 and m.kw["widths"] == [8, 8]
    assert "DnCNN" in reg and reg.keys() == ["DnCNN", "UNet"]


def test_duplicate_name_is_an_error(reg):
    class DnCNN:  # a different class under the same name
        pass

    with pytest.raises(RegistryError, match="'DnCNN' is already registered"):
        reg.register(DnCNN)
    reg.register(reg.get("DnCNN"))  # re-registering the same object is harmless


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("DnCNNN", "unknown model type 'DnCNNN'. Did you mean 'DnCNN'?"),
        ("unet", "Did you mean 'UNet'?"),
        ("Transformer", "Known: DnCNN, UNet"),
    ],
)
def test_unknown_type_suggests(reg, name, phrase):
    with pytest.raises(RegistryError) as ei:
        reg.build({"type": name})
    assert phrase in str(ei.value)
    assert str(ei.value) == ei.value.args[0]  # no KeyError quoting


@pytest.mark.parametrize("bad", [3, None, ["DnCNN"], {"a": 1}])
def test_type_must_be_a_name(reg, bad):
    with pytest.raises(RegistryError, match="must be a class name"):
        reg.get(bad)


def test_build_needs_a_type(reg):
    with pytest.raises(RegistryError, match="needs a 'type:' key"):
        reg.build({"depth": 3})
    with pytest.raises(RegistryError, match="needs a 'type:' key"):
        reg.build(["DnCNN"])


@pytest.mark.parametrize(
    "kw, phrase",
    [
        ({"n_feat": 3}, "unknown argument 'n_feat'"),
        ({"feature": 3}, "unknown argument 'feature' (did you mean 'features'?)"),
        ({"depth": "17"}, "argument 'depth' must be an integer, got str ('17')"),
        ({"depth": 17.0}, "argument 'depth' must be an integer, got float"),
        ({"depth": True}, "argument 'depth' must be an integer, got bool"),
        ({"scale": "2"}, "argument 'scale' must be a number, got str"),
        ({"residual": "yes"}, "argument 'residual' must be true/false, got str"),
        ({"act": 3}, "argument 'act' must be a string, got int"),
        ({"widths": 64}, "argument 'widths' must be a list, got int"),
        ({"extra": "1,2"}, "argument 'extra' must be a list or null, got str"),
        ({"either": 1.5}, "argument 'either' must be an integer or a string, got float"),
    ],
)
def test_bad_arguments_are_named(reg, kw, phrase):
    with pytest.raises(RegistryError) as ei:
        reg.build({"type": "DnCNN", **kw})
    assert phrase in str(ei.value), str(ei.value)
    assert str(ei.value).startswith("model DnCNN: ")


def test_good_arguments_pass(reg):
    for kw in [{"sloppy": None}, {"sloppy": 3}, {"either": "x"}, {"either": 2}, {"scale": 1}]:
        reg.build({"type": "DnCNN", **kw})


def test_missing_required_and_var_kwargs(reg):
    with pytest.raises(RegistryError, match="missing required argument\\(s\\): in_channels"):
        reg.build({"type": "UNet"})
    m = reg.build({"type": "UNet", "in_channels": 1, "anything": 2})  # **kwargs accepts all
    assert m.kw["anything"] == 2


def test_extra_kwargs_from_code_are_checked_too(reg):
    with pytest.raises(RegistryError, match="unknown argument 'bogus'"):
        reg.build({"type": "DnCNN"}, bogus=1)


def test_unresolvable_annotations_skip_type_checks():
    def f(a: NoSuchType = 1):  # noqa: F821 - deliberately unresolvable
        return a

    assert build_callable(f, {"a": "anything"}, "f") == "anything"


def test_builtin_without_signature_is_called_directly():
    assert build_callable(dict, {"a": 1}, "dict") == {"a": 1}


def test_lazy_import_failure_is_reported(monkeypatch):
    r = Registry("loss", ["ppRestore._no_such_module_for_tests"])
    with pytest.raises(RegistryError) as ei:
        r.get("L1Loss")
    assert "module ppRestore._no_such_module_for_tests failed to import" in str(ei.value)


def test_lazy_modules_register_on_first_lookup(monkeypatch, tmp_path):
    r = Registry("transform", ["_pprestore_test_lazy_mod"])
    holder = types.ModuleType("_pprestore_test_holder")
    holder.R = r
    monkeypatch.setitem(sys.modules, "_pprestore_test_holder", holder)
    (tmp_path / "_pprestore_test_lazy_mod.py").write_text(
        "import _pprestore_test_holder as h\n\n"
        "@h.R.register\n"
        "class Crop:\n"
        "    def __init__(self, size: int = 8):\n"
        "        self.size = size\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "_pprestore_test_lazy_mod" not in sys.modules
    assert r.build({"type": "Crop", "size": 4}).size == 4  # the import happened here
    assert "_pprestore_test_lazy_mod" in sys.modules
    monkeypatch.delitem(sys.modules, "_pprestore_test_lazy_mod")


def test_config_file_to_built_object(tmp_path, reg):
    p = tmp_path / "c.yml"
    p.write_text("model:\n  type: DnCNN\n  depth: 3\n  act: gelu\n", encoding="utf-8")
    cfg = load_config(str(p), ["model.features=16"])
    m = reg.build(cfg["model"])
    assert (m.kw["depth"], m.kw["act"], m.kw["features"]) == (3, "gelu", 16)
    cfg = load_config(str(p), ["model.featurs=16"])
    with pytest.raises(RegistryError, match="did you mean 'features'"):
        reg.build(cfg["model"])


def test_sequence_annotation_accepts_lists():
    def f(sizes: Sequence[int] = (1,)):
        return sizes

    assert build_callable(f, {"sizes": [1, 2]}, "f") == [1, 2]


def test_real_models_registry_suggests():
    """The package's MODELS registry: an unknown name lists the known ones (whatever
    model modules are importable in this checkout) and never raises anything but
    RegistryError."""
    with pytest.raises(RegistryError, match="unknown model type 'NoSuchNet'"):
        MODELS.get("NoSuchNet")


def test_model_modules_are_discovered_not_listed(tmp_path, monkeypatch):
    """A new file in a model package is found by pkgutil (registry.discover_modules)."""
    from ppRestore.registry import discover_modules

    pkg = tmp_path / "_pprestore_disc_pkg"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "alpha.py", "beta.py", "_private.py", "sub/__init__.py"):
        (pkg / f).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert discover_modules(["_pprestore_disc_pkg"]) == [
        "_pprestore_disc_pkg.alpha",
        "_pprestore_disc_pkg.beta",
    ]
    import ppRestore.registry as reg

    found = discover_modules(reg.MODEL_PACKAGES)
    for m in ("cmfnet", "dncnn", "pmrnet", "srcnn", "unet", "dmcnn"):
        assert f"ppRestore.models.{m}" in found
    assert "lazy_modules" not in open(reg.__file__).read().split("MODELS = Registry(")[1][:80]


def test_each_model_declares_its_facts():
    from ppRestore.registry import ARCHS, CONVERTERS, MODELS

    assert set(ARCHS.keys()) >= {"cmfnet", "pmrnet", "srcnn", "dncnn", "unet", "dmcnn"}
    for name in ARCHS.keys():
        a = ARCHS.get(name)
        assert a.model in MODELS  # the declared model type exists
        for s in a.sources:
            assert CONVERTERS.get(f"{name}:{s.name}") is s.convert
            assert s.detect is not None
    assert ARCHS.get("pmrnet").defaults == {"in_channels": 4}
    assert dict(ARCHS.get("dncnn").source("kair").implies) == {"bn": False}


def test_one_spelling_of_the_channel_argument():
    import glob
    import inspect

    from ppRestore.registry import MODELS

    for name in MODELS.keys():
        params = inspect.signature(MODELS.get(name)).parameters
        assert not {"in_c", "out_c", "num_channels"} & set(params), name
    for cfg in glob.glob(
        os.path.join(os.path.dirname(__file__), "..", "configs", "**", "*.yml"), recursive=True
    ):
        text = open(cfg).read()
        assert not re.search(r"^\s+(in_c|out_c|num_channels):", text, re.M), cfg
