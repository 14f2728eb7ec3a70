"""Value rules for config dataclasses, checked before any work starts.

Types and unknown keys are OmegaConf's job; this module checks values. A config class declares its rules in a
``CHECKS`` class variable (field name -> :class:`Rule`); :func:`check_config` walks a job's config tree (nested
dataclasses included) and raises :class:`ConfigValueError` naming the dotted field, its value and what is
allowed, e.g. ``steps=-5: must be >= 1``. ``--help`` prints the same rules beside each field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any


class ConfigValueError(ValueError):
    """A config value outside what its field allows."""


class Rule:
    """What a field allows: ``text`` for people (``>= 1``), ``test`` for values (None always passes: optional)."""

    def __init__(self, text: str, test: Callable[[Any], bool]):
        self.text = text
        self.test = test

    def __call__(self, value: Any) -> bool:
        return value is None or bool(self.test(value))

    def __repr__(self) -> str:
        return f"Rule({self.text!r})"


def at_least(low: float) -> Rule:
    """Values >= ``low``."""
    return Rule(f">= {low}", lambda v: v >= low)


def positive() -> Rule:
    """Values > 0."""
    return Rule("> 0", lambda v: v > 0)


def between(low: float, high: float, high_inclusive: bool = True) -> Rule:
    """Values in [low, high] (or [low, high) when not ``high_inclusive``)."""
    bracket = "]" if high_inclusive else ")"
    return Rule(f"in [{low}, {high}{bracket}", lambda v: low <= v <= high if high_inclusive else low <= v < high)


def one_of(*choices: Any) -> Rule:
    """One of ``choices``."""
    return Rule("one of " + ", ".join(map(str, choices)), lambda v: v in choices)


def non_empty() -> Rule:
    """A list with at least one element."""
    return Rule("a non-empty list", lambda v: len(v) > 0)


def check_config(config: Any, prefix: str = "") -> None:
    """Raises ConfigValueError for the first field of ``config`` (or of a nested config) its rules refuse."""
    if not is_dataclass(config):
        return
    rules = getattr(type(config), "CHECKS", {})
    for field in fields(config):
        value = getattr(config, field.name)
        rule = rules.get(field.name)
        if rule is not None and not rule(value):
            raise ConfigValueError(f"{prefix}{field.name}={value!r}: must be {rule.text}")
        if is_dataclass(value):
            check_config(value, f"{prefix}{field.name}.")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (the servers' ``host`` check: `embodied label`, `serve`)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
