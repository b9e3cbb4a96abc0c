"""Foreign-checkpoint conversion: readers (torch-free zip reader included), unwrapping,
strict loading errors, and the tools/convert_weights.py CLI on the official CMFNet fixture."""

from __future__ import annotations

import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

from ppRestore.weights import convert
from ppRestore.weights.convert import read_foreign_checkpoint, read_torch_zip, unwrap_state_dict
from ppRestore.weights.safe_load import UnsafeWeightsError, WeightsError

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TINY_PTH = os.path.join(FIX, "cmfnet_tiny.pth")
TINY_OPTS = ["-o", "model.n_feat=8", "model.scale_unetfeats=3"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- hand-written torch zip checkpoints (protocol-2 opcodes, as torch.save writes them)
def _s(x: str) -> bytes:
    b = x.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_pkl(
    storage="FloatStorage",
    key="0",
    numel=6,
    offset=0,
    size=(2, 3),
    stride=(3, 1),
    rebuild=b"ctorch._utils\n_rebuild_tensor_v2\n",
) -> bytes:
    pid = _tup(_s("storage"), f"ctorch\n{storage}\n".encode(), _s(key), _s("cpu"), _i(numel)) + b"Q"
    args = _tup(
        pid,
        _i(offset),
        _tup(*map(_i, size)),
        _tup(*map(_i, stride)),
        b"\x89",
        b"ccollections\nOrderedDict\n)R",
    )
    return b"\x80\x02}(" + _s("w") + rebuild + args + b"Ru."


def _write_zip(path, pkl: bytes, storages: dict, byteorder="little") -> str:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        for k, v in storages.items():
            z.writestr(f"archive/data/{k}", v)
    return str(path)


def test_zip_reader_rebuilds_strided_tensors(tmp_path):
    data = np.arange(6, dtype="<f4")
    # A transposed (non-contiguous) view: size (3, 2), stride (1, 3).
    p = _write_zip(
        tmp_path / "t.pth", _tensor_pkl(size=(3, 2), stride=(1, 3)), {"0": data.tobytes()}
    )
    w = read_torch_zip(p)["w"]
    np.testing.assert_array_equal(w, data.reshape(2, 3).T)
    # Offset into a shared storage, big-endian file, half precision.
    be = np.arange(8, dtype=">f2")
    p = _write_zip(
        tmp_path / "h.pth",
        _tensor_pkl("HalfStorage", numel=8, offset=2, size=(3,), stride=(2,)),
        {"0": be.tobytes()},
        byteorder="big",
    )
    np.testing.assert_array_equal(read_torch_zip(p)["w"], np.array([2, 4, 6], "float16"))
    # bfloat16 is widened to float32 exactly.
    f = np.array([1.5, -2.25, 3.0, 0.0, 7.0, 1e-3], "float32")
    bf = (f.view(np.uint32) >> 16).astype("<u2")
    p = _write_zip(tmp_path / "b.pth", _tensor_pkl("BFloat16Storage"), {"0": bf.tobytes()})
    np.testing.assert_array_equal(
        read_torch_zip(p)["w"].ravel(), (bf.astype(np.uint32) << 16).view(np.float32)
    )


def test_zip_reader_refuses_code_and_bad_geometry(tmp_path):
    data = np.zeros(6, "<f4").tobytes()
    evil = _write_zip(tmp_path / "evil.pth", _tensor_pkl(rebuild=b"cos\nsystem\n"), {"0": data})
    with pytest.raises(UnsafeWeightsError, match="os.system"):
        read_torch_zip(evil)
    evil2 = _write_zip(tmp_path / "evil2.pth", _tensor_pkl(rebuild=b"ctorch\nload\n"), {"0": data})
    with pytest.raises(UnsafeWeightsError, match="torch.load"):
        read_torch_zip(evil2)
    unknown_storage = _write_zip(
        tmp_path / "u.pth", _tensor_pkl(storage="UntypedStorag"), {"0": data}
    )
    with pytest.raises(UnsafeWeightsError):
        read_torch_zip(unknown_storage)
    traversal = _write_zip(tmp_path / "k.pth", _tensor_pkl(key="../0"), {"0": data})
    with pytest.raises(UnsafeWeightsError, match="storage key"):
        read_torch_zip(traversal)
    # A stride reaching past the storage would read foreign memory through as_strided.
    oob = _write_zip(tmp_path / "oob.pth", _tensor_pkl(size=(2, 3), stride=(4, 1)), {"0": data})
    with pytest.raises(WeightsError, match="overruns"):
        read_torch_zip(oob)
    missing = _write_zip(tmp_path / "m.pth", _tensor_pkl(key="1"), {"0": data})
    with pytest.raises(WeightsError, match="missing"):
        read_torch_zip(missing)


def test_read_official_fixture_without_torch():
    state = read_foreign_checkpoint(TINY_PTH, backend="zip")
    assert len(state) == 230  # official CMFNet state_dict length, PReLU repeats included
    assert not any(k.startswith("module.") for k in state)  # DataParallel prefix stripped
    assert "epoch" not in state  # {"epoch", "state_dict"} wrapper unwrapped
    assert state["shallow_feat1.0.weight"].shape == (4, 3, 3, 3)
    assert state["shallow_feat1.0.weight"].dtype == np.float32
    np.testing.assert_array_equal(
        state["shallow_feat1.1.weight"], state["stage3_decoder.skip_attn2.body.1.weight"]
    )


def test_torch_and_zip_backends_agree():
    pytest.importorskip("torch")  # only where torch is installed (the converter's optional path)
    a = read_foreign_checkpoint(TINY_PTH, backend="zip")
    b = read_foreign_checkpoint(TINY_PTH, backend="torch")
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_unwrap_variants(tmp_path):
    w = {"a.weight": np.ones((2, 2), "float32"), "b": np.zeros(3, "float32")}
    assert set(unwrap_state_dict(w)) == {"a.weight", "b"}  # bare dict
    for key in ("state_dict", "model", "params"):
        got = unwrap_state_dict({key: {"module." + k: v for k, v in w.items()}, "epoch": 3})
        assert set(got) == {"a.weight", "b"}
    assert set(unwrap_state_dict({"ema": w, "state_dict": {}}, key="ema")) == {"a.weight", "b"}
    with pytest.raises(WeightsError, match="both with and without"):
        unwrap_state_dict({"module.b": w["b"], "b": w["b"]})
    with pytest.raises(WeightsError, match="no arrays"):
        unwrap_state_dict({"epoch": 1})
    # Plain numpy pickles and .npz go through the restricted / allow_pickle=False readers.
    pk = tmp_path / "w.pkl"
    pk.write_bytes(pickle.dumps({"state_dict": w}))
    assert set(read_foreign_checkpoint(str(pk))) == {"a.weight", "b"}
    np.savez(tmp_path / "w.npz", **w)
    assert set(read_foreign_checkpoint(str(tmp_path / "w.npz"))) == {"a.weight", "b"}


def test_legacy_torch_file_is_read_without_torch(tmp_path, monkeypatch):
    """Pre-1.6 torch files (SaoYan's net.pth) are read torch-free; a broken one is one line."""
    from torch_files import write_torch_legacy

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    monkeypatch.setattr(convert, "_torch_available", lambda: False)
    w = {"module.a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)}
    good = tmp_path / "net.pth"
    write_torch_legacy(w, str(good))
    assert convert.checkpoint_container(str(good)) == "torch-legacy"
    got = read_foreign_checkpoint(str(good))
    np.testing.assert_array_equal(got["a.weight"], w["module.a.weight"])
    legacy = tmp_path / "old.pth"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x02}q\x00.")
    with pytest.raises(WeightsError, match="not a readable legacy PyTorch checkpoint") as ei:
        read_foreign_checkpoint(str(legacy))
    assert "old.pth" in str(ei.value) and "\n" not in str(ei.value)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(WeightsError, match="truncated"):
        read_foreign_checkpoint(str(cut))


# ---- end to end through the CLI --------------------------------------------------------
def _cli(*argv: str) -> int:
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import convert_weights
    finally:
        sys.path.pop(0)
    return convert_weights.main(list(argv))


@pytest.mark.parametrize("suffix", [".pdparams", ".safetensors"])
def test_cli_converts_fixture_and_output_matches_official(tmp_path, suffix, capsys):
    import paddle

    from ppRestore.models.cmfnet import CMFNet
    from ppRestore.weights.safe_load import load_model_weights

    dst = str(tmp_path / ("cmfnet_tiny" + suffix))
    assert (
        _cli("--arch", "cmfnet", "--src", TINY_PTH, "--dst", dst, "--backend", "zip", *TINY_OPTS)
        == 0
    )
    assert "102,781 parameters" in capsys.readouterr().out
    model = CMFNet(n_feat=8, scale_unetfeats=3)
    load_model_weights(model, dst)  # strict, through the safe loader
    model.eval()
    io = np.load(os.path.join(FIX, "cmfnet_tiny_io.npz"))
    with paddle.no_grad():
        out = model(paddle.to_tensor(io["input"])).numpy()
    assert np.abs(out - io["out"]).max() < 1e-4


def test_cli_model_kwargs_flag(tmp_path):
    dst = str(tmp_path / "k.pdparams")
    rc = _cli(
        "--arch",
        "cmfnet",
        "--src",
        TINY_PTH,
        "--dst",
        dst,
        "--model_kwargs",
        '{"n_feat": 8, "scale_unetfeats": 3}',
    )
    assert rc == 0 and os.path.isfile(dst)


def _tiny_state_npz(tmp_path, edit) -> str:
    state = read_foreign_checkpoint(TINY_PTH, backend="zip")
    edit(state)
    path = str(tmp_path / "edited.npz")
    np.savez(path, **state)
    return path


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda s: s.pop("sam2o.conv1.weight"), r"1 missing key\(s\): sam2o.conv1.weight"),
        (
            lambda s: s.update({"extra.bias": np.zeros(3, "float32")}),
            r"1 unexpected key\(s\): extra.bias",
        ),
        (
            lambda s: s.update({"mix.w": np.zeros((1, 1), "float32")}),
            r"mismatched key\(s\): mix.w \(checkpoint \(1, 1\), model \(1,\)\)",
        ),
        (
            lambda s: s.update(
                {"stage2_encoder.encoder_level1.0.body.1.weight": np.array([0.7], "float32")}
            ),
            "name one shared parameter but carry different values",
        ),
    ],
)
def test_cli_reports_bad_checkpoints(tmp_path, capsys, edit, expect):
    import re

    src = _tiny_state_npz(tmp_path, edit)
    dst = str(tmp_path / "out.pdparams")
    assert _cli("--arch", "cmfnet", "--src", src, "--dst", dst, *TINY_OPTS) == 2
    err = capsys.readouterr().err
    assert err.startswith("convert_weights: error:") and err.count("\n") == 1
    assert re.search(expect, err), err
    assert not os.path.exists(dst)  # nothing half-written


def test_cli_wrong_width_and_arch_errors(tmp_path, capsys):
    """Wrong arguments and files exit 2 (ppRestore.errors), like the other tools."""
    dst = str(tmp_path / "out.pdparams")
    assert _cli("--arch", "cmfnet", "--src", TINY_PTH, "--dst", dst) == 2
    assert "-o model.n_feat" in capsys.readouterr().err  # hint for reduced-width checkpoints
    assert _cli("--arch", "cmfnett", "--src", TINY_PTH, "--dst", dst) == 2
    assert "Did you mean 'cmfnet'" in capsys.readouterr().err
    assert _cli("--arch", "cmfnet", "--src", TINY_PTH, "--dst", dst, "-o", "n_feat=8") == 2
    assert "model.KEY=VALUE" in capsys.readouterr().err
    assert _cli("--arch", "cmfnet", "--src", str(tmp_path / "nope.pth"), "--dst", dst) == 2
    assert "not found" in capsys.readouterr().err
