"""The embedded database's journal and page cache: WAL, synchronous by setting, a WAL file that
stays bounded however many writes come, a 16 MiB page cache (SPEC section 6: integrity always, durability by setting)."""

from __future__ import annotations

import os
from pathlib import Path

from fleche.storage.embedded import PAGE_CACHE_KIB, WAL_PAGES, CallEmbedded, ValueEmbedded


def _pragma(storage: ValueEmbedded, name: str) -> object:
    return storage._db.connection().execute(f"PRAGMA {name}").fetchone()[0]


def test_the_journal_is_a_bounded_wal_synchronous_by_setting(tmp_path: Path) -> None:
    normal = ValueEmbedded(tmp_path / "a")
    durable = ValueEmbedded(tmp_path / "b", durable=True)
    for storage in (normal, durable):
        storage.save("a first write")  # a durable database turns FULL at its first write
    assert _pragma(normal, "journal_mode") == "wal"
    assert (_pragma(normal, "synchronous"), _pragma(durable, "synchronous")) == (1, 2)
    assert _pragma(normal, "wal_autocheckpoint") == WAL_PAGES
    assert _pragma(normal, "journal_size_limit") >= WAL_PAGES * 4096
    # every connection (one per thread) caches up to 16 MiB of pages, not SQLite's 2 MiB
    assert _pragma(normal, "cache_size") == -PAGE_CACHE_KIB == -16 * 1024


def test_the_wal_file_stays_bounded_under_many_commits(tmp_path: Path) -> None:
    values = ValueEmbedded(tmp_path)
    CallEmbedded(tmp_path)  # the calls share the database, as in the embedded cache
    limit = _pragma(values, "journal_size_limit")
    wal = tmp_path / "fleche.db-wal"
    largest = 0
    for i in range(int(WAL_PAGES * 1.5)):  # one commit of at least one page each
        values.save(os.urandom(3000) + i.to_bytes(4, "big"))
        if i % 200 == 0:
            largest = max(largest, wal.stat().st_size)
    largest = max(largest, wal.stat().st_size)
    assert 0 < largest <= limit
    assert len(list(values.list())) == int(WAL_PAGES * 1.5)
