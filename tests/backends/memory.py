"""Harness for the in-memory storage."""

from __future__ import annotations

from fleche.caches import Cache
from fleche.storage.memory import CallMemory, ValueMemory
from fleche.testing import Harness


class MemoryHarness(Harness):
    name = "memory"

    def value_storage(self) -> ValueMemory:
        return ValueMemory()

    def call_storage(self) -> CallMemory:
        return CallMemory()

    def cache(self) -> Cache:
        return Cache(self.value_storage(), self.call_storage(), url=None)

    def raw_keys(self, storage) -> set[str]:
        return set(storage._data)


HARNESS = MemoryHarness
