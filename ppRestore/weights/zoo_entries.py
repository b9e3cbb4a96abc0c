"""The model zoo's table: zoo name -> weights entry, declared by each model file.

Split out of :mod:`ppRestore.weights.zoo` (which re-exports :data:`ZOO` and resolves
``--model_path`` names through it).
"""

from __future__ import annotations

from typing import Dict

__all__ = ["ZOO"]


class _Zoo(dict):
    """name -> entry, filled on first use from the ``weights`` each model file declares
    (``registry.register_arch``), so adding a model never means editing this file.

    An entry holds ``file`` (shipped in ``pretrained/``) or ``url`` (downloaded once),
    and optionally ``sha256``, ``config``, ``model_kwargs``, ``size_mb``; ``arch`` is
    added here.
    """

    _filled = False

    def _fill(self) -> None:
        if self._filled:
            return
        self._filled = True
        from ..registry import ARCHS

        for arch_name in ARCHS.keys():
            for name, entry in ARCHS.get(arch_name).weights.items():
                dict.setdefault(self, name, {**dict(entry), "arch": arch_name})

    def __contains__(self, key: object) -> bool:
        self._fill()
        return dict.__contains__(self, key)

    def __getitem__(self, key: str) -> Dict[str, str]:
        self._fill()
        return dict.__getitem__(self, key)

    def __iter__(self):
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def get(self, key, default=None):  # noqa: D102
        self._fill()
        return dict.get(self, key, default)

    def items(self):  # noqa: D102
        self._fill()
        return dict.items(self)

    def keys(self):  # noqa: D102
        self._fill()
        return dict.keys(self)

    def values(self):  # noqa: D102
        self._fill()
        return dict.values(self)


ZOO: Dict[str, Dict[str, str]] = _Zoo()
