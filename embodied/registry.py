"""One small registry used by every kind of component (envs, experts, policies, encoders, objectives, tasks), and
the plugin loader that lets users add components without editing the package."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import is_dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PLUGIN_GROUP = "embodied.plugins"  # entry-point group the `embodied` command loads before composing configs


class Registry(Generic[T]):
    """Maps a short name (also the YAML stem and the CLI value) to a component and its config class.

    Users register their own components with the same decorator, without editing the package:

        @ENVS.register("my_env", config=MyEnvConfig)
        class MyEnv(embodied.envs.base.Env): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[T, type | None]] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[T], T]:
        """Decorator (or call with the object) registering ``name``; re-registering the same object is a no-op,
        another object under a taken name is an error."""

        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name][0] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name][0]!r}")
            self._entries[name] = (obj, config)
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The component registered as ``name`` (KeyError listing the registered names otherwise)."""
        return self._entry(name)[0]

    def config_class(self, name: str) -> type | None:
        """The config dataclass ``name`` was registered with (None: it takes no config)."""
        return self._entry(name)[1]

    def config_from(self, cfg: Any) -> Any:
        """Validates a config (dict, DictConfig or dataclass) naming a registered component with ``name`` and
        returns its dataclass; an unknown key or a wrong type raises with the key's name (OmegaConf's check).
        """
        if is_dataclass(cfg):
            return cfg
        from omegaconf import OmegaConf

        name = cfg["name"] if cfg is not None and "name" in cfg else None
        if name is None:
            raise ValueError(f"{self.kind} config needs a 'name' field, one of: {', '.join(self.names())}")
        schema = self.config_class(name)
        if schema is None:
            return cfg
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), cfg))

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, component) pairs, sorted by name."""
        return ((name, self._entries[name][0]) for name in self.names())

    def __iter__(self) -> Iterator[str]:
        """Registered names, sorted (like iterating a dict)."""
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, name: str) -> tuple[T, type | None]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'} (components of your "
                f"own load from an installed package's '{PLUGIN_GROUP}' entry point, or with plugins=[module])"
            ) from None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


_loaded: dict[str, Any] = {}


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Imports every plugin: the entry points of group ``embodied.plugins`` (installed packages) and the named
    ``modules`` (a job's ``plugins: [...]`` key). Importing a plugin registers its components (``POLICIES.register``,
    ``ENVS.register``, ...); an entry point that names a function is called once. Returns the config search-path
    entries the plugins declare (a module-level ``CONFIG_PATH``: a folder, or ``pkg://package.configs``), so
    ``policy=<plugin policy>`` finds the plugin's YAML. Loading twice does nothing more.
    """
    import importlib
    from importlib.metadata import entry_points

    found: list[tuple[str, Callable[[], Any]]] = [
        (f"entry point {ep.name} = {ep.value}", ep.load) for ep in entry_points(group=PLUGIN_GROUP)
    ]
    found += [(f"module {name}", lambda name=name: importlib.import_module(name)) for name in modules]
    paths: list[str] = []
    for label, load in found:
        if label not in _loaded:
            try:
                loaded = load()
            except Exception as error:
                raise ImportError(f"embodied plugin {label} failed to load: {type(error).__name__}: {error}") from error
            if callable(loaded) and not isinstance(loaded, type):
                loaded = loaded() or loaded
            _loaded[label] = loaded
        config_path = getattr(_module_of(_loaded[label]), "CONFIG_PATH", None)
        if config_path and config_path not in paths:
            paths.append(str(config_path))
    return paths


def _module_of(obj: Any) -> Any:
    import inspect
    import sys

    if inspect.ismodule(obj):
        return obj
    return sys.modules.get(getattr(obj, "__module__", ""), obj)
