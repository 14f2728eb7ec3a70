"""Errors of the episode store."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, locked, incompatible)."""


class StoreCorruptError(StoreError):
    """A store whose files contradict its commit record: truncated, damaged or half-written."""


class StoreLockedError(StoreError):
    """Another process is writing to the store."""
