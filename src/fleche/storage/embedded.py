"""The embedded default (``embedded:///abs/dir``, or a plain directory path): one SQLite database
for call records and small values, files for large values (SPEC section 6).

``DIR/fleche.db`` (WAL; ``synchronous=NORMAL``, ``FULL`` when durable) holds, in ``WITHOUT ROWID``
tables keyed by the 16 bytes of a digest:

- ``vals(key, data, size, written)``: value frames (``serialize.Codec``: checksum, optional HMAC
  signature and zlib) up to ``threshold`` bytes (default 32 KiB) inline; larger ones live in
  ``DIR/values/ab/<key>`` files (``data`` NULL), written atomically before their row.
- ``calls(key, name, module, version, result, record, checksum)``: the whole record in the
  ``record`` blob under one checksum (see ``_call_row``), with copies of the function's name,
  module and version in columns indexed by ``name, module``;
  ``args(param, value, call)``: one row per argument, so a query by argument is a key lookup.
- ``meta``: the layout version and the digest scheme (another scheme raises ``ConfigError``).

The stdlib driver keeps a hit at one indexed SELECT per table. Each thread has its own connection
(reopened after ``fork``). A key's WRITE context is one IMMEDIATE transaction, entered last and
holding nothing else, so a call record and its values commit together, gc's check-then-delete
is atomic, and files are deleted only after the commit that unlinked them. Call keys also take a
record lock (one byte of ``DIR/locks/calls.lock``) so that processes compute a missing call once.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import os
import sqlite3
import struct
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import xxhash

from ..caches import Cache, serialise_values
from ..call import NO_RESULT, DigestedCall, QueryCall
from ..digest import DIGEST_LENGTH, SCHEME_VERSION, Digest, digest, is_hex_key
from ..errors import ConfigError, FlecheWarning, IntegrityError, SaveError
from . import _files, _staging
from ._files import OPS, FileOps, key_path, make_dirs, read_file, write_frame
from .base import NULL_CONTEXT, BatchScope, CallMixin, Intent, StorageBackend, check_key
from .checkpointer import checkpointer
from .embedded_upgrade import call_from_parts, upgrade
from .filesystem import DirectoryOptions, FileKeyLockMixin, SaveOnceMixin, _rebuild
from .serialize import Codec, Frame, FrameChecker

__all__ = [
    "DEFAULT_THRESHOLD",
    "CallEmbedded",
    "Database",
    "EmbeddedBackend",
    "EmbeddedCallBackend",
    "NetworkFilesystemWarning",
    "ValueEmbedded",
    "cache_from_url",
]

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 32 * 1024
LAYOUT_VERSION = "2"  # 1: the record in seven checksummed columns (upgraded when opened)
BUSY_TIMEOUT = 60.0
# Checkpoints (copying the WAL back into the database, then two fsyncs) run off the writers'
# path: every CHECKPOINT_COMMITS commits a process asks its checkpointer thread for one
# (``checkpointer``). Run inside a commit, as SQLite does by default, they cost a run of misses a
# quarter or more of its time (docs/performance.md, W2). While writers keep committing, the
# thread's checkpoints never find the log wholly copied, so it restarts through the writers' own
# checkpoint at WAL_PAGES (16 MiB), which finds most of it copied already (and is skipped while
# the thread's runs: the WAL may pass WAL_PAGES by the pages written meanwhile). The WAL file is
# cut back to that size when it restarts, and reused, not regrown, below it.
CHECKPOINT_COMMITS = 100
WAL_PAGES = 4000
# SQLite's page cache per connection (KiB; SQLite's default is 2 MiB). At 100,000 calls (48 MiB)
# a hit's B-tree pages no longer fitted in 2 MiB and came from the OS through a pread each: a hit
# took 16.5 µs there against 11.8 µs at 1,000 calls; with 16 MiB, 13.8 µs. Pages are cached as
# they are read, so a small cache never uses it all.
PAGE_CACHE_KIB = 16 * 1024
_PAGE = 500
_UPGRADABLE = ("1",)  # older layouts that ``embedded_upgrade`` brings to LAYOUT_VERSION
TOUCH_AFTER = 60.0  # seconds: a re-saved value younger than this keeps its ``written`` time

_CALLS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS calls (key BLOB PRIMARY KEY, name TEXT NOT NULL, module TEXT,"
    " version TEXT, result BLOB, record BLOB NOT NULL, checksum INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS calls_by_function ON calls (name, module)",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS vals (key BLOB PRIMARY KEY, data BLOB, size INTEGER,"
    " written REAL NOT NULL) WITHOUT ROWID",
    *_CALLS_SCHEMA,
    "CREATE TABLE IF NOT EXISTS args (param TEXT NOT NULL, value BLOB NOT NULL, call BLOB NOT NULL,"
    " PRIMARY KEY (param, value, call)) WITHOUT ROWID",
)


class NetworkFilesystemWarning(FlecheWarning):
    """An embedded cache lies on a network filesystem (NFS, SMB), where SQLite's locking is unreliable."""


def _raise_save_error(e: sqlite3.Error, what: str) -> None:
    raise SaveError(f"{what}: {e}") from e


# --- the database -------------------------------------------------------------------------------
class _Transaction:
    """An IMMEDIATE transaction on the thread's connection; nested ones join the outermost."""

    __slots__ = ("db", "mark", "outer")

    def __init__(self, db: Database) -> None:
        self.db, self.outer, self.mark = db, False, -1

    def __enter__(self) -> None:
        self.outer = self.db.begin()
        self.mark = -1 if self.outer else self.db.batch_mark()

    def __exit__(self, exc_type: Any, exc: Any, *rest: Any) -> None:
        if self.outer:
            self.db.end(commit=exc_type is None)
        elif exc_type is not None and self.mark >= 0:
            self.db.batch_failed(self.mark, exc)


class _Batch(BatchScope):
    """One thread's batch on a database: its writes share one IMMEDIATE transaction, opened by the
    first write and committed when the outermost block ends, or sooner by ``pause``.

    A write that fails after it changed rows rolls the batch's transaction back at once (no half
    written record is ever committed) and the batch then raises ``SaveError`` when it ends, even
    if the caller caught the first error: never a silent loss. A batch opened inside a
    transaction that is not its own joins it and commits nothing (``inert``).
    """

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db, self.inert = db, False
        self.failed: BaseException | None = None

    def begin(self) -> None:
        self.inert = self.db.connection().in_transaction

    def pause(self) -> None:
        if not self.inert and self.db.connection().in_transaction:
            self.db.end(commit=True)

    def finish(self, ok: bool) -> None:
        failed, self.failed = self.failed, None
        if not self.inert and self.db.connection().in_transaction:
            self.db.end(commit=ok and failed is None)
        if failed is not None and ok:
            raise SaveError(
                f"a write in a batch on {self.db.path} failed ({type(failed).__name__}: "
                f"{failed}); the batch's writes not committed before it were rolled back"
            ) from failed


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (to find the live ones at ``fork``)."""


class _ThreadState(threading.local):
    """A thread's connection and what goes with it (class defaults: no exception to look)."""

    conn: sqlite3.Connection | None = None
    # a cursor of ``conn`` for statements whose rows are read at once (a new cursor per
    # statement, as ``conn.execute`` makes, cost a hit's SELECT 0.5-1 of its 5 us)
    cursor: sqlite3.Cursor | None = None


class Database:
    """``DIR/fleche.db``, shared by every storage on ``DIR`` in this process (see :func:`database`):
    one connection per thread, the schema, and the transactions of WRITE contexts."""

    def __init__(self, root: str, mode: int | None) -> None:
        self.root, self.path = root, f"{root}/fleche.db"
        self.durable = False
        self._reset()
        make_dirs(root, mode)
        try:  # created here so that it follows the umask (or mode), which SQLite would not
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            pass
        else:
            if mode is not None:
                os.fchmod(fd, mode)
            os.close(fd)
        self._check_filesystem()
        self._create_schema()
        self.inode = os.stat(self.path).st_ino

    def _reset(self) -> None:
        self._local = _ThreadState()
        self._commits = 0  # by this process, counted under ``_writer``
        self._writer = threading.Lock()  # threads of this process queue here, not in busy-waits
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; transactions are explicit)."""
        conn = self._local.conn
        if conn is not None:
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit={(WAL_PAGES + 16) * 4120}")  # frame: page + 24
        self._local.conn, self._local.durable, self._local.after = conn, self.durable, []
        self._local.cursor = conn.cursor()
        self._local.batch = None
        self._connections.add(conn)
        return conn

    def cursor(self) -> sqlite3.Cursor:
        """This thread's cursor, for a statement whose rows are read before the next one."""
        cursor = self._local.cursor
        if cursor is None:
            self.connection()  # makes the thread's connection and its cursor
            cursor = self._local.cursor
            assert cursor is not None
        return cursor

    def _check_filesystem(self) -> None:
        fstype = _files.filesystem_type(self.root)
        if _files.is_network_filesystem(fstype):
            warnings.warn(
                f"the fleche cache in {self.root} is on a {fstype} network filesystem, where "
                "SQLite's locking is unreliable; use a local directory, or PostgreSQL or Redis "
                "for a cache shared between machines",
                NetworkFilesystemWarning,
                stacklevel=5,
            )

    def _create_schema(self) -> None:
        conn = self.connection()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with _Transaction(self):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("layout", LAYOUT_VERSION), ("digest_scheme", str(SCHEME_VERSION))],
                )
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                if meta.get("layout") in _UPGRADABLE and meta.get("digest_scheme") == str(
                    SCHEME_VERSION
                ):
                    upgrade(conn, meta["layout"], self.path, _call_row, _CALLS_SCHEMA)
                    conn.execute("UPDATE meta SET value = ? WHERE name = 'layout'",
                                 (LAYOUT_VERSION,))  # fmt: skip
                    meta["layout"] = LAYOUT_VERSION
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{self.path} is not a usable fleche database ({e})") from e
        if meta.get("digest_scheme") != str(SCHEME_VERSION):
            raise ConfigError(
                f"the cache in {self.root} was written with digest scheme "
                f"{meta.get('digest_scheme')}, but this fleche uses digest scheme "
                f"{SCHEME_VERSION}; use another directory"
            )
        if meta.get("layout") != LAYOUT_VERSION:
            raise ConfigError(
                f"{self.path} has layout version {meta.get('layout')}; this fleche reads "
                f"version {LAYOUT_VERSION}"
            )

    # --- transactions -------------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def batch(self) -> _Batch:
        """This thread's batch (see :meth:`OperationContext.batch`)."""
        self.connection()
        batch = self._local.batch
        if batch is None:
            batch = self._local.batch = _Batch(self)
        return batch

    def begin(self) -> bool:
        """Start an IMMEDIATE transaction unless one is open; True when this call started it and
        must end it (False in a batch: the batch ends it)."""
        conn = self.connection()
        if conn.in_transaction:
            return False
        if self.durable and not self._local.durable:
            conn.execute("PRAGMA synchronous=FULL")
            self._local.durable = True
        self._writer.acquire()
        try:
            self.cursor().execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._writer.release()
            _raise_save_error(e, f"cannot write to {self.path}")
        batch = self._local.batch
        return batch is None or not batch.depth or batch.inert

    def batch_mark(self) -> int:
        """Rows changed so far on this connection when a batch is open (else -1), so that a write
        that fails in it can tell whether it left anything behind (:meth:`batch_failed`)."""
        batch = self._local.batch
        if batch is None or not batch.depth or batch.inert:
            return -1
        return self.connection().total_changes

    def batch_failed(self, mark: int, error: BaseException) -> None:
        """A write in the open batch failed: if it changed rows, roll the batch back now."""
        conn, batch = self.connection(), self._local.batch
        if conn.total_changes == mark or not conn.in_transaction:
            return  # it failed before writing (a value that cannot be serialised): nothing to undo
        self.end(commit=False)
        if batch.failed is None:
            batch.failed = error

    def end(self, *, commit: bool) -> None:
        """Commit (or roll back) the outermost transaction, then run the after-commit actions."""
        conn, after = self.connection(), self._local.after
        checkpoint = False
        try:
            if commit:
                try:
                    self.cursor().execute("COMMIT")
                except sqlite3.Error as e:
                    if conn.in_transaction:  # SQLite rolls back by itself on some errors
                        conn.execute("ROLLBACK")
                    after.clear()
                    _raise_save_error(e, f"cannot commit to {self.path}")
                self._commits += 1
                checkpoint = self._commits % CHECKPOINT_COMMITS == 0
            else:
                if conn.in_transaction:  # a full disk (and other errors) rolled it back already
                    conn.execute("ROLLBACK")
                after.clear()
        finally:
            self._writer.release()
        if checkpoint:  # asked outside the writer lock: nothing here delays another writer
            checkpointer().request(self.path)
        while after:
            after.pop(0)()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the open transaction commits (now, when none is open)."""
        if self.connection().in_transaction:
            self._local.after.append(action)
        else:
            action()

    def after_fork(self) -> None:
        """In a forked child: new connections; the parent's are kept open, never closed here
        (closing a connection inherited across fork can damage the database)."""
        _inherited.extend(self._connections)
        self._reset()


_databases: weakref.WeakValueDictionary[str, Database] = weakref.WeakValueDictionary()
_databases_lock = threading.Lock()
_inherited: list[sqlite3.Connection] = []


def database(root: str, mode: int | None, durable: bool) -> Database:
    """The process's one :class:`Database` for ``root``: storages on one directory share it, so a
    call record and its values commit in one transaction on one connection per thread.

    It lives as long as a storage uses it; a database file deleted meanwhile is opened anew.
    """
    with _databases_lock:
        db = _databases.get(root)
        if db is None or not _same_file(db):
            db = _databases[root] = Database(root, mode)
        db.durable = db.durable or durable
    return db


def _same_file(db: Database) -> bool:
    try:
        return os.stat(db.path).st_ino == db.inode
    except FileNotFoundError:
        return False


def _after_fork_in_child() -> None:
    global _databases_lock
    _databases_lock = threading.Lock()
    for db in _databases.values():
        db.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _prefix_range(prefix: str) -> tuple[bytes, bytes | None]:
    """The BLOB key range ``[low, high)`` of the keys whose hex starts with ``prefix``.

    An odd-length prefix ends in half a byte: ``abc`` covers ``ab c0 ..`` up to (not including)
    ``ab d0 ..``. A prefix of only ``f`` has no upper bound.
    """
    even = len(prefix) + len(prefix) % 2
    low = bytes.fromhex(prefix.ljust(even, "0"))
    if set(prefix) == {"f"}:
        return low, None
    above = format(int(prefix, 16) + 1, "x").rjust(len(prefix), "0")
    return low, bytes.fromhex(above.ljust(even, "0"))


# --- the backends -------------------------------------------------------------------------------
class EmbeddedBackend(StorageBackend):
    """Values in ``DIR/fleche.db``, large ones in files (see the module docstring)."""

    _table = "vals"
    _area = "values"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        threshold: int | None = None,
        durable: bool = False,
        compress: str | None = None,
        secret_key: str | None = None,
        mode: int | str | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        threshold = DEFAULT_THRESHOLD if threshold is None else int(threshold)
        self.options = DirectoryOptions(
            str(Path(root).expanduser().resolve()),
            durable=durable,
            compress=compress,
            secret_key=secret_key,
            mode=_files.parse_mode(mode),
            lock_timeout=lock_timeout,
            threshold=None if threshold == DEFAULT_THRESHOLD else threshold,
        )
        self.root, self.durable, self.mode = self.options.root, durable, self.options.mode
        self.threshold = threshold
        if lock_timeout is not None:
            self.lock_timeout = lock_timeout
        self.codec = Codec(secret_key, compress)
        self.ops: FileOps = OPS  # the write seam of value files (tests inject failures here)
        self._files = f"{self.root}/values"
        self._lock_dir = f"{self.root}/locks/{self._area}"
        self._db = database(self.root, self.mode, durable)
        table = self._table
        self._select_one = f"SELECT 1 FROM {table} WHERE key = ?"
        self._select_page = f"SELECT key FROM {table} WHERE key > ? ORDER BY key LIMIT {_PAGE}"

    def _operation_context(self, key: str, *, intent: Intent) -> Any:
        # the base of the chain: locks (mixins on the left) are taken before the transaction
        return self._db.transaction() if intent is Intent.WRITE else NULL_CONTEXT

    def batch(self) -> Any:
        """Writes of this thread in one transaction until the block ends (see ``Database``)."""
        return self._db.batch()

    def _execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        try:
            return self._db.connection().execute(sql, parameters)
        except sqlite3.Error as e:
            _raise_save_error(e, f"cannot use {self._db.path}")
            raise  # unreachable; for the type checker

    def _execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        try:
            self._db.cursor().executemany(sql, rows)
        except sqlite3.Error as e:
            _raise_save_error(e, f"cannot use {self._db.path}")

    # --- primitives -----------------------------------------------------------------------
    _select_size = "SELECT size FROM vals WHERE key = ?"

    def _put(self, key: Digest, value: Any) -> None:
        """Store ``value``, replacing a stored row (and removing its file once this commits)."""
        blob = bytes.fromhex(key)
        row = self._value_row(key, blob, value)
        if row[1] is None:  # a file, written over the old one if any
            self._execute("INSERT OR REPLACE INTO vals VALUES (?, ?, ?, ?)", row)
            return
        old = self._execute(self._select_size, (blob,)).fetchone()
        self._execute("INSERT OR REPLACE INTO vals VALUES (?, ?, ?, ?)", row)
        if old is not None and old[0] is not None:  # was a file: remove it once this commits
            self._remove_file_after_commit(key)

    def _value_row(self, key: Digest, blob: bytes, value: Any, frame: Frame | None = None
                   ) -> tuple[Any, ...]:  # fmt: skip
        """The ``vals`` row of ``value``: inline, or a large one's file, written here first."""
        if frame is None:
            small = self.codec.small_frame(key, value, self.threshold)
            if isinstance(small, bytes):  # the usual small value, made in one piece
                return blob, small, None, time.time()
            frame = small
        if frame.nbytes > self.threshold:
            path = key_path(self._files, key)
            write_frame(path, frame, durable=self.durable, mode=self.mode, ops=self.ops)
            return blob, None, frame.nbytes, time.time()
        return blob, b"".join(frame.parts()), None, time.time()

    def _rows_among(self, columns: str, keys: Sequence[str]) -> builtins.list[Any]:
        """``SELECT key, columns`` of the stored ones among ``keys``, a page of keys a statement."""
        rows = []
        for start in range(0, len(keys), _PAGE):
            page = [bytes.fromhex(check_key(k)) for k in keys[start : start + _PAGE]]
            sql = (
                f"SELECT key{columns} FROM {self._table} WHERE key IN ({','.join('?' * len(page))})"
            )
            rows += self._execute(sql, page).fetchall()
        return rows

    def _contains_many(self, keys: builtins.list[Digest]) -> set[Digest]:
        return {Digest(row[0].hex()) for row in self._rows_among("", keys)}

    def _get(self, key: Digest) -> Any:
        blob = bytearray.fromhex(key)
        row = self._db.cursor().execute("SELECT data FROM vals WHERE key = ?", (blob,)).fetchone()
        if row is None:
            raise KeyError(key)
        data, checker = row[0], None
        if data is None:
            checker = self.codec.checker(key)
            data = self._read_file(key, blob, checker)
        try:
            return self.codec.loads(key, data, checker)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _read_file(
        self, key: Digest, blob: bytes | bytearray, checker: FrameChecker | None = None
    ) -> Any:
        try:
            return read_file(key_path(self._files, key), checker)
        except FileNotFoundError:
            pass
        # evicted or rewritten inline since the SELECT (a plain miss or a retry), or lost
        row = self._execute("SELECT data FROM vals WHERE key = ?", (blob,)).fetchone()
        if row is None:
            raise KeyError(key) from None
        if row[0] is not None:
            return row[0]
        raise self._corrupt(key, IntegrityError(f"entry {key}: its value file is missing"))

    def _touch(self, key: Digest) -> bool:
        """Mark a stored value as written now; False when it is not stored. A value written less
        than ``TOUCH_AFTER`` seconds ago is left as it is: a read, no page to write and commit."""
        blob = bytes.fromhex(key)
        row = self._execute("SELECT written FROM vals WHERE key = ?", (blob,)).fetchone()
        if row is None:
            return False
        now = time.time()
        if not 0 <= now - row[0] < TOUCH_AFTER:
            self._execute("UPDATE vals SET written = ? WHERE key = ?", (now, blob))
        return True

    def _contains(self, key: Digest) -> bool:
        return self._execute(self._select_one, (bytearray.fromhex(key),)).fetchone() is not None

    def _evict(self, key: Digest) -> None:
        blob = bytes.fromhex(key)
        row = self._execute("SELECT size FROM vals WHERE key = ?", (blob,)).fetchone()
        if row is None:
            raise KeyError(key)
        self._execute("DELETE FROM vals WHERE key = ?", (blob,))
        if row[0] is not None:
            self._remove_file_after_commit(key)

    def _remove_file_after_commit(self, key: str) -> None:
        path = key_path(self._files, key)

        def remove() -> None:
            try:
                _files.remove(path, durable=self.durable, ops=self.ops)
            except FileNotFoundError:
                pass

        self._db.after_commit(remove)

    def list(self) -> Iterator[Digest]:
        """Every stored key in order, read in pages (no statement stays open between pages)."""
        last = b""
        while True:
            page = self._execute(self._select_page, (last,)).fetchall()
            for (blob,) in page:
                yield Digest(blob.hex())
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def __len__(self) -> int:
        return int(self._execute(f"SELECT count(*) FROM {self._table}").fetchone()[0])

    def _candidates(self, prefix: str, limit: int) -> builtins.list[Digest]:
        """The ``limit`` smallest keys starting with ``prefix``: one key-range scan."""
        low, high = _prefix_range(prefix)
        sql = f"SELECT key FROM {self._table} WHERE key >= ?"
        parameters: list[Any] = [low]
        if high is not None:
            sql += " AND key < ?"
            parameters.append(high)
        rows = self._execute(f"{sql} ORDER BY key LIMIT ?", (*parameters, limit)).fetchall()
        return [Digest(blob.hex()) for (blob,) in rows]

    def stored_size(self, key: str) -> int:
        """Bytes of the value's frame; ``KeyError`` when absent."""
        sql = "SELECT coalesce(size, length(data)) FROM vals WHERE key = ?"
        row = self._execute(sql, (bytes.fromhex(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return int(row[0])

    def stored_age(self, key: str) -> float:
        """Seconds since the value was last written; ``KeyError`` when absent."""
        row = self._execute(
            "SELECT written FROM vals WHERE key = ?", (bytes.fromhex(key),)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return time.time() - float(row[0])

    def sweep_temps(self, min_age: float) -> int:
        """Remove temp files that dead writers left among the large values (``Cache.gc``)."""
        return _files.remove_abandoned_temps(self._files, min_age)

    # --- identity -------------------------------------------------------------------------
    def to_url(self) -> str:
        """The normalised ``embedded://`` URL (``cache(url)`` opens the same storage)."""
        return self.options.url("embedded")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.options == other.options and self.codec == other.codec

    def __hash__(self) -> int:
        return hash((type(self), self.options))

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), self.options)  # no connection or lock travels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


def _version_text(version: Any) -> str | None:
    return None if version is None else json.dumps(version, sort_keys=True, default=repr)


def _jsonable(value: Any) -> Any:
    """Metadata must be JSON; anything else is stored as its repr (as ``serialize.dump_record``)."""
    return list(value) if isinstance(value, set | frozenset | tuple) else repr(value)


# A call record is stored whole in ``record``: a header (``_HEAD``: the number of arguments, flags,
# the ``created`` time of ``metadata.fleche``), the code digest (16 bytes, when it is a digest),
# the argument digests (16 bytes each, in signature order), then JSON [name, module, version,
# parameter names, the rest of the metadata, the code digest when it is not in bytes]. The
# ``checksum`` covers the key, ``result`` (the result's digest, apart so that a hit can join its
# value) and ``record``, so a hit checks all it reads with one xxh3 call over bytes. ``name``,
# ``module`` and ``version`` are copies in columns for the index, checked against the record when
# it is decoded.
_CALL_COLUMNS = "name, module, version, result, record, checksum"
_json_encoder = json.JSONEncoder(separators=(",", ":"), default=_jsonable)
# the arguments of ``json.encoder.c_make_encoder`` after the markers, as ``JSONEncoder`` passes
# them for these options (default, string encoder, indent, separators, sort_keys, skipkeys,
# allow_nan)
_C_ENCODER_OPTIONS = (_jsonable, encode_basestring_ascii, None, ":", ",", False, False, True)


def _c_encoder_usable() -> bool:
    """True when this Python's C encoder exists and takes the arguments ``JSONEncoder`` gives it
    in the Python versions fleche was tried on (3.11-3.13); a private API, so checked once."""
    sample = ["f", None, 1.5, {"é": [True]}]
    try:
        made = "".join(c_make_encoder({}, *_C_ENCODER_OPTIONS)(sample, 0))
    except Exception:  # absent (None), or another signature
        return False
    return made == _json_encoder.encode(sample)


_C_ENCODER = _c_encoder_usable()


def _record_json(value: Any) -> str:
    """What ``json.dumps(value, separators=(",", ":"), default=_jsonable)`` gives. The C encoder
    is made here directly (a fresh one per record: its record of the containers being written,
    which catches cycles, must not be shared between threads), without ``JSONEncoder.encode``'s
    Python layers: 2.2 us a record instead of 3.5 (json.dumps makes a new JSONEncoder as well
    whenever it is given options)."""
    if not _C_ENCODER:
        return _json_encoder.encode(value)
    return "".join(c_make_encoder({}, *_C_ENCODER_OPTIONS)(value, 0))


_HEAD = struct.Struct("<HBd")  # argument count, flags, created
_CREATED, _CODE = 1, 2  # flags: ``created`` was moved out of the metadata; a 16-byte code digest
_xxh3_64 = xxhash.xxh3_64_intdigest
# Blob parameters go to sqlite3 as bytearray: it binds bytearray (like int, float and str) at
# once, while bytes first goes through its adapter look-up, which builds and discards an
# AttributeError each time (0.5 us a parameter, 16 parameters a miss; issue 7, W2).
_JOIN = bytearray().join


def _checksum(blob: bytes | bytearray, result: bytes | bytearray | None,
              record: bytes | bytearray) -> int:  # fmt: skip
    """The row's checksum (signed: SQLite integers are); ``result`` None is told from any digest."""
    marked = b"\1" + result if result is not None else b"\0"
    return _xxh3_64(blob + marked + record) - (1 << 63)


def _call_row(key: str, call: DigestedCall, blob: bytes | bytearray | None = None
              ) -> tuple[Any, ...]:  # fmt: skip
    """The columns of ``call`` after its key (``SaveError`` when a digest is not a full one);
    ``blob``: the key as bytes, when the caller has it already."""
    digests = call.arguments.values()
    try:  # every digest full length, then all of them converted at once
        if set(map(len, digests)) - {DIGEST_LENGTH}:
            raise ValueError("a digest of another length")
        args = bytes.fromhex("".join(digests))
        result = None if call.result is NO_RESULT else bytearray.fromhex(call.result)
    except (ValueError, TypeError) as e:
        raise SaveError(f"call record {key}: arguments and result must be full digests") from e
    if len(args) != 16 * len(digests) or (result is not None and len(result) != 16):
        raise SaveError(f"call record {key}: arguments and result must be full digests")
    if len(digests) > 0xFFFF:
        raise SaveError(f"call record {key}: more than 65,535 arguments")
    flags, created, metadata, code, code_text = 0, 0.0, call.metadata, b"", call.code_digest
    fleche = metadata.get("fleche")
    if isinstance(fleche, dict) and type(fleche.get("created")) is float:
        flags, created = _CREATED, fleche["created"]
        rest = dict(fleche)
        del rest["created"]
        metadata = {**metadata, "fleche": rest}
    if code_text is not None and is_hex_key(code_text, full=True):
        flags, code, code_text = flags | _CODE, bytes.fromhex(code_text), None
    version = _version_text(call.version)
    text = _record_json([call.name, call.module, version, list(call.arguments), metadata,
                         code_text])  # fmt: skip
    record = _JOIN((_HEAD.pack(len(call.arguments), flags, created), code, args, text.encode()))
    return (
        call.name, call.module, version, result, record,
        _checksum(bytearray.fromhex(key) if blob is None else blob, result, record),
    )  # fmt: skip


def _split(record: bytes) -> tuple[float | None, bytes | None, bytes, bytes]:
    """A ``record``'s parts: created time, code digest, argument digests, JSON text."""
    count, flags, created = _HEAD.unpack_from(record)
    at = _HEAD.size + (16 if flags & _CODE else 0)
    code = record[_HEAD.size : at] if flags & _CODE else None
    args = record[at : at + 16 * count]
    if len(args) != 16 * count:
        raise ValueError("truncated argument digests")
    return created if flags & _CREATED else None, code, args, record[at + 16 * count :]


def _argument_rows(
    blob: bytes | bytearray, record: bytes, params: Any = None
) -> builtins.list[Any]:
    """The ``args`` index rows of the record under ``blob`` (``params``: its parameter names,
    read from the record when not given)."""
    _, _, digests, text = _split(record)
    if params is None:
        params = json.loads(text)[3]
    return [(p, digests[16 * i : 16 * i + 16], blob) for i, p in enumerate(params)]


def _call_from_row(key: Digest, row: tuple[Any, ...]) -> DigestedCall:
    """Inverse of :func:`_call_row`; ``IntegrityError`` when the row fails its checksum."""
    name, module, version, result, record, checksum = row
    try:
        if _checksum(bytes.fromhex(key), result, record) != checksum:
            raise IntegrityError(f"call record {key}: checksum mismatch (corrupt or truncated)")
        created, code, args, text = _split(record)
        r_name, r_module, r_version, params, metadata, code_digest = json.loads(text)
        if len(args) != 16 * len(params):
            raise ValueError("argument digests do not match the parameters")
        if (r_name, r_module, r_version) != (name, module, version):
            raise ValueError("its indexed columns differ from the record")
        code_text = Digest(code.hex()) if code is not None else code_digest
        return call_from_parts(name, module, version, result, params, args, metadata, created,
                               code_text)  # fmt: skip
    except IntegrityError:
        raise
    except (ValueError, TypeError, KeyError, struct.error) as e:
        raise IntegrityError(f"call record {key}: unreadable ({e})") from e


def _blob(frame: bytes | Frame) -> bytearray:
    """A value's complete frame as one blob parameter (a small plain one comes as bytes, see
    ``Codec.small_frame``)."""
    return bytearray(frame) if isinstance(frame, bytes) else _JOIN(frame.parts())


_INSERT_CALL = "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)"
_REPLACE_CALL = "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_ARGUMENTS = "INSERT OR IGNORE INTO args VALUES (?, ?, ?)"


class EmbeddedCallBackend(EmbeddedBackend):
    """Call records in ``DIR/fleche.db``, indexed by function and by argument."""

    _table = "calls"
    _area = "calls"

    def _put(self, key: Digest, value: Any) -> None:
        blob = bytearray.fromhex(key)
        row = _call_row(key, value, blob)
        try:  # the usual case, a new record: one INSERT, no look for an old one to unindex
            self._db.cursor().execute(_INSERT_CALL, (blob, *row))
        except sqlite3.IntegrityError:
            self._unindex(blob)
            self._execute(_REPLACE_CALL, (blob, *row))
        except sqlite3.Error as e:
            _raise_save_error(e, f"cannot use {self._db.path}")
        # the record's argument digests, in its order (``_argument_rows`` would read them back)
        arguments = [(p, bytearray.fromhex(d), blob) for p, d in value.arguments.items()]
        self._execute_many(_INSERT_ARGUMENTS, arguments)

    def _unindex(self, blob: bytes | bytearray) -> bool:
        """Drop the argument rows of the record under ``blob``; False when there is none."""
        row = self._execute("SELECT record FROM calls WHERE key = ?", (blob,)).fetchone()
        if row is None:
            return False
        try:  # no checksum needed: these rows only narrow queries, which re-check every record
            rows = _argument_rows(blob, row[0])
        except (ValueError, KeyError, TypeError, IndexError, struct.error):
            return True  # an unreadable record leaves stale rows behind; harmless, as said
        self._execute_many("DELETE FROM args WHERE param = ? AND value = ? AND call = ?", rows)
        return True

    def _get(self, key: Digest) -> DigestedCall:
        connection = self._db.connection()
        row = connection.execute(self._select_call, (bytearray.fromhex(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return self._decode(key, row)

    _select_call = f"SELECT {_CALL_COLUMNS} FROM calls WHERE key = ?"
    _select_hit = (
        "SELECT c.result, c.record, c.checksum, v.data FROM calls c"
        " LEFT JOIN vals v ON v.key = c.result WHERE c.key = ?"
    )

    def _joint_reader(self, values: Any) -> Callable[[Digest], Any] | None:
        """A hit in one SELECT when ``values`` lives in the same database: the record (its
        checksum verified, nothing else decoded) joined to its inline value (see ``Cache``)."""
        if not isinstance(values, EmbeddedBackend) or values._db is not self._db:
            return None
        db, sql, codec, checksum = self._db, self._select_hit, values.codec, _checksum

        def read(key: Digest) -> Any:
            cursor = db._local.cursor or db.cursor()
            blob = bytearray.fromhex(key)  # a parameter sqlite3 binds without adapting
            row = cursor.execute(sql, (blob,)).fetchone()
            if row is None:
                raise KeyError(key)
            result, record, check, data = row
            try:
                intact = checksum(blob, result, record) == check
            except TypeError:  # a column of another type than fleche writes
                intact = False
            if not intact:
                error = IntegrityError(f"call record {key}: checksum mismatch")
                raise self._corrupt(key, error) from error
            if result is None:
                raise KeyError(key)
            result_key = Digest(result.hex())
            if data is None:  # a value file, or no value: the plain path says which
                return values._get(result_key)
            try:
                return codec.loads(result_key, data)
            except IntegrityError as e:
                raise values._corrupt(result_key, e) from e

        return read

    def _joint_writer(self, values: Any) -> Callable[..., Exception | None] | None:
        """A miss's writes in a few statements when ``values`` is a plain :class:`ValueEmbedded`
        on the same database (see ``caches.save_call``): the small values in one upsert, then
        the record. Every frame is made before any row is written, so a result that cannot be
        serialised leaves nothing behind. The caller holds the key's WRITE context (its locks
        and the transaction)."""
        if (
            type(values).save is not ValueEmbedded.save
            or type(values)._save_large is not ValueEmbedded._save_large
            or type(self)._put is not EmbeddedCallBackend._put
            or values._db is not self._db
        ):
            return None  # a subclass that changes how entries are written keeps its own path
        threshold, upsert, put = values.threshold, values._upsert_inline, self._put
        frame_of = functools.partial(values.codec.small_frame, limit=threshold)

        def write(key: Digest, record: DigestedCall, arguments: Sequence[tuple[Digest, Any]],
                  result_key: Digest, result: Any) -> Exception | None:  # fmt: skip
            framed = serialise_values(frame_of, arguments, result_key, result)
            if isinstance(framed, Exception):
                return framed
            now, rows = time.time(), []
            for value_key, frame in framed.items():
                # a small value comes as bytes (``Codec.small_frame``); a large one's file is
                # written from its frame
                if type(frame) is not bytes and frame.nbytes > threshold:
                    values._save_large(value_key, frame)
                else:
                    rows.append((bytearray.fromhex(value_key), _blob(frame), now))
            self._execute_many(upsert, rows)
            put(key, record)
            return None

        return write

    def _decode(self, key: Digest, row: tuple[Any, ...]) -> DigestedCall:
        try:
            return _call_from_row(key, row)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _evict(self, key: Digest) -> None:
        blob = bytes.fromhex(key)
        if not self._unindex(blob):
            raise KeyError(key)
        self._execute("DELETE FROM calls WHERE key = ?", (blob,))

    def query(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        """Records matching ``template``: name, module, version and argument values are answered
        by indexes in SQL; metadata and "present, any value" arguments are checked in Python."""
        wanted = template.argument_digests()
        fixed = [(p, d) for p, d in wanted.items() if d is not None]
        where, parameters = self._where(template, dict(fixed[1:]))
        columns = ", ".join(f"c.{c.strip()}" for c in _CALL_COLUMNS.split(","))
        if fixed:  # driven by the first argument's index entries: never a scan of the function
            sql = (
                f"SELECT a.call, {columns} FROM args a CROSS JOIN calls c ON c.key = a.call "
                f"WHERE a.param = ? AND a.value = ? AND a.call > ?{where} "
                f"ORDER BY a.call LIMIT {_PAGE}"
            )
            parameters = [fixed[0][0], bytes.fromhex(fixed[0][1]), *parameters]
        else:
            sql = (
                f"SELECT c.key, {columns} FROM calls c WHERE c.key > ?{where} "
                f"ORDER BY c.key LIMIT {_PAGE}"
            )
        last = b""
        while True:  # pages: no statement stays open while the caller works on the results
            bound = (*parameters[:2], last, *parameters[2:]) if fixed else (last, *parameters)
            page = self._execute(sql, bound).fetchall()
            for blob, *row in page:
                key = Digest(blob.hex())
                try:
                    record = self._decode(key, tuple(row))
                except KeyError:  # corrupt: warned and evicted
                    continue
                if template.matches(record, arg_digests=wanted):
                    yield key, record
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    @staticmethod
    def _where(template: QueryCall, wanted: dict[str, Digest | None]) -> tuple[str, list[Any]]:
        where, parameters = "", list[Any]()
        for column, value in (
            ("name", template.name),
            ("module", template.module),
            ("version", _version_text(template.version)),
        ):
            if value is not None:
                where += f" AND c.{column} = ?"
                parameters.append(value)
        for param, value_digest in wanted.items():
            if value_digest is not None:
                where += " AND c.key IN (SELECT call FROM args WHERE param = ? AND value = ?)"
                parameters += [param, bytes.fromhex(value_digest)]
        return where, parameters


class ValueEmbedded(SaveOnceMixin, EmbeddedBackend):
    """Values: no per-key lock is needed, as each write is one transaction of identical bytes."""

    # a small value in one statement: inserted, or its row touched as ``_touch`` does
    _upsert_inline = (
        "INSERT INTO vals VALUES (?, ?, NULL, ?) ON CONFLICT (key) DO UPDATE"
        " SET written = excluded.written"
        f" WHERE NOT (excluded.written - written >= 0 AND excluded.written - written < {TOUCH_AFTER})"
    )

    def save(self, value: Any, key: str | None = None) -> Digest:
        key = digest(value) if key is None else check_key(key)
        with self._operation_context(key, intent=Intent.WRITE):
            frame = self.codec.small_frame(key, value, self.threshold)
            if isinstance(frame, Frame) and frame.nbytes > self.threshold:
                self._save_large(key, frame)
            else:  # one statement, not a look then a write
                row = (bytearray.fromhex(key), _blob(frame), time.time())
                self._execute(self._upsert_inline, row)
        return key

    def stage(self, value: Any, key_of: Callable[[], Digest]
              ) -> AbstractContextManager[Callable[[], Digest]]:  # fmt: skip
        """A large value written while the caller digests it (see ``_staging``); only values
        above the threshold, which live in files."""
        return _staging.stage(self._files, self.codec, value, key_of, mode=self.mode, ops=self.ops,
                              at_least=self.threshold + 1)  # fmt: skip

    def _save_large(self, key: Digest, frame: Frame) -> None:
        """A value above the threshold, from its frame, in the open transaction: its file is
        written only when it is new (a stored one is touched)."""
        if not self._touch(key):
            row = self._value_row(key, bytes.fromhex(key), None, frame)
            self._execute("INSERT INTO vals VALUES (?, ?, ?, ?)", row)

    def _save_many(self, items: builtins.list[tuple[Digest, Any]]) -> None:
        """Many values in one transaction (a batch's): one look for those already stored, which
        are touched as ``save`` touches them, one statement for the rest."""
        with self._db.transaction():
            now = time.time()
            written = dict(self._rows_among(", written", [key for key, _ in items]))
            stale = [
                (now, blob) for blob, when in written.items() if not 0 <= now - when < TOUCH_AFTER
            ]
            self._execute_many("UPDATE vals SET written = ? WHERE key = ?", stale)
            rows = []
            for key, value in items:
                blob = bytes.fromhex(key)
                if blob not in written:
                    written[blob] = now  # a key given twice is written once
                    rows.append(self._value_row(key, blob, value))
            self._execute_many("INSERT INTO vals VALUES (?, ?, ?, ?)", rows)


class CallEmbedded(CallMixin, FileKeyLockMixin, EmbeddedCallBackend):
    """Call records. ``query`` is named here, lest ``CallMixin``'s scan win. A key's process lock
    is a byte of ``DIR/locks/calls.lock`` (see ``_files.RangeLock``): no file per key."""

    query = EmbeddedCallBackend.query

    def _save_many(self, items: builtins.list[tuple[Digest, DigestedCall]]) -> None:
        """Many records in one transaction (a batch's; the caller holds their keys' locks): the
        new ones in one statement and their argument rows in another; one that replaces a
        stored record is written as ``save`` writes it."""
        with self._db.transaction():
            present = {row[0] for row in self._rows_among("", [key for key, _ in items])}
            rows, arguments = [], []
            for key, record in items:
                blob = bytes.fromhex(key)
                if blob in present:
                    self._put(key, record)
                    continue
                present.add(blob)
                row = _call_row(key, record, blob)
                rows.append((blob, *row))
                arguments += _argument_rows(blob, row[4], record.arguments)
            self._execute_many(_INSERT_CALL, rows)
            self._execute_many(_INSERT_ARGUMENTS, arguments)


def cache_from_url(url: str) -> Cache:
    """The embedded cache in a directory: ``embedded:///abs/dir?threshold=32768&durable=1``.

    Raises ``ConfigError`` for a bad URL or a database written with another digest scheme.
    """
    options = asdict(DirectoryOptions.parse(url, "embedded"))
    root = options.pop("root")
    values = ValueEmbedded(root, **options)
    return Cache(values, CallEmbedded(root, **options), url=values.to_url())
