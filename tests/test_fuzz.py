"""Fuzzing the untrusted-input boundaries: image bytes, weights bytes, YAML text, overrides.

Each boundary may only ever raise its own one-line error type (ImageReadError,
WeightsError, ConfigError, RegistryError); anything else escaping is a crash the user
would see as a traceback. Example counts are moderate so the file runs in seconds.
"""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppRestore.config import ConfigError, apply_overrides, load_config, parse_override, validate
from ppRestore.data.io import Image, ImageReadError, decode_image
from ppRestore.errors import cli_message
from ppRestore.registry import Registry, RegistryError
from ppRestore.weights.safe_load import WeightsError, load_weights, restricted_loads

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # reproducible in CI; the corpus below is varied enough
)


def _seed_images() -> dict:
    """Small valid files in every format the reader claims, as mutation seeds."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = {}
    for fmt, kw in [
        ("PNG", {}),
        ("JPEG", {"quality": 90}),
        ("BMP", {}),
        ("TIFF", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("PPM", {}),
    ]:
        buf = io.BytesIO()
        try:
            PILImage.fromarray(rgb).save(buf, fmt, **kw)
        except (KeyError, OSError):  # a Pillow build without that codec
            continue
        out[fmt] = buf.getvalue()
    import cv2

    ok, buf = cv2.imencode(".png", rng.integers(0, 65536, (6, 7, 4), dtype=np.uint16))
    out["PNG16"] = buf.tobytes()
    ok, buf = cv2.imencode(".tif", rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16))
    out["TIFF16"] = buf.tobytes()
    return out


SEEDS = _seed_images()


def _check_image(img: Image) -> None:
    assert isinstance(img, Image)
    assert img.data.dtype in (np.uint8, np.uint16)
    assert img.data.ndim == 3 and img.data.shape[2] in (1, 3)
    assert min(img.data.shape[:2]) >= 1
    if img.alpha is not None:
        assert img.alpha.shape == img.data.shape[:2] and img.alpha.dtype == img.data.dtype


def _decode_or_clean_error(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd chunks; not our concern
        try:
            img = decode_image(data, "fuzz.png")
        except ImageReadError as e:
            assert "\n" not in str(e) and str(e).startswith("fuzz.png: ")
            return
    _check_image(img)


@FAST
@given(st.binary(max_size=2048))
def test_decode_random_bytes(data):
    _decode_or_clean_error(data)


@st.composite
def mutated_image(draw):
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[:pos]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@FAST
@given(mutated_image())
def test_decode_mutated_valid_images(data):
    _decode_or_clean_error(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(SEEDS)), st.integers(0, 10_000))
def test_decode_every_truncation_point(fmt, cut):
    data = SEEDS[fmt]
    _decode_or_clean_error(data[: cut % (len(data) + 1)])


def test_header_claims_huge_size_but_tiny_body():
    """A BMP header that promises 60000 x 60000 pixels must be refused, not allocated."""
    import struct

    hdr = b"BM" + struct.pack("<IHHI", 54 + 12, 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 24, 0, 12, 2835, 2835, 0, 0)
    with pytest.raises(ImageReadError):
        decode_image(hdr + dib + b"\0" * 12, "huge.bmp")


# ---------------------------------------------------------------- weights


def _seed_pickles() -> list:
    from collections import OrderedDict

    state = OrderedDict(
        [("w", np.arange(6, dtype=np.float32).reshape(2, 3)), ("b", np.zeros(2)), ("n", 3)]
    )
    nested = {"model": state, "opt": {"lr": 1e-3, "t": (1, "x")}, "s": {1, 2}}
    return [pickle.dumps(o, protocol=p) for o in (state, nested) for p in (0, 2, 4, 5)]


PICKLES = _seed_pickles()


def _loads_or_clean_error(data: bytes) -> None:
    try:
        restricted_loads(data, "fuzz.pdparams")
    except WeightsError as e:  # UnsafeWeightsError is a WeightsError too
        assert str(e).startswith("fuzz.pdparams: ")


@FAST
@given(st.binary(max_size=512))
def test_unpickle_random_bytes(data):
    _loads_or_clean_error(data)


@FAST
@given(
    st.sampled_from(range(len(PICKLES))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10**6),
)
def test_unpickle_mutated_state_dicts(idx, edits, cut):
    data = bytearray(PICKLES[idx])
    for pos, val in edits:
        data[pos % len(data)] = val
    _loads_or_clean_error(bytes(data[: max(1, cut % (len(data) + 1))]))


@FAST
@given(st.binary(max_size=300), st.sampled_from([".safetensors", ".pdparams"]))
def test_load_weights_random_files(tmp_path_factory, data, ext):
    p = tmp_path_factory.mktemp("fz") / f"w{ext}"
    p.write_bytes(data)
    try:
        out = load_weights(p)
    except WeightsError as e:
        # What a user sees (pprestore / tools print through ppRestore.errors): one line
        # naming the file. (str(e) itself may wrap, e.g. pickle's persistent-id message.)
        msg = cli_message(e)
        assert "\n" not in msg and p.name in msg, msg
        return
    assert isinstance(out, dict)


@FAST
@given(st.integers(0, 200), st.integers(0, 255), st.integers(0, 400))
def test_load_mutated_safetensors(tmp_path_factory, pos, val, cut):
    from safetensors.numpy import save

    blob = bytearray(save({"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.uint8)}))
    blob[pos % len(blob)] = val
    p = tmp_path_factory.mktemp("fz") / "w.safetensors"
    p.write_bytes(bytes(blob[: max(1, len(blob) - cut % len(blob))]))
    try:
        load_weights(p)
    except WeightsError:
        pass


# ---------------------------------------------------------------- configs


yaml_ish = st.text(
    alphabet=st.sampled_from(list("abcdefgmodeltypiersx_0123456789 :-[]{},.'\"\n\t&*!#|>%@`?~=e+")),
    max_size=200,
)


@FAST
@given(yaml_ish)
def test_config_random_yaml(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("cfg") / "c.yml"
    p.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(str(p))
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(cfg, dict)


@FAST
@given(st.text(max_size=120))
def test_config_random_unicode(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("cfg") / "c.yml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(str(p))
    except ConfigError as e:
        assert "\n" not in str(e), str(e)


@FAST
@given(st.binary(max_size=200))
def test_config_random_bytes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("cfg") / "c.yml"
    p.write_bytes(data)
    try:
        load_config(str(p))
    except ConfigError as e:
        assert "\n" not in str(e), str(e)


override = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(
            [
                "iters",
                "model.depth",
                "model",
                "train_dataset.transforms.0.size",
                "a.b",
                "batch_size",
                "model.type",
                "itres",
                "train_dataset.transforms.x",
                ".",
                "val.",
            ]
        ),  # fmt: skip
        st.text(max_size=30),
    ),
)

BASE_CFG = {
    "model": {"type": "DnCNN", "depth": 17},
    "iters": 10,
    "train_dataset": {"type": "Folder", "transforms": [{"type": "Crop", "size": 8}]},
}


@FAST
@given(st.lists(override, max_size=4))
def test_random_overrides(items):
    try:
        cfg = validate(apply_overrides(BASE_CFG, items))
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(cfg, dict)


@FAST
@given(st.text(max_size=80))
def test_parse_override_any_text(item):
    try:
        parts, _ = parse_override(item)
    except ConfigError:
        return
    assert parts and all(parts)


@FAST
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=3),
        ),  # fmt: skip
        max_size=4,
    )
)
def test_registry_build_random_kwargs(kwargs):
    reg = Registry("model")

    @reg.register
    class Net:
        def __init__(
            self, depth: int = 3, act: str = "relu", scale: float = 1.0, flag: bool = False
        ):
            self.depth = depth

    try:
        reg.build({"type": "Net", **kwargs})
    except RegistryError as e:
        assert "\n" not in str(e)
