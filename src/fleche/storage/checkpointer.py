"""WAL checkpoints off the writers' path, for the embedded default's database.

By default SQLite copies its write-ahead log back into the database (a checkpoint) inside the
COMMIT that crosses ``wal_autocheckpoint`` pages: that one commit writes back every page the log
changed and waits for two fsyncs, milliseconds on top of a miss of a fraction of one, and over
a run of misses a quarter or more of their time (docs/performance.md, W2). SQLite's
documentation names the alternative used here: writers commit without checkpointing, and every
so many commits a process asks its one daemon thread to run a PASSIVE checkpoint on a connection
of its own. A PASSIVE checkpoint waits for no reader or writer, and SQLite runs it without the
GIL, so the process's callers go on meanwhile.

The writers' own ``wal_autocheckpoint`` stays on, at a larger size, as the safety net should the
thread fall behind or be gone (a checkpoint asked for is never lost, only delayed to a commit),
and as what restarts the log while writers keep committing: a PASSIVE checkpoint running beside
them never finds the log wholly copied when a writer starts, the writer's own then copies only
what the thread has not. The thread ends after ``IDLE_SECONDS`` without a request (a process
that stopped writing keeps no extra thread, which a later ``fork`` would warn about) and starts
again at the next one; a forked child starts its own. A ``fork`` waits for a checkpoint under
way to end, and none starts during it: a thread inside SQLite at the fork could leave one of
SQLite's process-wide mutexes (its allocator's, its file table's) locked in the child for ever.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["IDLE_SECONDS", "Checkpointer", "checkpoint", "checkpointer"]

IDLE_SECONDS = 2.0


class Checkpointer:
    """One daemon thread that runs a PASSIVE checkpoint of each database asked for, in turn."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: dict[str, None] = {}  # database paths, in the order asked, each once
        self._running: str | None = None
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()  # held while in SQLite, and by a fork (see the module)
        self.done = 0  # requests handled so far, run or failed (for tests and diagnostics)

    def request(self, path: str) -> None:
        """Ask for a checkpoint of the database at ``path``; returns at once."""
        with self._condition:
            self._pending[path] = None
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="fleche-checkpointer", daemon=True)
                try:
                    thread.start()
                except RuntimeError as e:  # at interpreter shutdown: the writers' net does it
                    self._pending.clear()
                    log.debug("no checkpointer thread: %s", e)
                    return
                self._thread = thread
            self._condition.notify()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every checkpoint asked for has run; False if ``timeout`` passed first."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._pending and self._running is None, timeout
            )

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._condition.wait_for(lambda: bool(self._pending), IDLE_SECONDS):
                    self._thread = None  # the next request starts another
                    return
                path = next(iter(self._pending))
                del self._pending[path]
                self._running = path
            failed: str | None = None
            try:
                with self._busy:  # nothing else under it: a logging handler may fork
                    failed = checkpoint(path)
            except Exception as e:  # never let the thread die: the next request would wait
                failed = f"{type(e).__name__}: {e}"
            finally:
                with self._condition:
                    self._running = None
                    self.done += 1
                    self._condition.notify_all()
            if failed is not None:
                log.debug("no checkpoint of %s: %s", path, failed)


def checkpoint(path: str) -> str | None:
    """A PASSIVE checkpoint of the database at ``path``, on a connection opened for it; None, or
    why it did not run.

    Never creates a database (a cache deleted meanwhile is left alone) and never raises for a
    database it cannot use: a checkpoint that cannot run now is done by a later one or by a
    writer's commit."""
    try:
        uri = f"{Path(path).absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
    except sqlite3.Error as e:
        return str(e)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()
    return None


_checkpointer = Checkpointer()


def checkpointer() -> Checkpointer:
    """This process's checkpointer."""
    return _checkpointer


_forking: Checkpointer | None = None


def _before_fork() -> None:
    global _forking
    current = _checkpointer
    current._busy.acquire()  # wait for a checkpoint under way; start none
    _forking = current  # only the holder of _busy writes it: forks from two threads queue


def _after_fork_in_parent() -> None:
    global _forking
    if _forking is not None:
        _forking._busy.release()
        _forking = None


def _after_fork_in_child() -> None:
    # the parent's thread did not follow; its locks are held or may have been
    global _checkpointer, _forking
    _checkpointer, _forking = Checkpointer(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
