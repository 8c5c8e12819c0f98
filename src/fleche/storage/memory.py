"""In-process storage: a dict of live objects (values are returned as stored, like ``lru_cache``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..digest import Digest
from .base import CallMixin, StorageBackend, ValueMixin
from .locking import PerKeyLockMixin

__all__ = ["CallMemory", "MemoryBackend", "ValueMemory"]


class MemoryBackend(StorageBackend):
    """A dict. With ``copy=True`` values are stored and returned as deep copies."""

    def __init__(self, copy: bool = False) -> None:
        self._data: dict[Digest, Any] = {}
        self.copy = copy

    def _put(self, key: Digest, value: Any) -> None:
        self._data[key] = copy.deepcopy(value) if self.copy else value

    def _get(self, key: Digest) -> Any:
        value = self._data[key]
        return copy.deepcopy(value) if self.copy else value

    def _contains(self, key: Digest) -> bool:
        return key in self._data

    def _evict(self, key: Digest) -> None:
        del self._data[key]

    def list(self) -> Iterator[Digest]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.copy == other.copy and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def to_url(self) -> str:
        return "memory://?copy=1" if self.copy else "memory://"


class ValueMemory(ValueMixin, PerKeyLockMixin, MemoryBackend):
    """Values in a dict."""


class CallMemory(CallMixin, PerKeyLockMixin, MemoryBackend):
    """Call records in a dict."""

    def _joint_writer(self, values: Any) -> Callable[..., Exception | None] | None:
        """A miss's values and record put straight into the dicts when ``values`` is a plain
        :class:`ValueMemory` (see ``caches.save_call``): the caller holds the key's WRITE
        context, and a value's own lock would guard nothing that one dict assignment does not
        (a memory miss took six lock contexts, 170 Python calls). Values are copied (``copy``)
        before anything is stored, so a result that cannot be leaves nothing behind."""
        if (
            type(values) is not ValueMemory
            or type(self)._put is not MemoryBackend._put
            or type(self).save is not CallMixin.save
        ):
            return None  # a subclass that changes how entries are written keeps its own path
        from ..caches import serialise_values  # here: caches imports this package

        data, put = values._data, self._put

        def stored(key: Digest, value: Any) -> Any:
            return copy.deepcopy(value) if values.copy else value

        def write(key: Digest, record: Any, arguments: Sequence[tuple[Digest, Any]],
                  result_key: Digest, result: Any) -> Exception | None:  # fmt: skip
            kept = serialise_values(stored, arguments, result_key, result)
            if isinstance(kept, Exception):
                return kept
            data.update(kept)
            put(key, record)
            return None

        return write
