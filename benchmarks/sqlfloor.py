"""W2's floor for the embedded default: the SQL a miss sends, replayed without fleche's Python.

Misses of ``bodies.small`` on a fresh embedded cache are run once with every statement its
connection executes recorded (the connection's set-up, then each miss's statements apart). The
set-up is replayed on a new database file, then the misses' statements, in the same order and
with the same parameters, timed as W2 times misses: what SQLite alone costs a miss with fleche's
layout, on this machine, in this run. The checkpoints the cache asked its checkpointer thread for
are asked for at the same points of the replay. When that floor is above diskcache's whole miss, no
trimming of fleche's Python can meet W2's target; only a layout that dirties fewer pages can.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from fleche.storage.checkpointer import checkpointer

from . import bodies
from .timing import per_call

# (executemany?, sql, parameters) in the order the connection ran them
Statement = tuple[bool, str, Any]
CHECKPOINT = "-- a checkpoint asked of the checkpointer thread"


def _record(root: Path, misses: int) -> tuple[list[Statement], list[list[Statement]]]:
    """The set-up statements and each miss's, from ``misses`` misses on a cache in ``root``."""
    import fleche
    from fleche.config import cache_from_url
    from fleche.storage import embedded

    log: list[Statement] = []

    class RecordingCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            log.append((False, sql, tuple(parameters)))
            return super().execute(sql, parameters)

        def executemany(self, sql: str, rows: Any, /) -> sqlite3.Cursor:
            rows = [tuple(row) for row in rows]
            log.append((True, sql, rows))
            return super().executemany(sql, rows)

    class Recording(embedded._Connection):
        """Every statement, whether sent through the connection or one of its cursors (the
        embedded default keeps a cursor per thread for its hot statements), recorded once."""

        def cursor(self, factory: Any = RecordingCursor) -> Any:
            return super().cursor(factory)

        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            return self.cursor().execute(sql, parameters)

        def executemany(self, sql: str, rows: Any, /) -> sqlite3.Cursor:
            return self.cursor().executemany(sql, rows)

    class Checkpoints:
        def request(self, path: str) -> None:
            log.append((False, CHECKPOINT, ()))
            checkpointer().request(path)

    plain, embedded._Connection = embedded._Connection, Recording  # type: ignore[misc]
    asked, embedded.checkpointer = embedded.checkpointer, Checkpoints  # type: ignore[assignment]
    try:
        cache = cache_from_url(f"embedded://{root}")
        f = fleche.fleche(cache=cache)(bodies.small)
        f(-1, "miss")  # the connection is made, its schema read, its first statements prepared
        setup, per_miss = list(log), []
        for i in range(misses):
            log.clear()
            f(i, "miss")
            per_miss.append(list(log))
    finally:
        embedded._Connection = plain  # type: ignore[misc]
        embedded.checkpointer = asked
    return setup, per_miss


def _new_database(root: Path) -> sqlite3.Connection:
    """A connection to ``root/fleche.db`` (a new file; where the embedded default keeps it)."""
    root.mkdir()
    return sqlite3.connect(root / "fleche.db", isolation_level=None, timeout=60.0)


def _replay(cursor: sqlite3.Cursor, statements: list[Statement], path: str) -> None:
    """``statements`` through one cursor, as the embedded default sends a miss's."""
    for many, sql, parameters in statements:
        if sql == CHECKPOINT:
            checkpointer().request(path)
        elif many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters).fetchall()


def embedded_miss_sql(size: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Microseconds of SQL per miss (``sql_us``): ``repeats`` timed runs of ``size`` misses'
    statements after one untimed run, on a new database that the set-up statements made."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        setup, per_miss = _record(Path(tmp) / "recorded", size * (repeats + 1))
        connection = _new_database(Path(tmp) / "replayed")
        try:
            path = str(Path(tmp) / "replayed" / "fleche.db")
            cursor = connection.cursor()
            _replay(cursor, setup, path)
            runs = iter(range(repeats + 1))

            def run() -> int:
                start = next(runs) * size
                for statements in per_miss[start : start + size]:
                    _replay(cursor, statements, path)
                return size

            return {"sql_us": per_call(run, repeats), "statements": len(per_miss[0])}
        finally:
            checkpointer().wait_idle()
            connection.close()
