"""Name -> class registries for everything a YAML config can build by ``type:``.

Modelled on BasicSR's registry: a duplicate name is an error (two classes silently
shadowing each other is a bug), and an unknown name is answered with the closest known
ones. Registries fill lazily: the modules listed in ``lazy_modules`` (and every module
found in ``packages``, e.g. each file of ``ppRestore/models/``) are imported on the first
lookup, so ``import ppRestore`` stays cheap and one broken optional module cannot break
the CLI. Adding a model is adding a file: nothing here lists it.

Each model file also declares its *facts* at registration with :func:`register_arch`
(as timm's ``default_cfgs``): the converter name, the constructor defaults official
checkpoints need, the foreign sources it converts from (each with a detector), and its
zoo weight entries. ``weights/convert.py`` and ``weights/zoo.py`` read them from
:data:`ARCHS`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Tuple, TypeVar

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

    def __init__(
        self, name: str, lazy_modules: Iterable[str] = (), packages: Iterable[str] = ()
    ) -> None:
        self.name = name
        self._items: Dict[str, Any] = {}
        self._lazy_modules = list(lazy_modules)
        self._packages = list(packages)
        self._loaded = False
        self._import_errors: Dict[str, str] = {}

    def register(self, obj: T | None = None, *, name: str | None = None) -> Any:
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
        for mod in self._lazy_modules + discover_modules(self._packages):
            try:
                importlib.import_module(mod)
            except ImportError as e:
                # Keep going so one broken module does not hide every other type;
                # the error is reported if the user asks for a name it would define.
                self._import_errors[mod] = f"{type(e).__name__}: {e}"

    def get(self, key: str) -> Any:
        """Return the object registered as ``key`` or raise with suggestions."""
        if not isinstance(key, str):
            raise RegistryError(
                f"a {self.name} 'type:' must be a class name, got {type(key).__name__} ({key!r:.60})"
            )
        self._load()
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, self._items, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        # Same line (a CLI prints one line per error): which optional modules are broken.
        broken = "".join(
            f"; module {m} failed to import ({err})" for m, err in self._import_errors.items()
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


def _type_problem(value: Any, annotation: Any) -> str | None:
    """What ``value`` should be if it does not fit ``annotation``, else None.

    Only plain annotations are checked (int, float, bool, str, list/tuple/sequence,
    dict, and Optional/Union of those); anything fancier is trusted to the constructor.
    """
    import collections.abc
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":  # X | Y on 3.10+
        args = typing.get_args(annotation)
        problems = [_type_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        if any(p == "" for p in problems):  # an argument we cannot judge
            return None
        return " or ".join(problems)
    if annotation is type(None):
        return None if value is None else "null"
    base = origin or annotation
    if base is bool:
        return None if isinstance(value, bool) else "true/false"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if base is str:
        return None if isinstance(value, str) else "a string"
    if base in (list, tuple, collections.abc.Sequence):
        return None if isinstance(value, (list, tuple)) else "a list"
    if base in (dict, collections.abc.Mapping):
        return None if isinstance(value, dict) else "a mapping"
    return ""  # not judged


def _annotations(fn: Callable[..., Any]) -> Dict[str, Any]:
    import inspect
    import typing

    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable string annotations: skip type checks
        return {}


def build_callable(fn: Callable[..., T], kwargs: Dict[str, Any], what: str) -> T:
    """Call ``fn(**kwargs)`` after checking the keywords against its signature.

    An unknown keyword names the closest valid one; a missing required one is named; a
    value that does not fit a plain type annotation (``int``, ``float``, ``bool``,
    ``str``, lists, ``Optional[...]``) is refused before the constructor runs, so
    ``n_feat: "64"`` in a YAML file is one clear line, not a traceback from deep inside.
    """
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(**kwargs)
    params = sig.parameters
    valid = [
        n for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]  # fmt: skip
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for k in kwargs:
            if k not in params or params[k].kind is inspect.Parameter.VAR_POSITIONAL:
                close = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise RegistryError(
                    f"{what}: unknown argument {k!r}{hint}; valid: {', '.join(valid)}"
                )
    missing = [
        n for n, p in params.items()
        if n != "self" and p.default is p.empty and n not in kwargs
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]  # fmt: skip
    if missing:
        raise RegistryError(f"{what}: missing required argument(s): {', '.join(missing)}")
    hints = _annotations(fn)
    for k, v in kwargs.items():
        if k not in hints or k not in params:
            continue
        if v is None and params[k].default is None:
            continue  # ``x: int = None`` is a common sloppy Optional
        want = _type_problem(v, hints[k])
        if want:
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise RegistryError(
                f"{what}: argument '{k}' must be {want}, got {type(v).__name__} ({shown})"
            )
    return fn(**kwargs)


def discover_modules(packages: Iterable[str]) -> list:
    """Dotted names of the plain modules (not sub-packages, not ``_private``) directly
    inside each package, sorted: the model files, found without a hand-kept list."""
    found = []
    for pkg in packages:
        try:
            path = importlib.import_module(pkg).__path__
        except ImportError:
            continue
        found += sorted(
            f"{pkg}.{m.name}"
            for m in pkgutil.iter_modules(path)
            if not m.ispkg and not m.name.startswith("_")
        )
    return found


# One registry per kind of buildable thing. Each model/loss/dataset module registers
# itself on import. Models are discovered (every module in ppRestore/models/); the
# other kinds list the few modules that hold them.
MODEL_PACKAGES = ["ppRestore.models"]
MODELS = Registry("model", packages=MODEL_PACKAGES)
DATASETS = Registry(
    "dataset", ["ppRestore.data.datasets", "ppRestore.data.documents", "ppRestore.data.raw"]
)
DEGRADATIONS = Registry("degradation", ["ppRestore.data.degradations"])
TRANSFORMS = Registry("transform", ["ppRestore.data.transforms"])
LOSSES = Registry("loss", ["ppRestore.losses"])
# Foreign-checkpoint remap functions, keyed "<arch>" or "<arch>:<source>"; they live
# next to their model (timm's checkpoint_filter_fn) and register on import (directly or
# through register_arch).
CONVERTERS = Registry("converter", packages=MODEL_PACKAGES)


# --------------------------------------------------------------------------- model facts
@dataclass(frozen=True)
class Source:
    """A foreign checkpoint family an architecture converts from.

    Args:
        name: the ``--source`` spelling (``official``, ``saoyan``, ``kair``, ``mge``...).
        convert: ``fn(state, model) -> state`` remapping names/layouts onto the model.
        detect: ``fn(state, container) -> bool``: does this flat state dict (read from a
            file whose container is ``"torch-zip"``, ``"torch-legacy"``, ``"pickle"``,
            ``"npz"`` or ``"safetensors"``) come from this family? None: never guessed.
        implies: constructor arguments the family needs (KAIR DnCNN: ``bn: False``).
        url: where the family's checkpoints come from (for ``--help`` and docs).
    """

    name: str
    convert: Callable[..., Dict[str, Any]]
    detect: Callable[[Mapping[str, Any], str], bool] | None = None
    implies: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""


@dataclass(frozen=True)
class Arch:
    """Everything the tools need to know about one architecture, declared in its file.

    Args:
        name: the converter name (``--arch``), e.g. ``dncnn``.
        model: the ``MODELS`` type it builds, e.g. ``DnCNN``.
        defaults: constructor arguments the official checkpoints were trained with.
        sources: the foreign families it converts from; the first is the default.
        weights: zoo entries ``name -> {url | file, sha256, config, source,
            model_kwargs, size_mb, note}`` (timm's ``default_cfgs``).
    """

    name: str
    model: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    sources: Tuple[Source, ...] = ()
    weights: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise RegistryError(f"arch '{self.name}' has no source '{name}' (sources: {known})")


ARCHS = Registry("architecture", packages=MODEL_PACKAGES)


def register_arch(arch: Arch) -> Arch:
    """Declare ``arch``'s facts (called at the bottom of its model file).

    Registers the :class:`Arch` in :data:`ARCHS` and each source's converter in
    :data:`CONVERTERS` as ``"<arch>:<source>"`` (the first also as ``"<arch>"``).
    """
    ARCHS.register(arch, name=arch.name)
    for i, src in enumerate(arch.sources):
        CONVERTERS.register(src.convert, name=f"{arch.name}:{src.name}")
        if i == 0 and arch.name not in CONVERTERS._items:
            CONVERTERS.register(src.convert, name=arch.name)
    return arch


def arch_for_model(model_type: str) -> Arch | None:
    """The :class:`Arch` whose ``model`` is ``model_type`` (first registered), or None."""
    for name in ARCHS.keys():
        a = ARCHS.get(name)
        if a.model == model_type:
            return a
    return None
