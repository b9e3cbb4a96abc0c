"""Weights are untrusted input: the restricted unpickler, safetensors, strict loading."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from ppRestore.weights import safe_load
from ppRestore.weights.safe_load import (
    UnsafeWeightsError,
    WeightsError,
    check_state_dict,
    load_model_weights,
    load_state_dict,
    load_weights,
    restricted_loads,
    save_weights,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALICIOUS_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "malicious")
with open(os.path.join(MALICIOUS_DIR, "MANIFEST.json"), encoding="utf-8") as _f:
    MANIFEST = json.load(_f)
MARKER = MANIFEST["marker"]


class _RecordingUnpickler(pickle.Unpickler):
    """Plain unpickler that records every global a (trusted, self-made) file names."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = set()

    def find_class(self, module, name):
        self.seen.add((module, name))
        return super().find_class(module, name)


def _globals_of(path: str) -> set:
    with open(path, "rb") as f:
        u = _RecordingUnpickler(f, encoding="latin1")
        u.load()
    return u.seen


# ---------------------------------------------------------------- real Paddle files


@pytest.fixture(scope="module")
def paddle_files(tmp_path_factory):
    """Files written by paddle.save: a model state dict (protocols 2/3/4), an Adam
    optimizer state after a few steps with an LR scheduler, nested dicts holding Tensors
    and a DenseTensor."""
    paddle = pytest.importorskip("paddle")
    paddle.set_device("cpu")
    paddle.seed(0)
    d = tmp_path_factory.mktemp("paddle_files")
    model = paddle.nn.Sequential(
        paddle.nn.Conv2D(3, 4, 3, padding=1), paddle.nn.BatchNorm2D(4), paddle.nn.Conv2D(4, 3, 1)
    )
    sched = paddle.optimizer.lr.MultiStepDecay(learning_rate=1e-3, milestones=[2], gamma=0.5)
    opt = paddle.optimizer.Adam(learning_rate=sched, parameters=model.parameters())
    for _ in range(3):
        loss = model(paddle.randn([2, 3, 8, 8])).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
    files = {}
    for proto in (2, 3, 4):
        files[f"model_p{proto}"] = str(d / f"model_p{proto}.pdparams")
        paddle.save(model.state_dict(), files[f"model_p{proto}"], protocol=proto)
    files["opt"] = str(d / "opt.pdopt")
    paddle.save(opt.state_dict(), files["opt"])
    # keep the Tensor alive: the DenseTensor views its memory, and a freed temporary made
    # paddle.save read 8 bytes where 24 were expected (seen once in a full run)
    dense_owner = paddle.to_tensor(np.arange(6, dtype="float32").reshape(2, 3))
    dense = dense_owner.value().get_tensor()
    nested = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "iter": 3,
        "meta": {"name": "ünïcode", "best": 31.5, "ok": True, "none": None, "shape": (3, 4)},
        "list": [paddle.ones([2]), {"deep": paddle.zeros([1])}],
        "dense": dense,
    }
    for proto in (2, 4):
        files[f"nested_p{proto}"] = str(d / f"nested_p{proto}.pdparams")
        paddle.save(nested, files[f"nested_p{proto}"], protocol=proto)
    del dense, dense_owner
    return paddle, files


def _assert_same_tree(a, b, where="root"):
    if isinstance(b, dict):
        assert isinstance(a, dict), where
        assert list(a) == list(b), where
        for k in b:
            _assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b and type(a) is type(b), where


@pytest.mark.parametrize(
    "name", ["model_p2", "model_p3", "model_p4", "opt", "nested_p2", "nested_p4"]
)
def test_paddle_saved_files_load_like_paddle_load(paddle_files, name):
    paddle, files = paddle_files
    ours = load_weights(files[name])
    # paddle.load is fine here: these are files this test just wrote itself.
    theirs = paddle.load(files[name], return_numpy=True)
    # paddle.load drops its parameter-name table; we keep it (check_state_dict ignores it).
    ours.pop("StructuredToParameterName@@", None)
    _assert_same_tree(ours, dict(theirs))


def test_optimizer_state_has_moments_and_scheduler(paddle_files):
    _, files = paddle_files
    st = load_weights(files["opt"])
    assert any("moment1" in k for k in st) and any("moment2" in k for k in st)
    assert st["LR_Scheduler"]["last_epoch"] == 3
    assert st["LR_Scheduler"]["last_lr"] == pytest.approx(5e-4)


def test_allow_list_is_exactly_what_paddle_needs(paddle_files):
    """Every global the real files reference is served, and the allow-list holds
    nothing beyond those plus the documented numpy/container extras."""
    _, files = paddle_files
    seen = set()
    for path in files.values():
        seen |= _globals_of(path)
    seen = {("builtins", n) if m == "__builtin__" else (m, n) for m, n in seen}
    allowed = set(safe_load._ALLOWED_GLOBALS)
    assert seen <= allowed, seen - allowed
    extras = allowed - seen
    documented_extras = {
        ("collections", "OrderedDict"),  # PMRID .ckp, torch-style state dicts
        ("numpy.core.multiarray", "scalar"),  # numpy scalars (np.float32(...))
        ("numpy._core.multiarray", "_reconstruct"),  # numpy>=2 spelling
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol-5 arrays
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
    }
    assert extras <= documented_extras, extras - documented_extras


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_pickles_of_numpy_state_dicts_load(tmp_path, protocol):
    from collections import OrderedDict

    state = OrderedDict(
        w=np.arange(6, dtype=np.float32).reshape(2, 3),
        s=np.float32(2.5),
        i=np.int64(7),
        c=complex(1, 2),
        st={1, 2},
        fs=frozenset({"a"}),
        b=b"\x00\xff",
        t=(1, "x"),
    )
    p = tmp_path / "plain.pdparams"
    p.write_bytes(pickle.dumps(state, protocol=protocol))
    got = load_weights(p)
    assert list(got) == list(state)
    np.testing.assert_array_equal(got["w"], state["w"])
    assert got["s"] == np.float32(2.5) and got["i"] == 7 and got["c"] == complex(1, 2)
    assert got["st"] == {1, 2} and got["fs"] == frozenset({"a"}) and got["b"] == b"\x00\xff"
    assert got["t"] == (1, "x")


def test_real_pmrid_style_ckp_layout_loads(tmp_path):
    """PMRID's MegEngine .ckp is an OrderedDict of numpy arrays pickled at protocol 4."""
    from collections import OrderedDict

    state = OrderedDict(
        (f"conv{i}.conv.weight", np.full((2, 2, 3, 3), i, np.float32)) for i in range(3)
    )
    p = tmp_path / "mge_pretrained.ckp"
    p.write_bytes(pickle.dumps(state, protocol=4))
    got = load_weights(p)
    assert list(got) == list(state)
    np.testing.assert_array_equal(got["conv2.conv.weight"], state["conv2.conv.weight"])


@pytest.mark.parametrize("name", ["torch_real_zip.pth", "torch_real_legacy.pth"])
def test_real_torch_save_files_load_without_torch(name):
    """Files written by torch 2.13 itself (tests/fixtures/make_torch_real.py): a real
    state dict pickles its ``_metadata`` as a BUILD on the OrderedDict, which the
    torch-free reader once refused (the official PMRID and CMFNet files with it)."""
    from ppRestore.weights.convert import read_foreign_checkpoint
    from ppRestore.weights.torch_legacy import read_torch_legacy
    from ppRestore.weights.torch_reader import read_torch_zip

    fixtures = os.path.join(REPO_ROOT, "tests", "fixtures")
    want = np.load(os.path.join(fixtures, "torch_real_values.npz"))
    path = os.path.join(fixtures, name)
    if "zip" in name:  # the converter's torch-free route too
        flat = read_foreign_checkpoint(path, backend="zip")
        np.testing.assert_array_equal(flat["0.weight"], want["0.weight"])
    got = (read_torch_zip if "zip" in name else read_torch_legacy)(path)
    if "legacy" in name:
        assert got["epoch"] == 3
        got = got["state_dict"]
    assert list(got) == list(want.files)
    assert not hasattr(got, "_metadata")  # validated and dropped, never set
    for k in want.files:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k])
        assert np.asarray(got[k]).dtype == want[k].dtype


def test_real_release_layout_with_adam_state_converts_without_torch():
    """torch 2.13's own file of a release checkpoint's layout (DataParallel ``module.``
    keys, Adam with 0-dim tensor steps and None/bool options, a scheduler): the
    converter's torch-free route takes the weights out of it."""
    from ppRestore.weights.convert import read_foreign_checkpoint
    from ppRestore.weights.torch_reader import read_torch_zip

    fixtures = os.path.join(REPO_ROOT, "tests", "fixtures")
    path = os.path.join(fixtures, "torch_real_release.pth")
    want = np.load(os.path.join(fixtures, "torch_real_release_values.npz"))
    flat = read_foreign_checkpoint(path, backend="zip")
    assert sorted(flat) == sorted(want.files)  # module. stripped, optimizer left out
    for k in want.files:
        np.testing.assert_array_equal(flat[k], want[k])
    whole = read_torch_zip(path)
    assert whole["epoch"] == 5 and whole["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert whole["scheduler"]["T_max"] == 10


def _dict_with_build_state(state: object) -> bytes:
    # collections.OrderedDict() then BUILD with ``state``
    return b"\x80\x02ccollections\nOrderedDict\n)R" + pickle.dumps(state, protocol=2)[2:-1] + b"b."


@pytest.mark.parametrize(
    "state",
    [
        {"_metadata": "x"},
        {"_metadata": {"": {"version": 1}}, "update": 1},
        {"__class__": {}},
        {"_metadata": {1: {}}},
        {"_metadata": {"": [1]}},
        (None, {"_metadata": {}}),
    ],
)
def test_build_on_a_dict_takes_only_torch_metadata(tmp_path, state):
    p = tmp_path / "s.pkl"
    p.write_bytes(_dict_with_build_state(state))
    with pytest.raises(UnsafeWeightsError, match="BUILD"):
        load_weights(p)


def test_build_with_torch_metadata_is_dropped(tmp_path):
    p = tmp_path / "s.pkl"
    p.write_bytes(_dict_with_build_state({"_metadata": {"": {"version": 1}}}))
    got = load_weights(p)
    assert got == {} and not hasattr(got, "_metadata")


# ---------------------------------------------------------------- crafted files


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_malicious_file_is_refused_and_nothing_runs(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # the payloads create ./pprestore_pwned_marker
    refused = MANIFEST["files"][name]["refused"]
    with pytest.raises(UnsafeWeightsError) as ei:
        load_weights(os.path.join(MALICIOUS_DIR, name))
    msg = str(ei.value)
    assert f"'{refused}" in msg, msg
    assert name in msg
    assert "\n" not in msg
    assert not (tmp_path / MARKER).exists()
    # The same through the full --model_path route.
    with pytest.raises(UnsafeWeightsError):
        load_model_weights(object(), os.path.join(MALICIOUS_DIR, name))
    assert not (tmp_path / MARKER).exists()


def test_malicious_fixtures_are_real_attacks(tmp_path):
    """Control: under a plain pickle.loads (in a throw-away subprocess, in tmp_path) the
    gadgets marked as firing really create the marker, so the test above means something."""
    code = r"""
import json, os, pickle, sys, time
src, marker = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(src, "MANIFEST.json")))
fired = {}
for name in sorted(manifest["files"]):
    try:
        pickle.loads(open(os.path.join(src, name), "rb").read())
    except BaseException:
        pass
    t0 = time.time()
    while not os.path.exists(marker) and time.time() - t0 < 3.0 and manifest["files"][name]["fires_under_pickle_loads"]:
        time.sleep(0.02)  # subprocess.Popen's child runs asynchronously
    fired[name] = os.path.exists(marker)
    if fired[name]:
        os.remove(marker)
print(json.dumps(fired))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, MALICIOUS_DIR, MARKER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    fired = json.loads(out.stdout.strip().splitlines()[-1])
    want = {n: e["fires_under_pickle_loads"] for n, e in MANIFEST["files"].items()}
    assert fired == want
    assert sum(want.values()) >= 12


def test_fixture_generator_is_reproducible(tmp_path):
    """The committed files are what the committed script makes (semantically: pickle
    bytes may differ across Python/numpy versions, the refused global may not)."""
    gen = os.path.join(REPO_ROOT, "tools", "fixtures", "make_malicious_weights.py")
    subprocess.run([sys.executable, gen, str(tmp_path)], check=True, capture_output=True)
    with open(tmp_path / "MANIFEST.json", encoding="utf-8") as f:
        assert json.load(f) == MANIFEST
    for name, entry in MANIFEST["files"].items():
        with pytest.raises(UnsafeWeightsError, match=re.escape(f"'{entry['refused']}")):
            load_weights(tmp_path / name)


def test_eval_stand_in_serves_only_dense_tensor_form():
    data = np.arange(3, dtype=np.float32)
    assert safe_load._paddle_dense_tensor("data", {"data": data}) is data
    for args in [("data",), ("data", {"data": data, "x": 1}), ("1+1", {"data": data}),
                 ("data", {"data": [1]}), ("data", {"data": data}, {})]:  # fmt: skip
        with pytest.raises(UnsafeWeightsError, match="builtins.eval"):
            safe_load._paddle_dense_tensor(*args)


def test_codecs_stand_in_serves_only_latin1():
    assert safe_load._codecs_encode("\xff", "latin1") == b"\xff"
    for enc in ("utf-8", "zlib_codec", "base64", "rot13"):
        with pytest.raises(UnsafeWeightsError, match="_codecs.encode"):
            safe_load._codecs_encode("x", enc)


# ---------------------------------------------------------------- unreadable files


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"", "empty file"),
        (b"PK\x03\x04zipzip", "zip archive"),
        (b"\x80\x04\x95garbage", "not a readable weights pickle"),
        (pickle.dumps({"w": np.ones(100)})[:-20], "not a readable weights pickle"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
        (b"hello world, not a pickle", "not a readable weights pickle"),
        (b"\x80\x05N.", "expected a dict"),
    ],
)
def test_unreadable_weights_are_one_line_errors(tmp_path, blob, match):
    p = tmp_path / "w.pdparams"
    p.write_bytes(blob)
    with pytest.raises(WeightsError, match=match) as ei:
        load_weights(p)
    assert "\n" not in str(ei.value)


def test_missing_file():
    with pytest.raises(WeightsError, match="not found"):
        load_weights("/nonexistent/w.pdparams")


def test_shared_references_do_not_blow_up(tmp_path):
    """A 'billion laughs' pickle: 60 levels of dicts, each referencing the previous one
    twice. Must load in linear time (the tree has 2**60 paths but 60 objects)."""
    d = {"w": np.zeros(1)}
    for _ in range(60):
        d = {"a": d, "b": d}
    p = tmp_path / "laughs.pdparams"
    p.write_bytes(pickle.dumps(d, protocol=4))
    got = load_weights(p)
    node = got
    for _ in range(60):
        assert node["a"] is node["b"]
        node = node["a"]


def test_deep_nesting_is_a_clean_error_or_loads(tmp_path):
    # {"w": [[[...]]]} with 100k nested lists (EMPTY_DICT MARK 'w' (EMPTY_LIST MARK)*N ...).
    blob = b"\x80\x04}(\x8c\x01w" + b"](" * 100_000 + b"e" * 100_000 + b"u."
    p = tmp_path / "deep.pdparams"
    p.write_bytes(blob)
    try:
        got = load_weights(p)
    except WeightsError as e:
        assert "nested too deeply" in str(e) or "not a readable" in str(e)
    else:
        assert "w" in got


def test_restricted_loads_names_source():
    with pytest.raises(UnsafeWeightsError, match=r"^src\.pdparams: refused"):
        restricted_loads(b"cos\nsystem\n(S'true'\ntR.", source="src.pdparams")


# ---------------------------------------------------------------- safetensors


SAFE_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
               np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]  # fmt: skip


@pytest.mark.parametrize("dtype", SAFE_DTYPES)
def test_safetensors_dtype_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((3, 5)) * 100).astype(dtype)
    p = tmp_path / "w.safetensors"
    save_weights({"a": a, "scalar": np.asarray(a.flat[0])}, p)
    got = load_weights(p)
    assert got["a"].dtype == a.dtype and got["a"].shape == (3, 5)
    np.testing.assert_array_equal(got["a"], a)
    assert got["scalar"].shape == ()


def test_safetensors_non_contiguous_arrays(tmp_path):
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    views = {"t": base.transpose(2, 0, 1), "s": base[:, ::2, 1::2], "f": np.asfortranarray(base)}
    assert not any(v.flags.c_contiguous for v in views.values())
    p = tmp_path / "nc.safetensors"
    save_weights(views, p)
    got = load_weights(p)
    for k, v in views.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_pdparams_round_trip_of_views_and_dtypes(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    state = {"t": base.transpose(1, 0, 2), "h": base.astype(np.float16), "nested": {"x": base[0]}}
    p = tmp_path / "w.pdparams"
    save_weights(state, p)
    got = load_weights(p)
    _assert_same_tree(got, state)


@pytest.mark.parametrize("numpy_knows_bf16", [False, True])
def test_safetensors_bfloat16_reads_as_float32(tmp_path, numpy_knows_bf16):
    if numpy_knows_bf16:  # Paddle may import ml_dtypes, which teaches numpy bfloat16
        pytest.importorskip("ml_dtypes")
    vals = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    bf16 = (vals.view(np.uint32) >> 16).astype("<u2").tobytes()
    f32 = np.arange(2, dtype="<f4").tobytes()
    header = json.dumps({
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
    }).encode()  # fmt: skip
    p = tmp_path / "bf16.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + bf16 + f32)
    got = load_weights(p)
    assert got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], vals.reshape(2, 2))
    np.testing.assert_array_equal(got["b"], [0.0, 1.0])


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}",
        b"\xff" * 8 + b"{}",
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json!!!!!}",
        struct.pack("<Q", 60) + b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}    ',
        struct.pack("<Q", 60) + b'{"a":{"dtype":"BF16","shape":[9],"data_offsets":[0,18]}}   ',
    ],
)
def test_corrupt_safetensors_are_one_line_errors(tmp_path, blob):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(WeightsError, match="safetensors") as ei:
        load_weights(p)
    assert "\n" not in str(ei.value)


def test_safetensors_refuses_non_array_values(tmp_path):
    with pytest.raises(WeightsError, match="'iter'"):
        save_weights({"w": np.zeros(2), "iter": 5}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_save_is_atomic_on_failure(tmp_path):
    p = tmp_path / "w.pdparams"
    save_weights({"w": np.ones(2)}, p)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_weights({"w": np.zeros(2), "x": Boom()}, p)
    np.testing.assert_array_equal(load_weights(p)["w"], np.ones(2))  # old file intact
    assert sorted(os.listdir(tmp_path)) == ["w.pdparams"]  # no temp file left


# ---------------------------------------------------------------- strict loading


@pytest.fixture(scope="module")
def tiny_model():
    paddle = pytest.importorskip("paddle")
    paddle.set_device("cpu")

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(1, 2, 3)
            self.head = paddle.nn.Conv2D(2, 1, 1)

    return Tiny()


def _state_of(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_strict_load_round_trip(tiny_model, tmp_path):
    state = {k: np.full(v.shape, 0.5, np.float32) for k, v in _state_of(tiny_model).items()}
    p = tmp_path / "w.safetensors"
    save_weights(state, p)
    report = load_model_weights(tiny_model, str(p))
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    for v in _state_of(tiny_model).values():
        assert np.all(v == 0.5)


def test_missing_unexpected_mismatched_are_listed(tiny_model):
    state = _state_of(tiny_model)
    state.pop("head.bias")
    state["extra.weight"] = np.zeros(1, np.float32)
    state["conv.weight"] = np.zeros((3, 1, 3, 3), np.float32)
    with pytest.raises(WeightsError) as ei:
        load_state_dict(tiny_model, state, source="ck.pdparams")
    msg = str(ei.value)
    assert msg.startswith("ck.pdparams: weights do not match Tiny")
    assert "1 missing key(s): head.bias" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "conv.weight (checkpoint (3, 1, 3, 3), model [2, 1, 3, 3])" in msg.replace(
        "(2, 1, 3, 3)", "[2, 1, 3, 3]"
    )


def test_non_strict_still_refuses_mismatched_shapes(tiny_model):
    state = _state_of(tiny_model)
    state.pop("head.bias")
    report = load_state_dict(tiny_model, state, strict=False)
    assert report["missing"] == ["head.bias"]
    state["conv.weight"] = np.zeros((9,), np.float32)
    with pytest.raises(WeightsError, match="mismatched"):
        load_state_dict(tiny_model, state, strict=False)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array(["a", "b"]), "not numbers"),
        (np.full((2,), np.nan, np.float32), "NaN or Inf"),
        (np.full((2,), np.inf, np.float32), "NaN or Inf"),
        ([[1.0], [2.0, 3.0]], "not an array|mismatched"),
    ],
)
def test_bad_values_are_named(tiny_model, bad, match):
    state = _state_of(tiny_model)
    state["conv.bias"] = bad
    with pytest.raises(WeightsError, match=match) as ei:
        load_state_dict(tiny_model, state)
    assert "conv.bias" in str(ei.value)


def test_check_state_dict_ignores_paddle_name_table():
    model_state = {"w": np.zeros(2)}
    rep = check_state_dict(
        model_state, {"w": np.zeros(2), "StructuredToParameterName@@": {"w": "x"}}
    )
    assert rep == {"missing": [], "unexpected": [], "mismatched": []}


# ---------------------------------------------------------------- no unsafe loaders anywhere


# Dotted names whose *call* runs an unrestricted unpickler (or unsafe YAML) on file
# contents. Matched on Python tokens, so docstrings and comments that mention them are fine.
_FORBIDDEN_CALLS = {
    "paddle.load", "paddle.framework.load", "paddle.framework.io.load",
    "pickle.load", "pickle.loads", "_pickle.load", "_pickle.loads",
    "cPickle.load", "cPickle.loads", "dill.load", "dill.loads", "joblib.load",
    "torch.load", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
}  # fmt: skip
_FORBIDDEN_NAMES = {"pickle.Unpickler", "_pickle.Unpickler"}
# np.load is fine unless it is allowed to unpickle.
_PICKLE_IF_KWARG = {"np.load": "allow_pickle", "numpy.load": "allow_pickle"}
# The only places allowed to touch these: the restricted unpickler's own subclass, and
# the optional torch path of the converter, which must pass weights_only=True.
_ALLOWED_USES = {
    ("ppRestore/weights/safe_load.py", "pickle.Unpickler"),
    ("ppRestore/weights/convert.py", "torch.load"),
}


def _python_sources():
    for root in ["ppRestore", "tools", "deploy", "benchmarks"]:
        for dirpath, _, files in os.walk(os.path.join(REPO_ROOT, root)):
            for f in files:
                if f.endswith(".py"):
                    full = os.path.join(dirpath, f)
                    yield os.path.relpath(full, REPO_ROOT).replace(os.sep, "/"), full


def _unsafe_uses(source: str, rel: str) -> list:
    """(line, what) for each forbidden loader use in ``source`` (token-based)."""
    import tokenize

    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    found = []
    i = 0
    while i < len(toks):
        if toks[i].type != tokenize.NAME or (i > 0 and toks[i - 1].string == "."):
            i += 1
            continue
        j, parts = i, [toks[i].string]
        while j + 2 < len(toks) and toks[j + 1].string == "." and toks[j + 2].type == tokenize.NAME:
            parts.append(toks[j + 2].string)
            j += 2
        dotted = ".".join(parts)
        is_call = j + 1 < len(toks) and toks[j + 1].string == "("
        args = []
        if is_call:  # the call's tokens up to the matching ')'
            depth, k = 0, j + 1
            while k < len(toks):
                if toks[k].type == tokenize.OP:
                    depth += toks[k].string in ("(", "[", "{")
                    depth -= toks[k].string in (")", "]", "}")
                args.append(toks[k].string)
                if depth == 0:
                    break
                k += 1
        call = "".join(args)
        what = None
        if is_call and dotted in _FORBIDDEN_CALLS:
            what = dotted
        elif dotted in _FORBIDDEN_NAMES:
            what = dotted
        elif is_call and dotted in _PICKLE_IF_KWARG and f"{_PICKLE_IF_KWARG[dotted]}=True" in call:
            what = f"{dotted}({_PICKLE_IF_KWARG[dotted]}=True)"
        if what:
            if (rel, what) not in _ALLOWED_USES:
                found.append((toks[i].start[0], what))
            elif what == "torch.load" and "weights_only=True" not in call:
                found.append((toks[i].start[0], "torch.load without weights_only=True"))
        i = j + 1
    # ``from pickle import loads`` and friends would dodge the dotted check.
    rx = r"^\s*from\s+(pickle|_pickle|cPickle|dill|paddle|torch|yaml)\s+import\s+(.*)$"
    for m in re.finditer(rx, source, re.M):
        names = {n.strip().split(" ")[0] for n in m.group(2).strip("()").split(",")}
        bad = names & {"load", "loads", "Unpickler", "unsafe_load", "full_load"}
        if bad:
            line = source[: m.start()].count("\n") + 1
            found.append((line, f"from {m.group(1)} import {sorted(bad)}"))
    return found


def test_no_unsafe_loader_calls_in_the_code():
    offences = []
    n_files = 0
    for rel, full in _python_sources():
        if rel.startswith("tools/fixtures/"):
            continue  # fixture generators build attacks on purpose; never imported
        n_files += 1
        with open(full, encoding="utf-8") as f:
            offences += [f"{rel}:{ln}: {what}" for ln, what in _unsafe_uses(f.read(), rel)]
    assert n_files >= 8
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize(
    "code, what",
    [
        ("x = paddle.load(path)", "paddle.load"),
        ("x = paddle.load(\n    path,\n)", "paddle.load"),
        ("pickle.loads(b)", "pickle.loads"),
        ("torch.load(f, map_location='cpu')", "torch.load"),
        ("np.load(p, allow_pickle=True)", "np.load(allow_pickle=True)"),
        ("yaml.load(f)", "yaml.load"),
        ("from pickle import loads", "from pickle import ['loads']"),
        ("class U(pickle.Unpickler): pass", "pickle.Unpickler"),
    ],
)
def test_checker_catches_offences(code, what):
    """The checker above really matches the forms it claims to."""
    assert [w for _, w in _unsafe_uses(code + "\n", "ppRestore/x.py")] == [what]


@pytest.mark.parametrize(
    "code",
    [
        "yaml.safe_load(f)",
        "np.load(p)",
        '"""never call paddle.load(path) here"""',
        "# pickle.loads(x) is dangerous",
        "safe_load.load_weights(p)",
    ],
)
def test_checker_ignores_safe_forms(code):
    assert _unsafe_uses(code + "\n", "ppRestore/x.py") == []


def test_converter_torch_load_rule():
    ok = "torch.load(path, map_location='cpu', weights_only=True)\n"
    bad = "torch.load(path, map_location='cpu')\n"
    assert _unsafe_uses(ok, "ppRestore/weights/convert.py") == []
    assert _unsafe_uses(bad, "ppRestore/weights/convert.py") == [
        (1, "torch.load without weights_only=True")
    ]


def test_import_ppRestore_does_not_import_paddle_or_torch():
    code = "import sys, ppRestore, ppRestore.weights.safe_load, ppRestore.weights.zoo, ppRestore.data.io, ppRestore.config, ppRestore.registry; print('paddle' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "name", ["pmrid_evil.ckp", "os_system.pdparams", "nested_pickle_proto0.pdparams"]
)
@pytest.mark.parametrize("as_zip", [False, True])
def test_weight_converter_refuses_crafted_files(tmp_path, monkeypatch, name, as_zip):
    """tools/convert_weights.py's reader (foreign checkpoints, torch zips) is just as safe."""
    import zipfile

    from ppRestore.weights import convert

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(convert, "_torch_available", lambda: False)  # the torch-free path
    with open(os.path.join(MALICIOUS_DIR, name), "rb") as f:
        blob = f.read()
    src = tmp_path / (name + (".pth" if as_zip else ""))
    if as_zip:  # the same pickle as data.pkl of a torch.save zip
        with zipfile.ZipFile(src, "w") as z:
            z.writestr("archive/data.pkl", blob)
            z.writestr("archive/version", "3\n")
    else:
        src.write_bytes(blob)
    with pytest.raises(UnsafeWeightsError) as ei:
        convert.read_foreign_checkpoint(str(src))
    assert f"'{MANIFEST['files'][name]['refused']}" in str(ei.value)
    assert not (tmp_path / MARKER).exists()
