"""Storage that discards everything: every load misses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..digest import Digest
from .base import CallMixin, StorageBackend, ValueMixin

__all__ = ["CallVoid", "ValueVoid", "VoidBackend"]


class VoidBackend(StorageBackend):
    """Stores nothing; ``get`` always raises ``KeyError``."""

    def _put(self, key: Digest, value: Any) -> None:
        pass

    def _get(self, key: Digest) -> Any:
        raise KeyError(key)

    def _contains(self, key: Digest) -> bool:
        return False

    def _evict(self, key: Digest) -> None:
        raise KeyError(key)

    def list(self) -> Iterator[Digest]:
        return iter(())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = object.__hash__

    def to_url(self) -> str:
        return "void://"


class ValueVoid(ValueMixin, VoidBackend):
    """Values that are never kept."""


class CallVoid(CallMixin, VoidBackend):
    """Call records that are never kept."""
