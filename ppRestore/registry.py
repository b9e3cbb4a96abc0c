"""Name -> class registries for everything a YAML config can build by ``type:``.

Modelled on BasicSR's registry: a duplicate name is an error (two classes silently
shadowing each other is a bug), and an unknown name is answered with the closest known
ones. Registries fill lazily: the modules listed in ``lazy_modules`` are imported on
the first lookup, so ``import ppRestore`` stays cheap and one broken optional module
cannot break the CLI.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Dict, Iterable, Optional, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for unknown or duplicate registry names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class Registry:
    """A named mapping from ``type:`` strings to callables.

    Args:
        name: what the registry holds (used in error messages), e.g. ``"model"``.
        lazy_modules: dotted module names imported on first lookup to populate it.
    """

    def __init__(self, name: str, lazy_modules: Iterable[str] = ()) -> None:
        self.name = name
        self._items: Dict[str, Any] = {}
        self._lazy_modules = list(lazy_modules)
        self._loaded = False
        self._import_errors: Dict[str, str] = {}

    def register(self, obj: Optional[T] = None, *, name: Optional[str] = None) -> Any:
        """Register ``obj`` (usable as ``@REG.register`` or ``@REG.register(name="X")``)."""

        def _do(o: T) -> T:
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                raise RegistryError(
                    f"{self.name} '{key}' is already registered by "
                    f"{self._items[key].__module__}; names must be unique"
                )
            self._items[key] = o
            return o

        return _do if obj is None else _do(obj)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._import_errors: Dict[str, str] = {}
        for mod in self._lazy_modules:
            try:
                importlib.import_module(mod)
            except ImportError as e:
                # Keep going so one broken module does not hide every other type;
                # the error is reported if the user asks for a name it would define.
                self._import_errors[mod] = f"{type(e).__name__}: {e}"

    def get(self, key: str) -> Any:
        """Return the object registered as ``key`` or raise with suggestions."""
        self._load()
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, self._items, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        broken = "".join(
            f"\n  (module {m} failed to import: {err})" for m, err in self._import_errors.items()
        )
        raise RegistryError(
            f"unknown {self.name} type '{key}'.{hint} Known: {', '.join(sorted(self._items))}"
            + broken
        )

    def __contains__(self, key: str) -> bool:
        self._load()
        return key in self._items

    def keys(self) -> list:
        self._load()
        return sorted(self._items)

    def build(self, cfg: Dict[str, Any], **extra: Any) -> Any:
        """Instantiate ``cfg['type']`` with the remaining keys as keyword arguments."""
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise RegistryError(f"a {self.name} config needs a 'type:' key, got {cfg!r}")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        kwargs.update(extra)
        return build_callable(self.get(cfg["type"]), kwargs, f"{self.name} {cfg['type']}")


def build_callable(fn: Callable[..., T], kwargs: Dict[str, Any], what: str) -> T:
    """Call ``fn(**kwargs)``; an unknown keyword becomes an error naming the closest valid one."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(**kwargs)
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if n != "self"]
        for k in kwargs:
            if k not in params:
                close = difflib.get_close_matches(k, valid, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise RegistryError(
                    f"{what}: unknown argument '{k}'{hint}; valid: {', '.join(valid)}"
                )
    return fn(**kwargs)


# One registry per kind of buildable thing. Each model/loss/dataset module registers
# itself on import; the lists below are the modules that hold them.
MODELS = Registry(
    "model",
    [
        "ppRestore.models.cmfnet",
        "ppRestore.models.pmrnet",
        "ppRestore.models.srcnn",
        "ppRestore.models.dncnn",
        "ppRestore.models.unet",
        "ppRestore.models.dmcnn",
    ],
)
DATASETS = Registry(
    "dataset", ["ppRestore.data.datasets", "ppRestore.data.documents", "ppRestore.data.raw"]
)
DEGRADATIONS = Registry("degradation", ["ppRestore.data.degradations"])
TRANSFORMS = Registry("transform", ["ppRestore.data.transforms"])
LOSSES = Registry("loss", ["ppRestore.losses"])
# Foreign-checkpoint remap functions, keyed "<arch>" or "<arch>:<source>"; they live
# next to their model (timm's checkpoint_filter_fn) and register on import.
CONVERTERS = Registry("converter", MODELS._lazy_modules)
