"""Test support for storages, importable by third-party backends.

``Harness`` describes how to make fresh storages of one kind; ``StorageConformance`` (in
``fleche.testing.conformance``) is the one suite every storage passes. A third-party backend
subclasses both and provides a ``harness`` fixture.
"""

from __future__ import annotations

from typing import Any

from ..caches import BaseCache, Cache

__all__ = ["Harness"]


class Harness:
    """How the suites make fresh, empty storages and caches of one kind (override what applies)."""

    name = "base"

    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path

    def check_available(self) -> None:
        """Skip or fail (see ``tests/backends``) when the backend's server is not reachable."""

    def value_storage(self) -> Any:
        """A fresh, empty value storage."""
        raise NotImplementedError

    def call_storage(self) -> Any:
        """A fresh, empty call storage."""
        raise NotImplementedError

    def cache(self) -> BaseCache:
        """A fresh, empty cache joining this kind's value and call storages."""
        return Cache(self.value_storage(), self.call_storage())

    def raw_keys(self, storage: Any) -> set[str]:
        """Keys physically present in ``storage``, read bypassing its API."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and drop what the harness created."""
