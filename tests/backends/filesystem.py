"""Harness for the filesystem storage (``file://``): a fresh directory per storage."""

from __future__ import annotations

import os
from typing import Any

from fleche.caches import Cache
from fleche.testing import Harness

HEX = frozenset("0123456789abcdef")


class FilesystemHarness(Harness):
    name = "filesystem"

    def __init__(self, tmp_path: Any) -> None:
        super().__init__(tmp_path)
        self.made = 0

    def directory(self) -> Any:
        """A directory no other storage of this test uses."""
        self.made += 1
        return self.tmp_path / f"files-{self.made}"

    def url(self, **options: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"file://{self.directory()}" + (f"?{query}" if query else "")

    def value_storage(self, **options: Any) -> Any:
        from fleche.storage.filesystem import ValueFiles

        return ValueFiles(self.directory(), **options)

    def call_storage(self, **options: Any) -> Any:
        from fleche.storage.filesystem import CallFiles

        return CallFiles(self.directory(), **options)

    def cache(self, **options: Any) -> Cache:
        from fleche.storage.filesystem import cache_from_url

        return cache_from_url(self.url(**options))

    def raw_keys(self, storage: Any) -> set[str]:
        """Entry files under the storage's area, found with os.walk (not through fleche)."""
        found = set()
        for _, _, names in os.walk(storage._dir):
            found.update(n for n in names if len(n) == 32 and set(n) <= HEX)
        return found


HARNESS = FilesystemHarness
