"""Harness for the embedded default (``embedded://``, a plain path): a fresh directory per storage."""

from __future__ import annotations

import sqlite3
from typing import Any

from fleche.caches import Cache
from fleche.testing import Harness


class EmbeddedHarness(Harness):
    name = "embedded"

    def __init__(self, tmp_path: Any) -> None:
        super().__init__(tmp_path)
        self.made = 0

    def directory(self) -> Any:
        """A directory no other storage of this test uses."""
        self.made += 1
        return self.tmp_path / f"embedded-{self.made}"

    def url(self, **options: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"embedded://{self.directory()}" + (f"?{query}" if query else "")

    def value_storage(self, **options: Any) -> Any:
        from fleche.storage.embedded import ValueEmbedded

        return ValueEmbedded(self.directory(), **options)

    def call_storage(self, **options: Any) -> Any:
        from fleche.storage.embedded import CallEmbedded

        return CallEmbedded(self.directory(), **options)

    def cache(self, **options: Any) -> Cache:
        from fleche.storage.embedded import cache_from_url

        return cache_from_url(self.url(**options))

    def raw_keys(self, storage: Any) -> set[str]:
        """Keys in the storage's table, read with a connection of our own (not through fleche)."""
        with sqlite3.connect(f"{storage.root}/fleche.db") as conn:
            rows = conn.execute(f"SELECT key FROM {storage._table}").fetchall()
        return {blob.hex() for (blob,) in rows}


HARNESS = EmbeddedHarness
