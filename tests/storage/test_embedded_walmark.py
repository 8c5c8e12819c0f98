"""A miss's second look-up on the embedded default sends no statement when nothing was committed
since the first (the WAL-index header is unchanged, see ``_walmark``); anything committed in
between, by another thread, another process or this thread's own pending writes, is seen."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import fleche
from fleche import Cache
from fleche.storage._walmark import HEADER, open_mark
from fleche.storage.embedded import CallEmbedded, ValueEmbedded


@fleche.fleche
def double(n: int) -> int:
    return 2 * n


def _cache(root: Path) -> Cache:
    return Cache(ValueEmbedded(root), CallEmbedded(root))


def _selects(cache: Cache) -> list[str]:
    """The SELECTs this thread's connection sends from now on."""
    seen: list[str] = []
    cache.calls._db.connection().set_trace_callback(
        lambda sql: seen.append(sql) if sql.startswith("SELECT") else None
    )
    return seen


def _is_hit(cache: Cache, key: Any) -> bool:
    try:
        cache._lookup(key)
    except KeyError:
        return False
    return True


def test_a_second_look_up_with_nothing_committed_sends_no_statement(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with fleche.cache(cache):
        double(1)  # the database holds something
        key = double.digest(2)
    selects, misses = _selects(cache), cache.misses
    assert not _is_hit(cache, key)
    assert not _is_hit(cache, key)
    assert len(selects) == 1
    other = double.digest(3)  # another key is looked up, as ever
    assert not _is_hit(cache, other) and len(selects) == 2
    assert cache.misses == misses + 3  # counted as misses all the same


def test_a_miss_of_a_whole_call_reads_once_and_stores(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with fleche.cache(cache):
        double(1)
        selects = _selects(cache)
        assert double(5) == 10
        assert len(selects) == 1  # the re-check under the key's lock needed none
        assert double(5) == 10 and cache.hits == 1


def _missed(root: Path, n: int) -> tuple[Cache, Any]:
    """A cache holding ``double(1)`` in which this thread has just looked ``double(n)`` up."""
    cache = _cache(root)
    with fleche.cache(cache):
        double(1)
        key = double.digest(n)
    assert not _is_hit(cache, key)
    return cache, key


def test_a_commit_by_another_thread_in_between_is_seen(tmp_path: Path) -> None:
    cache, key = _missed(tmp_path, 7)

    def store() -> None:
        with fleche.cache(cache):
            double(7)

    writer = threading.Thread(target=store)
    writer.start()
    writer.join()
    assert _is_hit(cache, key)


def _store_in_another_process(root: str) -> None:
    with fleche.cache(_cache(Path(root))):
        double(8)


def test_a_commit_by_another_process_in_between_is_seen(tmp_path: Path) -> None:
    cache, key = _missed(tmp_path, 8)
    process = multiprocessing.get_context("spawn").Process(
        target=_store_in_another_process, args=(str(tmp_path),)
    )
    process.start()
    process.join(60)
    assert process.exitcode == 0
    assert _is_hit(cache, key)


def test_this_threads_pending_write_is_seen(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with fleche.cache(cache):
        double(1)
        key = double.digest(9)
        with cache.batch():  # one open transaction: the header changes only when it commits
            assert not _is_hit(cache, key)
            double(9)
            assert _is_hit(cache, key)


def test_the_mark_changes_with_every_commit_and_only_then(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    view = open_mark(conn, path)
    assert view is not None and len(view[:HEADER]) == HEADER
    other = sqlite3.connect(path, isolation_level=None)
    seen = [view[:HEADER]]
    other.execute("INSERT INTO t VALUES (1)")
    seen.append(view[:HEADER])
    other.execute("SELECT * FROM t").fetchall()
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (2)")
    seen.append(view[:HEADER])  # not committed yet
    other.execute("COMMIT")
    seen.append(view[:HEADER])
    assert seen[0] != seen[1] == seen[2] != seen[3]


def test_no_mark_outside_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")  # the rollback journal: no WAL-index to read
    assert open_mark(conn, path) is None


def test_without_a_mark_every_look_up_is_a_statement(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with fleche.cache(cache):
        double(1)
        key = double.digest(2)
    cache.calls._db._local.view = None  # as where the header cannot be read
    selects = _selects(cache)
    assert not _is_hit(cache, key) and not _is_hit(cache, key)
    assert len(selects) == 2
