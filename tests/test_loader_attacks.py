"""Issue 15 items 1-2 (+ the weights parts of item 6): crafted weights that name only
*allowed* globals but corrupt memory, exhaust memory/CPU, or are corrupt.

Each attack is generated here by ``tools/fixtures/make_malicious_weights.py`` (the big
ones are sparse: a few KB on disk). Control tests run each one through a *name-only*
allow-list (what ppRestore had before) in a subprocess under ``RLIMIT_AS`` and a timeout,
to show the file really segfaults / exhausts memory / hangs; the other tests assert that
the loader now refuses it in one line, quickly, and that the three CLIs exit with their
documented code, one ``error:`` line and no signal death.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ppRestore.weights import torch_reader, unpickler
from ppRestore.weights.safe_load import (
    UnsafeWeightsError,
    WeightsError,
    load_state_dict,
    load_weights,
    restricted_loads,
    save_weights,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "make_malicious_weights", os.path.join(REPO, "tools", "fixtures", "make_malicious_weights.py")
)
mk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mk)


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    return mk.write_resource_attacks(str(tmp_path_factory.mktemp("attacks")))


def _limited(mem_gib: float):
    def pre():
        lim = int(mem_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    return pre


# A name-only allow-list, exactly what ppRestore's loader checked before issue 15.
_NAME_ONLY = textwrap.dedent(
    """
    import pickle, sys, numpy as np
    OK = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
          ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("builtins", "tuple"), ("builtins", "set"), ("builtins", "frozenset"),
          ("_codecs", "encode")}
    class U(pickle.Unpickler):
        def find_class(self, m, n):
            m = {"__builtin__": "builtins"}.get(m, m)
            assert (m, n) in OK, (m, n)
            return super().find_class(m, n)
    data = open(sys.argv[1], "rb").read()
    try:
        U(__import__("io").BytesIO(data), encoding="latin1").load()
        print("LOADED")
    except MemoryError:
        print("MEMORYERROR")
    """
)


@pytest.mark.parametrize(
    "name, symptom",
    [
        ("object_dtype_scalar.pdparams", "segfault"),
        ("ndarray_tuple_oom.pdparams", "memory"),
        ("zero_stride_frozenset.pdparams", "hang"),
    ],
)
def test_control_small_pickles_really_attack_a_name_only_allow_list(attacks, name, symptom):
    """Under the old name-only check the crafted file segfaults, runs out of memory (here:
    a 2 GiB address-space cap turns the OOM into MemoryError) or never finishes."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _NAME_ONLY, attacks[name]],
            capture_output=True, text=True, timeout=6, preexec_fn=_limited(2.5),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        assert symptom == "hang"
        return
    if symptom == "segfault":
        assert r.returncode == -11, (r.returncode, r.stderr[-500:])
    else:
        assert symptom == "memory" and "MEMORYERROR" in r.stdout, (r.stdout, r.stderr[-500:])


def test_small_attack_files_are_the_sizes_the_issue_names(attacks):
    sizes = {n: os.path.getsize(p) for n, p in attacks.items() if n.endswith(".pdparams")}
    assert sizes["object_dtype_scalar.pdparams"] == 103
    assert sizes["ndarray_tuple_oom.pdparams"] <= 63
    assert sizes["zero_stride_frozenset.pdparams"] <= 77
    for n in ("sparse_5gib.pdparams", "sparse_5gib.safetensors"):
        st = os.stat(attacks[n])
        assert st.st_size == 5 << 30 and st.st_blocks * 512 <= 64 << 10  # a hole, not data
    assert os.path.getsize(attacks["zip_bomb_6gib.pth"]) < 8 << 20


_AFTER = textwrap.dedent(
    """
    import json, sys, time
    from ppRestore.weights.safe_load import load_weights, WeightsError
    from ppRestore.weights.convert import read_foreign_checkpoint
    out = {}
    for path in sys.argv[1:]:
        t = time.perf_counter()
        try:
            if path.endswith(".pth"):
                read_foreign_checkpoint(path, backend="zip")
            else:
                load_weights(path)
            out[path] = ["LOADED", ""]
        except WeightsError as e:
            out[path] = [type(e).__name__, str(e)]
        out[path].append(time.perf_counter() - t)
    print(json.dumps(out))
    """
)


def test_every_attack_is_refused_in_one_line_quickly(attacks):
    """All eight files, in one subprocess capped at 2 GiB of address space: a regression
    shows up as a MemoryError/kill, not as a dead test machine."""
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(
        [sys.executable, "-c", _AFTER, *attacks.values()],
        capture_output=True, text=True, timeout=120, env=env, preexec_fn=_limited(2.5),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    want = {
        "object_dtype_scalar.pdparams": ("UnsafeWeightsError", "refused dtype 'O8'"),
        "ndarray_tuple_oom.pdparams": ("UnsafeWeightsError", "refused a call of"),
        "zero_stride_frozenset.pdparams": ("UnsafeWeightsError", "refused a call of"),
        "sparse_5gib.pdparams": ("WeightsError", "above the 2,147,483,648-byte limit"),
        "sparse_5gib.safetensors": ("WeightsError", "above the 2,147,483,648-byte limit"),
        "zip_bomb_6gib.pth": ("WeightsError", "above the 2,147,483,648-byte limit"),
        "stride0.pth": ("WeightsError", "strides >= 1"),
        "bad_crc.pth": ("WeightsError", "Bad CRC-32"),
    }
    for name, (cls, phrase) in want.items():
        kind, msg, secs = got[attacks[name]]
        assert kind == cls and phrase in msg, (name, kind, msg)
        assert msg.startswith(attacks[name] + ": ") and msg.count(attacks[name]) == 1, msg
        assert "\n" not in msg
        assert secs < 10, (name, secs)


def test_zip_bomb_under_the_ceiling_is_refused_by_ratio(tmp_path, monkeypatch):
    """A bomb that declares less than the ceiling is still refused before inflating."""
    p = mk.torch_zip_bomb(str(tmp_path / "bomb1.pth"), gib=1)
    with pytest.raises(WeightsError, match="zip bomb"):
        torch_reader.read_torch_zip(p)


def test_npz_bomb_is_refused_before_np_load(tmp_path, monkeypatch):
    from ppRestore.weights.convert import read_foreign_checkpoint

    p = tmp_path / "w.npz"
    np.savez_compressed(p, w=np.zeros((4 << 20,), np.float32))  # 16 MiB -> ~16 KB
    with pytest.raises(WeightsError, match="zip bomb"):
        read_foreign_checkpoint(str(p))
    monkeypatch.setenv("PPRESTORE_MAX_WEIGHTS_BYTES", str(1 << 20))
    with pytest.raises(WeightsError, match="1,048,576-byte limit"):
        read_foreign_checkpoint(str(p))


def test_ceiling_is_configurable_and_validated(tmp_path, monkeypatch):
    p = tmp_path / "w.pdparams"
    save_weights({"w": np.ones(1000, np.float32)}, p)
    monkeypatch.setenv("PPRESTORE_MAX_WEIGHTS_BYTES", "1000")
    with pytest.raises(WeightsError, match="above the 1,000-byte limit"):
        load_weights(p)
    monkeypatch.setenv("PPRESTORE_MAX_WEIGHTS_BYTES", "lots")
    with pytest.raises(WeightsError, match="whole number"):
        load_weights(p)
    monkeypatch.setenv("PPRESTORE_MAX_WEIGHTS_BYTES", str(10 << 20))
    assert load_weights(p)["w"].shape == (1000,)


# ---------------------------------------------------------------- torch reader geometry


def _torch_zip(path, storage, numel, size, stride, data: bytes) -> str:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", mk._torch_pkl(storage, numel, size, stride))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", data)
    return str(path)


@pytest.mark.parametrize(
    "size, stride, numel, nbytes, phrase",
    [
        ((4,), (0,), 1, 4, "strides >= 1"),  # broadcast view of one element
        ((2, 2), (-1, 1), 4, 16, "strides >= 1"),
        ((1000, 1000), (1, 1), 2000, 8000, "overruns"),  # overlapping: 1e6 from 2e3
        ((3,), (1,), 4, 12, "need 16"),  # storage shorter than its numel says
        ((5,), (1,), 4, 16, "overruns"),
    ],
)
def test_torch_reader_refuses_bad_geometry(tmp_path, size, stride, numel, nbytes, phrase):
    p = _torch_zip(tmp_path / "g.pth", "FloatStorage", numel, size, stride, bytes(nbytes))
    with pytest.raises(WeightsError, match=phrase) as ei:
        torch_reader.read_torch_zip(p)
    assert "\n" not in str(ei.value)


def test_torch_reader_size1_dims_may_have_any_stride(tmp_path):
    p = _torch_zip(
        tmp_path / "g.pth", "FloatStorage", 4, (1, 4), (0, 1), np.arange(4, dtype="<f4").tobytes()
    )
    np.testing.assert_array_equal(torch_reader.read_torch_zip(p)["w"], [[0, 1, 2, 3]])


def test_torch_reader_caps_total_rebuilt_bytes(tmp_path, monkeypatch):
    """Many views of one storage cannot multiply the memory a file costs."""
    import zipfile

    monkeypatch.setenv("PPRESTORE_MAX_WEIGHTS_BYTES", str(64 << 10))
    one = mk._torch_pkl("FloatStorage", 4096, (4096,), (1,))
    # {'w': t, 'w': t, ...}: 20 rebuilds of a 16 KiB storage = 320 KiB > 64 KiB.
    body = one[len(b"\x80\x02}(") : -len(b"u.")]
    pkl = b"\x80\x02}(" + body * 20 + b"u."
    p = tmp_path / "many.pth"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", bytes(16384))
    with pytest.raises(WeightsError, match="65,536-byte limit"):
        torch_reader.read_torch_zip(str(p))


# ---------------------------------------------------------------- item 7: attacking the new loader

_DT_F4 = (
    b"cnumpy\ndtype\n" + mk._s("f4") + b"\x89\x88\x87R"
)  # numpy.dtype('f4', False, True), no BUILD yet


def _dt_state(order=b"<", extra=b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00") -> bytes:
    return b"(K\x03" + mk._s(order.decode()) + extra + b"t"


def _array(shape: bytes, raw: bytes, dtype: bytes = None) -> bytes:
    dtype = dtype if dtype is not None else _DT_F4 + _dt_state() + b"b"
    head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
    return head + b"(K\x01" + shape + dtype + b"\x89C" + bytes([len(raw)]) + raw + b"tb"


def _p(value: bytes) -> bytes:
    return b"\x80\x03" + mk._dict1("w", value) + b"."


GOOD = _p(_array(b"K\x02\x85", struct.pack("<2f", 1.5, -2)))

SELF_ATTACKS = {
    # dtype + BUILD, every route
    "dtype_build_fields": _p(_DT_F4 + _dt_state(extra=b"N(X\x01\x00\x00\x00at}NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00") + b"b"),
    "dtype_build_elsize": _p(_DT_F4 + _dt_state(extra=b"NNNK\x08K\x08K\x00") + b"b"),
    "dtype_build_twice": _p(_DT_F4 + _dt_state() + b"b" + _dt_state() + b"b"),
    "dtype_build_not_tuple": _p(_DT_F4 + b"}b"),
    "dtype_object_code": _p(b"cnumpy\ndtype\n" + mk._s("O8") + b"\x89\x88\x87R"),
    "dtype_void_code": _p(b"cnumpy\ndtype\n" + mk._s("V8") + b"\x89\x88\x87R"),
    "dtype_structured_list": _p(b"cnumpy\ndtype\n]" + mk._s("f4") + b"a\x85R"),
    "dtype_align_not_bool": _p(b"cnumpy\ndtype\n" + mk._s("f4") + b"K\x01\x88\x87R"),
    "build_on_dict_with_state": _p(b"}}" + mk._s("__class__") + b"K\x01sb"),
    "build_on_list": _p(b"]Nb"),
    "build_on_scalar": _p(b"cnumpy.core.multiarray\nscalar\n" + _DT_F4 + _dt_state() + b"bC\x04\x00\x00\x00\x00\x86R}b"),
    "build_on_array_twice": _p(_array(b"K\x01\x85", bytes(4)) + b"(K\x01K\x01\x85" + _DT_F4 + _dt_state() + b"b\x89C\x04\x00\x00\x00\x00tb"),
    "build_on_ndarray_marker": _p(b"cnumpy\nndarray\n}b"),
    # placeholders where containers are expected
    "tuple_of_dtype": _p(b"c__builtin__\ntuple\n" + _DT_F4 + b"\x85R"),
    "tuple_of_array": _p(b"c__builtin__\ntuple\n" + _array(b"K\x01\x85", bytes(4)) + b"\x85R"),
    "frozenset_opcode_of_array": _p(b"(" + _array(b"K\x01\x85", bytes(4)) + b"\x91"),
    "set_of_array": _p(b"c__builtin__\nset\n]" + _array(b"K\x01\x85", bytes(4)) + b"a\x85R"),
    "ordereddict_of_array": _p(b"ccollections\nOrderedDict\n" + _array(b"K\x01\x85", bytes(4)) + b"\x85R"),
    "setitem_on_array": _p(_array(b"K\x01\x85", bytes(4)) + b"K\x00K\x01s"),
    "append_on_dtype": _p(_DT_F4 + b"K\x01a"),
    "additems_on_list": _p(b"](K\x01\x90"),
    "array_as_dict_key": _p(b"}" + _array(b"K\x01\x85", bytes(4)) + b"K\x01s"),
    "eval_of_dtype": _p(b"c__builtin__\neval\n" + mk._s("data") + b"}" + mk._s("data") + _DT_F4 + b"s\x86R"),
    "complex_of_array": _p(b"c__builtin__\ncomplex\n" + _array(b"K\x01\x85", bytes(4)) + b"\x85R"),
    "codecs_of_array": _p(b"c_codecs\nencode\n" + _array(b"K\x01\x85", bytes(4)) + mk._s("latin1") + b"\x86R"),
    "scalar_wrong_length": _p(b"cnumpy.core.multiarray\nscalar\n" + _DT_F4 + _dt_state() + b"bC\x08" + bytes(8) + b"\x86R"),
    "reconstruct_other_subtype": _p(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85C\x01b\x87R"),
    "reduce_on_plain_object": _p(b"}K\x00\x85R"),
    "newobj_ordereddict": _p(b"ccollections\nOrderedDict\n)\x81"),
    "inst_ordereddict": b"\x80\x02}X\x01\x00\x00\x00w(icollections\nOrderedDict\ns.",
    "persistent_id": _p(b"K\x01Q"),
    # shapes and sizes
    "huge_shape_small_data": _p(_array(b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85", bytes(4))),
    "negative_shape": _p(_array(b"J\xff\xff\xff\xff\x85", bytes(4))),
    "shape_prod_overflow": _p(_array(b"(" + b"\x8a\x05\x00\x00\x00\x00\x01" * 32 + b"t", bytes(4))),
    "shape_too_many_dims": _p(_array(b"(" + b"K\x01" * 33 + b"t", bytes(4))),
    "shape_not_ints": _p(_array(b"G?\xf0\x00\x00\x00\x00\x00\x00\x85", bytes(4))),
    "data_not_bytes": _p(_array(b"K\x01\x85", bytes(4)).replace(b"C\x04\x00\x00\x00\x00tb", b"K\x04tb")),
    "frombuffer_huge_shape": _p(b"cnumpy.core.numeric\n_frombuffer\n(C\x04\x00\x00\x00\x00" + _DT_F4 + _dt_state() + b"b\x8a\x05\x00\x00\x00\x00\x01\x85" + mk._s("C") + b"tR"),
    "frombuffer_object_dtype": _p(b"cnumpy.core.numeric\n_frombuffer\n(C\x08" + bytes(8) + b"cnumpy\ndtype\n" + mk._s("O8") + b"\x89\x88\x87RK\x01\x85" + mk._s("C") + b"tR"),
    "bytearray8_2_62": b"\x80\x05\x96" + struct.pack("<Q", 1 << 62) + b".",
    "binbytes8_2_62": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b".",
    "frame_2_62": b"\x80\x04\x95" + struct.pack("<Q", 1 << 62) + b"N.",
    "colliding_int_keys": b"\x80\x04}(" + b"".join(b"\x8a\x09" + (k * (2**61 - 1)).to_bytes(9, "little") + b"N" for k in range(1, 4)) + b"u.",
    "float_key": b"\x80\x04}G?\xf0\x00\x00\x00\x00\x00\x00Ns.",
    # one BINGET fed again and again to a copying stand-in, or shared by many arrays
    "tuple_copies_one_list": _p(b"c__builtin__\ntuple\nq\x01](" + b"K\x01" * 1000 + b"eq\x000(" + b"h\x01h\x00\x85R" * 20000 + b"l"),
    "codecs_copies_one_string": _p(b"c_codecs\nencode\nq\x01X" + struct.pack("<I", 100_000) + b"a" * 100_000 + b"q\x000(" + b"h\x01h\x00" + mk._s("latin1") + b"\x86R" * 1 + (b"h\x01h\x00" + mk._s("latin1") + b"\x86R") * 200 + b"l"),
    "arrays_share_one_buffer": _p(b"B" + struct.pack("<I", 65536) + bytes(65536) + b"q\x000(" + _array(b"M\x00\x40\x85", b"").replace(b"C\x00tb", b"h\x00tb") * 3 + b"l"),
}  # fmt: skip


def test_self_attack_control_good_array_loads():
    got = restricted_loads(GOOD, "good.pdparams")
    np.testing.assert_array_equal(got["w"], np.array([1.5, -2], np.float32))
    assert got["w"].flags.writeable and got["w"].flags.owndata


@pytest.mark.parametrize("name", sorted(SELF_ATTACKS))
def test_self_attacks_are_refused_in_one_line(name):
    t = time.perf_counter()
    with pytest.raises(WeightsError) as ei:
        restricted_loads(SELF_ATTACKS[name], f"{name}.pdparams")
    msg = str(ei.value)
    assert msg.startswith(f"{name}.pdparams: ") and "\n" not in msg and len(msg) < 400, msg
    assert time.perf_counter() - t < 2


def test_dtype_flags_in_build_are_ignored_not_applied():
    """numpy's dtype state carries flags (the 103-byte attack cleared them); a plain
    numeric dtype with odd flags loads as the plain dtype."""
    odd = _DT_F4 + _dt_state(extra=b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x3f") + b"b"
    got = restricted_loads(_p(_array(b"K\x01\x85", struct.pack("<f", 3), dtype=odd)), "x")
    assert got["w"].dtype == np.float32 and got["w"].dtype.flags == np.dtype("f4").flags


def test_big_endian_and_fortran_arrays_come_back_native(tmp_path):
    a = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    got = restricted_loads(pickle.dumps({"a": a, "s": a.dtype.type(7)}, protocol=2), "x")
    np.testing.assert_array_equal(got["a"], a)
    assert got["a"].dtype == np.float64 and got["a"].dtype.isnative and got["s"] == 7


def test_opcode_budget(monkeypatch):
    """A dict filled by a long run of SETITEMs: pickle has no loops, so 10**7 keys need
    ~10**7 opcodes (>= 40 MB); the opcode budget refuses such a file after
    MAX_OPCODES (1M, ~3 s of pure-Python unpickling). Shown here with a small budget,
    and the environment override."""
    monkeypatch.setattr(unpickler, "MAX_OPCODES", 10_000)
    items = b"".join(b"J" + struct.pack("<i", i) + b"Ns" for i in range(5000))
    with pytest.raises(UnsafeWeightsError, match="more than 10,000 opcodes"):
        restricted_loads(b"\x80\x04}" + items + b".", "big.pdparams")
    monkeypatch.setenv("PPRESTORE_MAX_PICKLE_OPS", "20000")
    assert len(restricted_loads(b"\x80\x04}" + items + b".", "big.pdparams")) == 5000
    monkeypatch.delenv("PPRESTORE_MAX_PICKLE_OPS")
    small = b"".join(b"J" + struct.pack("<i", i) + b"Ns" for i in range(100))
    assert len(restricted_loads(b"\x80\x04}" + small + b".", "ok.pdparams")) == 100


def test_deep_nesting_million_levels_is_a_clean_error(monkeypatch):
    blob = b"\x80\x04}(\x8c\x01w" + b"]" * 1_000_000 + b"a" * 999_999 + b"u."
    with pytest.raises(UnsafeWeightsError, match="more than 1,000,000 opcodes"):
        restricted_loads(blob, "deep.pdparams")
    monkeypatch.setenv("PPRESTORE_MAX_PICKLE_OPS", "3000000")  # past the opcode cap
    t = time.perf_counter()
    with pytest.raises(WeightsError, match="nested too deeply"):
        restricted_loads(blob, "deep.pdparams")
    assert time.perf_counter() - t < 30


def test_container_length_cap(monkeypatch):
    monkeypatch.setattr(unpickler, "MAX_CONTAINER_LEN", 10)
    blob = b"\x80\x02c__builtin__\ntuple\n](" + b"K\x01" * 11 + b"e\x85R."
    with pytest.raises(UnsafeWeightsError, match="11 items"):
        restricted_loads(blob, "t.pdparams")


def test_safetensors_header_checks(tmp_path):
    def st(header: dict, data: bytes = b"") -> str:
        h = json.dumps(header).encode()
        p = tmp_path / f"h{abs(hash(h))}.safetensors"
        p.write_bytes(struct.pack("<Q", len(h)) + h + data)
        return str(p)

    cases = {
        "offsets": st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
        "needs": st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, bytes(8)),
        "overlap": st(
            {
                "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                "b": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
            },
            bytes(8),
        ),  # fmt: skip
        "bad shape": st({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}),
        "'O'": st({"w": {"dtype": "O", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)),
    }
    for phrase, path in cases.items():
        with pytest.raises(WeightsError, match=phrase):
            load_weights(path)
    bad_len = tmp_path / "len.safetensors"
    bad_len.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(WeightsError, match="header length"):
        load_weights(bad_len)
    deep = tmp_path / "deep.safetensors"
    h = b"[" * 100_000 + b"]" * 100_000
    deep.write_bytes(struct.pack("<Q", len(h)) + h)
    with pytest.raises(WeightsError, match="header"):
        load_weights(deep)


def test_realistic_big_file_loads_fast(tmp_path):
    """A 200 MB state dict (Paddle's layout: ``_reconstruct`` + BUILD per tensor, protocol
    4) through the pure-Python unpickler: well under the few seconds the issue allows."""
    from collections import OrderedDict

    rng = np.random.default_rng(0)
    sd = OrderedDict(
        (f"l{i}.weight", rng.standard_normal((256, 256, 3, 3), dtype=np.float32)) for i in range(85)
    )  # 50.1 M parameters, 200 MB
    p = tmp_path / "big.pdparams"
    with open(p, "wb") as f:
        pickle.dump(sd, f, protocol=4)
    t = time.perf_counter()
    got = load_weights(p)
    secs = time.perf_counter() - t
    np.testing.assert_array_equal(got["l84.weight"], sd["l84.weight"])
    assert secs < 8, secs  # ~0.6 s on the 2-core dev box under load


# ---------------------------------------------------------------- item 6: dtypes of the right shape


@pytest.fixture(scope="module")
def conv():
    paddle = pytest.importorskip("paddle")
    paddle.set_device("cpu")
    return paddle.nn.Conv2D(1, 2, 3)


def _state(conv, dtype, values=None):
    w = np.full(conv.weight.shape, 0.5) if values is None else values
    return {"weight": np.asarray(w).astype(dtype), "bias": np.zeros(2, dtype)}


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_half_precision_weights_are_cast(conv, dtype):
    load_state_dict(conv, _state(conv, dtype), source="w.safetensors")
    assert str(conv.weight.dtype).endswith("float32")
    np.testing.assert_array_equal(conv.weight.numpy(), 0.5)


def test_bfloat16_safetensors_weights_load_into_float32(conv, tmp_path):
    h = json.dumps({"weight": {"dtype": "BF16", "shape": [2, 1, 3, 3], "data_offsets": [0, 36]},
                    "bias": {"dtype": "BF16", "shape": [2], "data_offsets": [36, 40]}}).encode()  # fmt: skip
    bf = (np.full(20, 0.75, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    p = tmp_path / "bf.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h + bf)
    load_state_dict(conv, load_weights(p), source=str(p))
    np.testing.assert_array_equal(conv.weight.numpy(), 0.75)


def test_float64_weights_cast_only_when_exact(conv):
    load_state_dict(conv, _state(conv, "float64"), source="w64.pdparams")
    np.testing.assert_array_equal(conv.weight.numpy(), 0.5)
    inexact = _state(conv, "float64", np.full(conv.weight.shape, 0.1))
    with pytest.raises(WeightsError) as ei:
        load_state_dict(conv, inexact, source="w64.pdparams")
    msg = str(ei.value)
    assert "'weight'" in msg and "float64" in msg and "float32" in msg and "\n" not in msg


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "int16"])
def test_int_and_bool_weights_are_refused_naming_key_and_dtypes(conv, dtype):
    with pytest.raises(WeightsError) as ei:
        load_state_dict(conv, _state(conv, dtype, np.ones(conv.weight.shape)), source="wi.pdparams")
    msg = str(ei.value)
    assert msg.startswith("wi.pdparams: 'weight' holds " + dtype) and "float32" in msg, msg


# ---------------------------------------------------------------- the three CLIs


def _cli(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_minloglevel="3", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
        preexec_fn=_limited(8),
    )  # fmt: skip


def _one_error_line(r, code, phrase):
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {r.stderr[-1000:]}"
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errs = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errs) == 1 and phrase in errs[0], r.stderr[-2000:]


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory, attacks):
    import yaml

    d = tmp_path_factory.mktemp("cli15")
    model = {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4}
    (d / "model.yml").write_text(yaml.safe_dump({"model": model}), encoding="utf-8")
    from PIL import Image

    (d / "set").mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(d / "set" / f"{i}.png")
    cfg = {
        "model": model,
        "train_dataset": {"type": "SyntheticDataset", "dataset_root": str(d / "set"), "channels": 3,
                          "degradations": [{"type": "GaussianNoise", "sigma": 25}],
                          "transforms": [{"type": "PairedRandomCrop", "patch_size": 8}]},
        "loss": {"types": [{"type": "MSELoss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [100]},
        "iters": 4, "batch_size": 2,
    }  # fmt: skip
    (d / "train.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return d


@pytest.mark.parametrize("name", ["object_dtype_scalar.pdparams", "sparse_5gib.pdparams"])
def test_infer_cli_refuses_crafted_weights(cli_dir, attacks, name, tmp_path):
    r = _cli(
        "tools/infer.py", "-c", str(cli_dir / "model.yml"), "--model_path", attacks[name],
        "--image_path", str(cli_dir / "set" / "0.png"), "--save_dir", str(tmp_path / "out"),
        cwd=str(tmp_path),
    )  # fmt: skip
    _one_error_line(r, 2, attacks[name])


def test_train_cli_resume_refuses_crafted_weights(cli_dir, attacks, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.pdparams").write_bytes(open(attacks["object_dtype_scalar.pdparams"], "rb").read())
    (ck / "COMPLETE").write_text('{"iteration": 1}')
    (ck / "train_state.json").write_text('{"iteration": 1}')
    r = _cli(
        "tools/train.py", "-c", str(cli_dir / "train.yml"), "--save_dir", str(tmp_path / "run"),
        "--resume_model", str(ck), cwd=str(tmp_path),
    )  # fmt: skip
    _one_error_line(r, 2, "refused dtype 'O8'")


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("object_dtype_scalar.pdparams", "refused dtype 'O8'"),
        ("stride0.pth", "strides >= 1"),
        ("bad_crc.pth", "Bad CRC-32"),
        ("zip_bomb_6gib.pth", "byte limit"),
    ],
)
def test_convert_cli_refuses_crafted_checkpoints(attacks, tmp_path, name, phrase):
    r = _cli(
        "tools/convert_weights.py", "--arch", "dncnn", "--src", attacks[name],
        "--dst", str(tmp_path / "o.pdparams"), "--backend", "zip", cwd=str(tmp_path),
    )  # fmt: skip
    _one_error_line(r, 2, phrase)
    assert not (tmp_path / "o.pdparams").exists()


def test_train_cli_resume_with_another_models_pdopt(cli_dir, tmp_path):
    """A .pdopt from a wider model used to pass silently and die at the first step with
    Paddle's 'Variable Shape not match' assertion traceback."""
    import yaml

    cfg = yaml.safe_load((cli_dir / "train.yml").read_text())
    runs = {}
    for name, feat in (("a", 4), ("b", 8)):
        cfg["model"]["features"] = feat
        cfg["iters"] = 2
        p = tmp_path / f"{name}.yml"
        p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        r = _cli("tools/train.py", "-c", str(p), "--save_dir", str(tmp_path / name),
                 "--save_interval", "2", cwd=str(tmp_path))  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        runs[name] = tmp_path / name / "iter_2"
    mixed = tmp_path / "mixed"
    import shutil

    shutil.copytree(runs["a"], mixed)
    shutil.copy(runs["b"] / "model.pdopt", mixed / "model.pdopt")
    cfg["model"]["features"], cfg["iters"] = 4, 4
    (tmp_path / "a4.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    r = _cli("tools/train.py", "-c", str(tmp_path / "a4.yml"), "--save_dir", str(tmp_path / "c"),
             "--resume_model", str(mixed), cwd=str(tmp_path))  # fmt: skip
    _one_error_line(r, 2, "model.pdopt does not match the model")
    # ... and the checkpoint's own .pdopt still resumes.
    r = _cli("tools/train.py", "-c", str(tmp_path / "a4.yml"), "--save_dir", str(tmp_path / "d"),
             "--resume_model", str(runs["a"]), cwd=str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("protocol", range(6))
def test_big_arrays_load_at_every_protocol(tmp_path, protocol):
    """Protocol 0 stores array data as one text line (here ~390 KB): the bounded reader
    must not cut it; every protocol's array form still loads bit for bit."""
    from collections import OrderedDict

    rng = np.random.default_rng(protocol)
    sd = OrderedDict(w=rng.random((300, 300)).astype("f4"), b=np.arange(5), s=np.float64(2.5))
    p = tmp_path / "p.pdparams"
    p.write_bytes(pickle.dumps(sd, protocol=protocol))
    got = load_weights(p)
    for k in ("w", "b"):
        np.testing.assert_array_equal(got[k], sd[k])
        assert got[k].dtype == sd[k].dtype
    assert got["s"] == 2.5


def test_zip_entry_count_is_checked_before_zipfile_parses_it(tmp_path, monkeypatch):
    p = _torch_zip(tmp_path / "n.pth", "FloatStorage", 1, (1,), (1,), bytes(4))
    assert torch_reader.read_torch_zip(p)["w"].shape == (1,)
    monkeypatch.setattr(torch_reader, "MAX_ZIP_ENTRIES", 2)
    with pytest.raises(WeightsError, match=r"lists 3 members \(limit 2\)"):
        torch_reader.read_torch_zip(p)


def test_bad_crc_npz_is_one_line(tmp_path):
    from ppRestore.weights.convert import read_foreign_checkpoint

    p = tmp_path / "w.npz"
    np.savez(p, w=np.arange(6, dtype="<f4"))
    blob = bytearray(p.read_bytes())
    blob[blob.index(np.arange(6, dtype="<f4").tobytes()) + 5] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="Bad CRC-32") as ei:
        read_foreign_checkpoint(str(p))
    assert str(ei.value).startswith(f"{p}: ") and "\n" not in str(ei.value)


def test_paddle_bfloat16_weights_load_as_their_bits(conv, tmp_path):
    """paddle.save writes a bfloat16 tensor as uint16 bit patterns (a bf16 O2 training
    checkpoint holds such arrays); into a float32 layer they load as the bf16 values."""
    paddle = pytest.importorskip("paddle")
    w = paddle.to_tensor(np.full(conv.weight.shape, 0.3, np.float32)).astype("bfloat16")
    b = paddle.zeros([2]).astype("bfloat16")
    p = str(tmp_path / "bf16.pdparams")
    paddle.save({"weight": w, "bias": b}, p)
    state = load_weights(p)
    assert state["weight"].dtype == np.uint16
    load_state_dict(conv, state, source=p)
    want = (np.full(1, 0.3, np.float32).view(np.uint32) + 0x8000 >> 16 << 16).view(np.float32)
    np.testing.assert_allclose(conv.weight.numpy(), want[0], rtol=0, atol=1e-3)
    assert np.all(conv.weight.numpy() == conv.weight.numpy().flat[0])
