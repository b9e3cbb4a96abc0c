"""Write torch checkpoint files without torch, for tests and fixture scripts.

``write_torch_zip`` produces the ``torch.save`` zip format (torch >= 1.6) and
``write_torch_legacy`` the pre-1.6 format, both for nested dicts of numpy float32/int64
arrays, numbers and strings. The official CMFNet release files are ``torch.save`` zips of
``{'epoch', 'state_dict': {'module.<key>': tensor}, 'optimizer': Adam's state_dict}``;
:func:`official_cmfnet_checkpoint` builds that structure around a state dict.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Any, Dict

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class _G:
    """A global reference written as GLOBAL, never imported here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *a: Any) -> None:  # pickle wants reduce functions callable
        raise TypeError


def _pickler(buf: io.BytesIO, storages: list, legacy: bool) -> pickle._Pickler:
    class _P(pickle._Pickler):  # the pure-Python pickler accepts a dispatch entry
        dispatch = dict(pickle._Pickler.dispatch)

        def save_g(self, g: _G) -> None:
            self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode())
            self.memoize(g)

        dispatch[_G] = save_g

        def persistent_id(self, o: Any) -> Any:
            if isinstance(o, tuple) and len(o) == 3 and o[0] == "__storage__":
                pid = ("storage", _G("torch", o[2]), o[1], "cpu", storages[int(o[1])].size)
                return pid + (None,) if legacy else pid
            return None

        def reducer_override(self, o: Any) -> Any:
            if not isinstance(o, np.ndarray):
                return NotImplemented
            a = np.ascontiguousarray(o)
            storages.append(a.reshape(-1))
            key = str(len(storages) - 1)
            stride = tuple(s // a.itemsize for s in a.strides) if a.ndim else ()
            ref = ("__storage__", key, _STORAGE[a.dtype])
            return (
                _G("torch._utils", "_rebuild_tensor_v2"),
                (ref, 0, tuple(o.shape), stride, False, OrderedDict()),
            )

    return _P(buf, protocol=2)


def write_torch_zip(obj: Any, path: str, prefix: str = "archive") -> None:
    """Write ``obj`` as ``torch.save`` does since 1.6 (stored zip, ``data.pkl`` +
    ``data/<key>`` + ``version`` + ``byteorder``)."""
    storages: list = []
    buf = io.BytesIO()
    _pickler(buf, storages, legacy=False).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        z.writestr(f"{prefix}/byteorder", "little")
        for i, a in enumerate(storages):
            z.writestr(f"{prefix}/data/{i}", a.astype(a.dtype.newbyteorder("<")).tobytes())
        z.writestr(f"{prefix}/version", "3\n")


def write_torch_legacy(obj: Any, path: str) -> None:
    """Write ``obj`` in the legacy (pre-1.6) torch format (SaoYan's ``net.pth``)."""
    storages: list = []

    buf = io.BytesIO()
    for head in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(head, buf, protocol=2)
    _pickler(buf, storages, legacy=True).dump(obj)
    pickle.dump([str(i) for i in range(len(storages))], buf, protocol=2)
    for a in storages:
        buf.write(np.int64(a.size).astype("<i8").tobytes())
        buf.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def official_cmfnet_checkpoint(state: Dict[str, np.ndarray], epoch: int = 150) -> Dict[str, Any]:
    """Wrap ``state`` as the official CMFNet ``train.py`` saves it: DataParallel's
    ``module.`` keys and Adam's state (two moments per parameter, so ~3x the weights)."""
    names = list(state)
    rng = np.random.default_rng(0)
    adam = {
        i: {
            "step": 1000,
            "exp_avg": rng.standard_normal(state[n].shape).astype(np.float32) * 1e-4,
            "exp_avg_sq": np.abs(rng.standard_normal(state[n].shape)).astype(np.float32) * 1e-8,
        }
        for i, n in enumerate(names)
    }
    group = {"lr": 1e-6, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False}
    sd = OrderedDict((f"module.{n}", state[n]) for n in names)
    # as model.state_dict() does: pickled as a BUILD state on the OrderedDict
    sd._metadata = OrderedDict([("", {"version": 1}), ("module", {"version": 1})])
    return {
        "epoch": epoch,
        "state_dict": sd,
        "optimizer": {"state": adam, "param_groups": [dict(group, params=list(range(len(names))))]},
    }
