"""One small registry used by every kind of component (envs, policies, encoders)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a short name (also the YAML stem and the CLI value) to a component and its config class.

    Users register their own components with the same decorator, without editing the package:

        @ENVS.register("my_env", config=MyEnvConfig)
        class MyEnv(gymnasium.Env): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, tuple[T, type | None]] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name][0] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name][0]!r}")
            self._entries[name] = (obj, config)
            return obj

        return decorate

    def get(self, name: str) -> T:
        return self._entry(name)[0]

    def config_class(self, name: str) -> type | None:
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
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _entry(self, name: str) -> tuple[T, type | None]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}") from None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
