"""The embedded database's journal and page cache: WAL, synchronous by setting, a WAL file that
stays bounded however many writes come, checkpoints on a thread of their own, a 16 MiB page
cache (SPEC section 6: integrity always, durability by setting)."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from fleche.storage import checkpointer as checkpoints
from fleche.storage import embedded
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


WAL_LIMIT = (WAL_PAGES + 16) * 4120  # journal_size_limit: WAL_PAGES frames of a page and 24 bytes


def _restarts(wal: Path) -> int:
    """The WAL header's checkpoint sequence number: SQLite adds one each time it restarts the log
    from its first frame (after a checkpoint copied it all back)."""
    with wal.open("rb") as f:
        return int.from_bytes(f.read(16)[12:16], "big")


def _trace_wal(values: ValueEmbedded, commits: int) -> tuple[int, list[int]]:
    """Commit ``commits`` values one at a time: the largest the WAL file grew, and its size
    after each commit that restarted it."""
    wal = Path(values._db.root) / "fleche.db-wal"
    largest, restarted_at, seen = 0, [], -1
    for i in range(commits):  # one commit of at least one page each
        values.save(os.urandom(3000) + i.to_bytes(4, "big"))
        size, restarts = wal.stat().st_size, _restarts(wal)
        largest = max(largest, size)
        if seen >= 0 and restarts != seen:
            restarted_at.append(size)
        seen = restarts
    return largest, restarted_at


def _store(tmp_path: Path) -> ValueEmbedded:
    values = ValueEmbedded(tmp_path)
    CallEmbedded(tmp_path)  # the calls share the database, as in the embedded cache
    return values


def test_the_writers_own_checkpoint_bounds_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "CHECKPOINT_COMMITS", 10**9)  # no checkpointer thread
    values = _store(tmp_path)
    largest, restarted_at = _trace_wal(values, int(WAL_PAGES * 1.5))
    assert 0 < largest <= WAL_LIMIT
    assert restarted_at  # the log went back to its first frame, and was reused, not regrown
    assert len(list(values.list())) == int(WAL_PAGES * 1.5)


def test_the_wal_keeps_restarting_with_the_checkpointer_thread(tmp_path: Path) -> None:
    # While the thread checkpoints, a writer's own checkpoint is skipped (SQLite runs one at a
    # time), so the WAL passes its limit by what is committed meanwhile: 0.5 MiB on a quiet
    # machine, 9 MiB once in a loaded CI run; how much depends on the machine, not on the code,
    # and is not asserted. What holds on any machine: the log restarts again and again, and each
    # restart cuts the file back to the limit.
    values = _store(tmp_path)
    _, restarted_at = _trace_wal(values, int(WAL_PAGES * 2.5))
    assert len(restarted_at) >= 2
    assert all(size <= WAL_LIMIT for size in restarted_at)
    assert len(list(values.list())) == int(WAL_PAGES * 2.5)


def test_a_wal_grown_past_its_limit_is_cut_back_when_it_restarts(tmp_path: Path) -> None:
    # a reader's old snapshot keeps every checkpoint from copying the log back (as a slow
    # checkpoint of the thread's would, for a while): the log grows past its limit
    values = _store(tmp_path)
    wal = tmp_path / "fleche.db-wal"
    reader = sqlite3.connect(tmp_path / "fleche.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchall()
        largest, restarted_at = _trace_wal(values, WAL_PAGES)
        assert largest > 1.5 * WAL_LIMIT and not restarted_at
    finally:
        reader.execute("COMMIT")
        reader.close()
    _, restarted_at = _trace_wal(values, WAL_PAGES)
    assert restarted_at and restarted_at[0] <= WAL_LIMIT
    assert wal.stat().st_size <= WAL_LIMIT


# --- checkpoints off the writers' path ------------------------------------------------------------
def _writes(storage: ValueEmbedded, count: int) -> None:
    for i in range(count):  # one commit each
        storage.save(os.urandom(3000) + i.to_bytes(4, "big"))


def test_commits_ask_the_checkpointer_thread_and_it_copies_the_wal_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "CHECKPOINT_COMMITS", 5)
    ran_on: list[str] = []

    def checkpoint(path: str) -> None:
        ran_on.append(threading.current_thread().name)
        real(path)

    real = checkpoints.checkpoint
    monkeypatch.setattr(checkpoints, "checkpoint", checkpoint)
    values = ValueEmbedded(tmp_path)
    database = tmp_path / "fleche.db"
    checkpoints.checkpointer().wait_idle(30)
    before = database.stat().st_size
    _writes(values, 20)  # 20 commits, far below the writers' own checkpoint at WAL_PAGES
    assert checkpoints.checkpointer().wait_idle(30)
    assert ran_on and set(ran_on) == {"fleche-checkpointer"}
    # the pages of the writes were copied into the database file, not only into the WAL
    assert database.stat().st_size >= before + 20 * 3000
    assert len(list(values.list())) == 20


def test_a_checkpoint_never_creates_a_database_nor_raises(tmp_path: Path) -> None:
    checkpoints.checkpoint(str(tmp_path / "missing" / "fleche.db"))
    checkpoints.checkpoint(str(tmp_path / "gone.db"))
    assert not list(tmp_path.iterdir())
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    checkpoints.checkpoint(str(junk))
    assert junk.read_bytes() == b"not a database" * 100


def test_the_thread_survives_a_failed_checkpoint_and_ends_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "IDLE_SECONDS", 0.2)
    values = ValueEmbedded(tmp_path / "cache")
    values._db.connection().execute("PRAGMA wal_autocheckpoint=0")
    _writes(values, 10)
    database = tmp_path / "cache" / "fleche.db"
    before = database.stat().st_size
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    worker = checkpoints.Checkpointer()
    worker.request(str(tmp_path / "junk.db"))
    thread = worker._thread
    assert thread is not None
    worker.request(str(database))
    assert worker.wait_idle(30) and worker.done == 2
    assert database.stat().st_size > before  # the good one ran after the bad one
    thread.join(10)  # idle for IDLE_SECONDS: the thread ends ...
    assert not thread.is_alive() and worker._thread is None
    worker.request(str(database))  # ... and the next request starts another
    assert worker.wait_idle(30) and worker.done == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_checkpoints_on_a_thread_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "CHECKPOINT_COMMITS", 5)
    values = ValueEmbedded(tmp_path)
    _writes(values, 10)  # the parent's thread runs
    parent = checkpoints.checkpointer()
    pid = os.fork()
    if pid == 0:  # the child: its own checkpointer, whose thread runs its checkpoints
        code = 1
        try:
            _writes(values, 10)
            child = checkpoints.checkpointer()
            ok = child is not parent and child.wait_idle(30) and child.done >= 1
            code = 0 if ok and len(list(values.list())) == 20 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.wait_idle(30)
    with sqlite3.connect(tmp_path / "fleche.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(list(values.list())) == 20


def test_a_thread_that_cannot_start_costs_the_writer_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at interpreter shutdown no thread starts: the commit that asked still succeeds, and the
    # writers' own checkpoint at WAL_PAGES remains
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(embedded, "CHECKPOINT_COMMITS", 1)
    worker = checkpoints.Checkpointer()
    monkeypatch.setattr(checkpoints, "_checkpointer", worker)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    values = ValueEmbedded(tmp_path)
    _writes(values, 3)
    assert len(list(values.list())) == 3
    assert worker.wait_idle(0) and worker.done == 0 and worker._thread is None


def test_a_checkpoint_finds_a_database_whose_path_needs_quoting(tmp_path: Path) -> None:
    root = tmp_path / "a b?c#d%20e"
    values = ValueEmbedded(root)
    values._db.connection().execute("PRAGMA wal_autocheckpoint=0")
    _writes(values, 10)
    database = root / "fleche.db"
    before = database.stat().st_size
    checkpoints.checkpoint(str(database))
    assert database.stat().st_size > before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a b?c#d%20e"]  # nothing made elsewhere


def _checkpoint_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished: list[str]
) -> tuple[checkpoints.Checkpointer, threading.Event]:
    """The process's checkpointer, inside a checkpoint that returns once the event is set."""
    started, go = threading.Event(), threading.Event()

    def slow(path: str) -> None:
        started.set()
        go.wait(30)
        finished.append("checkpoint")

    worker = checkpoints.Checkpointer()
    monkeypatch.setattr(checkpoints, "_checkpointer", worker)
    monkeypatch.setattr(checkpoints, "checkpoint", slow)
    worker.request(str(tmp_path / "fleche.db"))
    assert started.wait(30)
    return worker, go


def _forking_thread(finished: list[str]) -> threading.Thread:
    """A started thread that forks a child which exits at once, then notes "fork"."""

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        finished.append("fork")
        os.waitpid(pid, 0)

    thread = threading.Thread(target=fork)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_fork_waits_for_a_checkpoint_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a thread inside SQLite at a fork could leave SQLite's process-wide mutexes locked in the
    # child: the fork waits until the checkpoint has returned
    finished: list[str] = []
    worker, go = _checkpoint_under_way(tmp_path, monkeypatch, finished)
    forking = _forking_thread(finished)
    forking.join(0.5)
    assert forking.is_alive() and finished == []  # the fork waits ...
    go.set()
    forking.join(30)
    assert finished == ["checkpoint", "fork"]  # ... until the checkpoint has returned
    assert worker.wait_idle(30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forks_from_two_threads_during_a_checkpoint_leave_nothing_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[str] = []
    worker, go = _checkpoint_under_way(tmp_path, monkeypatch, finished)
    forks = [_forking_thread(finished) for _ in range(2)]
    for thread in forks:
        thread.join(0.5)  # both wait in the before-fork hook
    go.set()
    for thread in forks:
        thread.join(30)
    assert not any(thread.is_alive() for thread in forks) and finished.count("fork") == 2
    assert not worker._busy.locked()  # a later fork, or checkpoint, would wait for ever
    assert worker.wait_idle(30)


def test_an_unexpected_error_in_a_checkpoint_does_not_end_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def flaky(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("an error nobody expected")

    monkeypatch.setattr(checkpoints, "checkpoint", flaky)
    worker = checkpoints.Checkpointer()
    worker.request("first")
    assert worker.wait_idle(30)
    thread = worker._thread
    worker.request("second")
    assert worker.wait_idle(30) and calls == ["first", "second"] and worker.done == 2
    assert thread is not None and worker._thread is thread and thread.is_alive()


_SHM_DMS = 128  # SQLite's unix VFS: the byte of ``-shm`` each process using it holds a read lock on


def _dms_holder(shm: str) -> int:
    """The pid holding a lock on the DMS byte of ``shm`` as another process sees it (0: none)."""
    import fcntl
    import struct

    fd = os.open(shm, os.O_RDWR)
    try:
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return pid if kind != fcntl.F_UNLCK else 0


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's struct flock")
def test_the_process_keeps_sqlites_lock_on_the_shared_memory_file(tmp_path: Path) -> None:
    # closing any descriptor of a file drops every POSIX lock the process holds on it: nothing
    # fleche does may open and close ``fleche.db-shm`` behind SQLite's back, or the next process
    # to open the database takes itself for the first, truncates the file, and every process
    # that has it mapped dies of SIGBUS (a change that read the WAL-index header did exactly that)
    import multiprocessing

    values = ValueEmbedded(tmp_path)
    CallEmbedded(tmp_path)
    key = values.save("a value")
    assert values.load(key) == "a value"
    reader = threading.Thread(target=lambda: values.load(key))  # another thread's connection
    reader.start()
    reader.join()
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        holder = pool.apply(_dms_holder, (str(tmp_path / "fleche.db-shm"),))
    assert holder == os.getpid()
