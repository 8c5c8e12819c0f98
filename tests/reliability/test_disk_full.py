"""Disk full and I/O errors while saving.

Files (filesystem and embedded default, each plain and ``durable``): ``ENOSPC`` and ``EIO`` are
raised at write step 1, 2, 3, ... of a save through the write seam (``_files.FileOps``: open,
write, header write, fsync, close, rename, directory fsync) until a save no longer reaches the
failing step, both with the checksum computed before the write and on a thread while writing.
Count: every step of a new entry and of a rerun over an old entry, per errno, per backend and
durability (CI and stress alike: the steps are what is counted).

SQLite (embedded default and ``sqlite://``): ``PRAGMA max_page_count`` caps the database at its
size, then entries are saved until one fails. Count: 1 cap in CI, 20 under stress.

Pass rule: the decorated call returns what it computed (a failed store is an
``UnstorableResultWarning``, never an exception); the store holds the old entry or the complete new
one (a new key: nothing or the complete entry), never a corrupt one, and no temp file is left; once
the disk has room again, a save works and is read back.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import fleche
from fleche import fleche as cached
from fleche.errors import CorruptEntryWarning, FlecheWarning, UnstorableResultWarning
from fleche.storage import _files
from fleche.storage._files import OPS, FileOps

from ..backends import HARNESSES
from .common import count, record

generation = [0]


@cached
def entry(i: int) -> bytes:
    """64 KiB, over the embedded default's inline threshold: a file of its own there too."""
    return bytes([i % 251, generation[0] % 251]) * (32 * 1024)


def value(i: int, gen: int) -> bytes:
    return bytes([i % 251, gen % 251]) * (32 * 1024)


class FailAt(FileOps):
    """File operations that raise ``OSError(code)`` at step ``step`` (counting every operation)."""

    def __init__(self, step: int, code: int) -> None:
        self.step, self.code, self.done, self.fired = step, code, 0, ""

    def _tick(self, name: str) -> None:
        self.done += 1
        if self.done == self.step:
            self.fired = name
            raise OSError(self.code, os.strerror(self.code))

    def open_temp(self, path: str, mode: int | None) -> tuple[int, str]:
        self._tick("open_temp")
        return super().open_temp(path, mode)

    def preallocate(self, fd: int, size: int) -> None:
        self._tick("preallocate")
        super().preallocate(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        self._tick("write")
        super().write(fd, data)

    def write_at(self, fd: int, data: bytes, offset: int) -> None:
        self._tick("write_at")
        super().write_at(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._tick("fsync")
        super().fsync(fd)

    def close(self, fd: int) -> None:
        self._tick("close")
        super().close(fd)

    def replace(self, source: str, target: str) -> None:
        self._tick("replace")
        super().replace(source, target)

    def fsync_dir(self, directory: str) -> None:
        self._tick("fsync_dir")
        super().fsync_dir(directory)


def stored(i: int) -> Any:
    """What the store holds for ``entry(i)``: its value, or None; a corrupt entry fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        try:
            return entry.load(i)
        except KeyError:
            return None


def call_under(ops: FileOps, store: Any, i: int, rerun: bool) -> tuple[bytes, list[Any]]:
    """``entry(i)`` (or its rerun) with ``ops`` as the write seam; its result and warnings."""
    store.values.ops = store.calls.ops = ops
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FlecheWarning)
            result = entry.rerun(i) if rerun else entry(i)
    finally:
        store.values.ops = store.calls.ops = OPS
    return result, [w.category for w in caught]


def temp_files(root: str) -> list[str]:
    return [n for _, _, names in os.walk(root) for n in names if n.endswith(".tmp")]


@pytest.mark.parametrize(
    "hashing", ["before", "while"], ids=["hash-then-write", "hash-while-writing"]
)
@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
@pytest.mark.parametrize("kind", ["filesystem", "embedded"])
def test_a_failed_file_write_at_any_step_keeps_the_store_whole(
    kind, durable, hashing, tmp_path, monkeypatch
) -> None:
    if hashing == "while":  # the path of large values: checksum on a thread, header written last
        monkeypatch.setattr(_files, "_HASH_WHILE_WRITING", 0)
        monkeypatch.setattr(_files, "PREALLOCATE_FROM", 0)  # and their space reserved first
    harness = HARNESSES[kind](tmp_path)
    store = harness.cache(**({"durable": 1} if durable else {}))
    root = store.values.root
    tallies = {"failures": 0, "warned": 0, "kept_old": 0, "stored_new": 0, "nothing": 0}
    i = 0
    with fleche.cache(store):
        for code in (errno.ENOSPC, errno.EIO):
            for rerun in (False, True):
                for step in range(1, 60):
                    i += 1
                    generation[0] = 0
                    if rerun:
                        entry(i)
                    generation[0] = 1
                    ops = FailAt(step, code)
                    result, caught = call_under(ops, store, i, rerun)
                    if not ops.fired:  # this save has fewer steps: all were covered
                        assert step > 2, f"{kind}: a save took {ops.done} file operations"
                        break
                    tallies["failures"] += 1
                    assert result == value(i, 1), (ops.fired, step)
                    assert CorruptEntryWarning not in caught
                    assert temp_files(root) == [], (ops.fired, step)
                    now = stored(i)
                    old = value(i, 0) if rerun else None
                    assert now in (old, value(i, 1)), (ops.fired, step)
                    if now == value(i, 1):
                        tallies["stored_new"] += 1
                    else:
                        assert UnstorableResultWarning in caught, (ops.fired, step)
                        tallies["warned"] += 1
                        tallies["kept_old" if rerun else "nothing"] += 1
                    generation[0] = 2  # the disk has room again: a save works
                    assert entry.rerun(i) == value(i, 2) and stored(i) == value(i, 2)
                else:
                    raise AssertionError("a save never ran out of steps")
    harness.close()
    record(f"disk_full_files_{'durable' if durable else 'plain'}_{hashing}", kind, tallies)
    assert tallies["warned"] > 0 and tallies["failures"] >= 8


# --- SQLite: a database that may not grow ------------------------------------------------------
ROOM = 24  # pages the capped database may still grow by: a few saves fit, then one fails


@pytest.fixture(params=["embedded", "sqlite"])
def capped(request, tmp_path) -> Iterator[tuple[str, Any, Any]]:
    """(kind, cache, cap) where ``cap(True)`` stops the database growing and ``cap(False)`` lifts it."""
    harness = HARNESSES[request.param](tmp_path)
    store = harness.cache()
    if request.param == "embedded":
        db = store.values._db

        def cap(on: bool) -> None:
            conn = db.connection()
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + ROOM if on else 1 << 30}")

    else:
        db = store.values._db
        engine, limit = db.engine, [0]

        def cap_connection(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {limit[0]}")

        def cap(on: bool) -> None:
            if on:
                with engine.connect() as conn:
                    limit[0] = conn.exec_driver_sql("PRAGMA page_count").scalar() + ROOM
                sa.event.listen(engine, "connect", cap_connection)
            else:
                sa.event.remove(engine, "connect", cap_connection)
            engine.dispose()
            db._drop()

    yield request.param, store, cap
    harness.close()


small_generation = [0]


@cached
def small(i: int) -> bytes:
    """20 KB: inline in the embedded database, one row in ``sqlite://``."""
    return bytes([i % 251, small_generation[0] % 251]) * 10_000


def test_a_full_sqlite_database_keeps_its_entries(capped) -> None:
    kind, store, cap = capped
    tallies = {"caps": 0, "saves_refused": 0, "entries_checked": 0, "wrong": 0}
    with fleche.cache(store):
        i = 0
        for _ in range(count(ci=1, full=20)):
            i += 1
            small_generation[0] = 0
            old = i
            small(old)
            kept = {old: small(old)}
            cap(True)
            tallies["caps"] += 1
            small_generation[0] = 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FlecheWarning)
                assert small.rerun(old) == bytes([old % 251, 1]) * 10_000
                refused = False
                for _ in range(200):  # the free pages fill up; then a save fails
                    i += 1
                    before = len(caught)
                    assert small(i) == bytes([i % 251, 1]) * 10_000
                    if any(w.category is UnstorableResultWarning for w in caught[before:]):
                        refused = True
                        break
                    kept[i] = small(i)
            assert refused, "the capped database never refused a save"
            assert not any(w.category is CorruptEntryWarning for w in caught)
            tallies["saves_refused"] += 1
            with warnings.catch_warnings():
                warnings.simplefilter("error", CorruptEntryWarning)
                now = small.load(old)
                assert now in (kept[old], bytes([old % 251, 1]) * 10_000)
                for j, want in kept.items():
                    if j != old:
                        tallies["entries_checked"] += 1
                        tallies["wrong"] += int(small.load(j) != want)
                with pytest.raises(KeyError):
                    small.load(i)  # the refused save left nothing
            cap(False)
            small_generation[0] = 2
            assert small(i) == bytes([i % 251, 2]) * 10_000 == small.load(i)
    record("disk_full_sqlite", kind, tallies)
    assert tallies["wrong"] == 0
