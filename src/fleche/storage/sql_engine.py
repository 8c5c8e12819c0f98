"""The SQL storage's connection layer: URL options, one engine per server, per-thread connections.

SQLAlchemy owns the engine (one per server URL in a process, shared by every storage naming it),
its pool and dialect. The hot path bypasses its statement machinery: statements are compiled once
into the driver's positional paramstyle (``compile``) and run on the driver's own connection, taken
from the engine (``raw_connection``), detached from the pool and kept per thread in autocommit, so a
read is one driver call. Writes run there too, each in one transaction (or, in a batch, all in the
batch's transaction, see ``_Batch``), and so do the reads of
several statements, each in one snapshot. Advisory locks use one more
connection per thread, so nested locks never drain the pool. After ``fork`` the child drops the
parent's connections without closing them (that would close the parent's sessions) and opens its own.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ..errors import ConfigError, SaveError, StorageError
from .base import NULL_CONTEXT, BatchScope
from .sql_dialects import Dialect, dialect_for, lock_directory

__all__ = ["Database", "SqlOptions", "compile_named", "compile_positional", "database_for"]

T = TypeVar("T")
_OURS = ("prefix", "durable", "secret_key", "compress", "lock_timeout")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SqlOptions:
    """A parsed SQL URL: what SQLAlchemy connects to, and fleche's own options."""

    engine_url: URL
    dialect: Dialect
    prefix: str = "fleche"
    durable: bool = False
    secret_key: str | None = None
    compress: str | None = None
    lock_timeout: float | None = None

    @classmethod
    def parse(cls, url: str | os.PathLike[str] | None) -> SqlOptions:
        """Split ``url`` (None: an in-memory SQLite database; a plain path: an SQLite file)."""
        text = "sqlite://" if url is None else os.fspath(url)
        if "://" not in text:
            text = f"sqlite:///{text}"
        scheme, _, rest = text.partition("://")
        backend, _, driver = scheme.lower().partition("+")
        backend = {"postgres": "postgresql"}.get(backend, backend)
        dialect = dialect_for(backend)
        parsed = make_url(f"{backend}{'+' if driver else ''}{driver}://{rest}")
        ours = {k: str(v) for k, v in parsed.query.items() if k in _OURS}
        timeout = ours.get("lock_timeout")
        try:
            lock_timeout = None if timeout is None else float(timeout)
        except ValueError:
            raise ConfigError(f"lock_timeout={timeout!r}: expected seconds") from None
        return cls(
            engine_url=dialect.engine_url(parsed.difference_update_query(_OURS)),
            dialect=dialect,
            prefix=ours.get("prefix", "fleche"),
            durable=ours.get("durable", "").lower() in _TRUE,
            secret_key=ours.get("secret_key") or None,
            compress=ours.get("compress") or None,
            lock_timeout=lock_timeout,
        )

    def url(self, *, mask: bool = False) -> str:
        """The normalised URL (``mask`` hides the password and the secret key)."""
        engine_url = self.engine_url
        if self.dialect.name == "sqlite":
            engine_url = engine_url.set(drivername="sqlite")
        options = {} if self.prefix == "fleche" else {"prefix": self.prefix}
        if self.durable:
            options["durable"] = "1"
        if self.lock_timeout is not None:
            options["lock_timeout"] = f"{self.lock_timeout:g}"
        if self.compress:
            options["compress"] = self.compress
        if self.secret_key:
            options["secret_key"] = "***" if mask else self.secret_key
        text = engine_url.render_as_string(hide_password=mask)
        extra = "&".join(f"{k}={v}" for k, v in options.items())
        return text + ("&" if "?" in text else "?") + extra if extra else text


class _Connection:
    """A driver connection taken from the engine, detached from its pool, in autocommit."""

    __slots__ = ("cursor", "dbapi", "pid", "proxied", "timeout")

    def __init__(self, engine: sa.Engine, dialect: Dialect, *, detach: bool = True) -> None:
        self.proxied = engine.raw_connection()  # the engine's connect events run (SQLite pragmas)
        if detach:  # held for the thread's life: it must not count against the pool
            self.proxied.detach()
        self.dbapi: Any = self.proxied.dbapi_connection
        dialect.autocommit(self.dbapi)
        self.cursor = self.dbapi.cursor()  # type: ignore[union-attr]
        self.pid = os.getpid() if detach else -1  # -1: the pool's, never closed here
        self.timeout: float | None = None  # the lock timeout set on this session, if any

    def close(self) -> None:
        if self.pid == os.getpid():  # never close a connection inherited through fork
            try:
                self.dbapi.close()
            except Exception:  # already broken: nothing left to release
                pass

    def __del__(self) -> None:  # the thread that held it ended
        self.close()


class _ThreadState(threading.local):
    """A thread's connections and batch; None by class default, so that a look for one not made
    yet costs no AttributeError (1.2 us each on a plain ``threading.local``)."""

    conn: Any = None
    batch: Any = None


_orphans: list[Any] = []  # connections inherited through fork: kept, never used, never closed


class _Batch(BatchScope):
    """One thread's batch on a server: its writes share one transaction on the thread's hot-path
    connection, begun by the first write and committed when the outermost block ends, or sooner
    by ``pause``. A statement that fails in it rolls the whole transaction back (a server aborts
    it anyway); if earlier writes were lost so, the batch raises ``SaveError`` when it ends, even
    if the caller caught the first error."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db, self.open, self.written = db, False, 0
        self.failed: BaseException | None = None

    def pause(self) -> None:
        if self.open:
            self.db._end_batch(self, commit=True)

    def finish(self, ok: bool) -> None:
        failed, self.failed = self.failed, None
        if self.open:
            self.db._end_batch(self, commit=ok and failed is None)
        if failed is not None and ok:
            raise SaveError(
                f"{self.db.dialect.name}: a write in a batch failed ({type(failed).__name__}: "
                f"{failed}); the batch's writes not committed before it were rolled back"
            ) from failed

    def lost(self, error: BaseException) -> None:
        """The transaction failed: it is rolled back, and remembered if it held writes."""
        if self.written:
            self.failed = self.failed or error
        self.open, self.written = False, 0


CONFLICT_RETRIES = 8  # a write the server rolled back to break a deadlock is run again this often


class Database:
    """One engine per server URL in a process, with the hot path's and the locks' connections."""

    def __init__(self, options: SqlOptions) -> None:
        self.dialect = options.dialect
        self.url = options.engine_url
        self.engine = self.dialect.create_engine(self.url, durable=options.durable)
        dbapi = self.engine.dialect.loaded_dbapi
        self.error: type[Exception] = dbapi.Error
        self.transient = (dbapi.OperationalError, dbapi.InterfaceError)
        self.lock_dir = lock_directory(self.url)
        self.serial: AbstractContextManager[Any] = nullcontext()  # see _MemoryDatabase
        self._fresh()

    def _fresh(self) -> None:
        self._local = _ThreadState()
        self._locks = _ThreadState()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them."""
        _orphans.extend((self._local, self._locks))
        self.engine.dispose(close=False)
        self._fresh()

    def core(self) -> AbstractContextManager[sa.Connection]:
        """An SQLAlchemy connection for schema work, listings and queries."""
        return self.engine.connect()

    # --- the hot path ---------------------------------------------------------------------------
    def _connection(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _Connection(self.engine, self.dialect)
        return conn

    def _drop(self) -> None:
        conn = self._local.__dict__.pop("conn", None)
        if conn is not None:
            conn.close()

    def fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of one statement; a broken connection is replaced and the read tried once more."""
        for attempt in (0, 1):
            cursor = self._connection().cursor
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            except self.transient as e:
                self._batch_lost(cursor, e)
                self._drop()
                if attempt:
                    raise StorageError(f"{self.dialect.name}: read failed: {e}") from e
            except self.error as e:
                self._batch_lost(cursor, e)
                raise StorageError(f"{self.dialect.name}: read failed: {e}") from e
        raise AssertionError("unreachable")

    def write(self, work: Callable[[Any], T], *, pipelined: bool = False) -> T:
        """Run ``work(cursor)`` in one transaction, once more if the connection broke; in an
        open batch, in the batch's transaction. ``pipelined``: ``work`` only sends statements
        and reads no result (not even a row count), so the whole transaction may go to the
        server in one round trip where the dialect can (``Dialect.pipeline``)."""
        batch = getattr(self._local, "batch", None)
        if batch is not None and batch.depth:
            return self._in_batch(batch, work, "write")
        return self._transaction((self.dialect.begin,), work, "write", pipelined=pipelined)

    def read(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in one read-only transaction that sees one snapshot (in an open
        batch, in the batch's transaction, which sees the batch's writes)."""
        batch = getattr(self._local, "batch", None)
        if batch is not None and batch.open:
            return self._in_batch(batch, work, "read")
        return self._transaction(self.dialect.snapshot, work, "read")

    # --- batches ----------------------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[Any]:
        """This thread's batch (see :meth:`OperationContext.batch`)."""
        batch = getattr(self._local, "batch", None)
        if batch is None:
            batch = self._local.batch = _Batch(self)
        return batch

    def _in_batch(self, batch: _Batch, work: Callable[[Any], T], what: str) -> T:
        if not batch.open:
            self._begin_batch()
            batch.open = True
        cursor = self._connection().cursor
        try:
            result = work(cursor)
        except BaseException as e:
            self._abort(cursor)
            batch.lost(e)
            if isinstance(e, self.error):
                raise StorageError(f"{self.dialect.name}: {what} failed: {e}") from e
            raise
        batch.written += what == "write"
        return result

    def _begin_batch(self) -> None:
        for attempt in (0, 1):  # nothing of the batch is lost yet: a broken connection is replaced
            try:
                self._connection().cursor.execute(self.dialect.begin)
                return
            except self.transient as e:
                self._drop()
                if attempt:
                    raise StorageError(f"{self.dialect.name}: write failed: {e}") from e
            except self.error as e:
                raise StorageError(f"{self.dialect.name}: write failed: {e}") from e

    def _end_batch(self, batch: _Batch, *, commit: bool) -> None:
        cursor = self._connection().cursor
        batch.open, batch.written = False, 0
        if not commit:
            self._abort(cursor)
            return
        try:
            cursor.execute("COMMIT")
        except self.error as e:
            self._abort(cursor)
            raise SaveError(f"{self.dialect.name}: commit failed: {e}") from e

    def _batch_lost(self, cursor: Any, error: BaseException) -> None:
        """A statement failed inside this thread's open batch: its transaction is gone."""
        batch = getattr(self._local, "batch", None)
        if batch is not None and batch.open:
            self._abort(cursor)
            batch.lost(error)

    def _transaction(self, begin: tuple[str, ...], work: Callable[[Any], T], what: str, *,
                     pipelined: bool = False) -> T:  # fmt: skip
        """Run ``work`` in a transaction: once more after a broken connection, and up to
        ``CONFLICT_RETRIES`` times more, rolled back and after a short random pause, when it lost
        a lock conflict (``Dialect.is_conflict``: a deadlock's victim; InnoDB's gap locks make
        these possible between misses that write neighbouring keys)."""
        broken = conflicts = 0
        while True:
            conn = self._connection()
            cursor = conn.cursor
            try:
                with self.dialect.pipeline(conn.dbapi) if pipelined else nullcontext():
                    for statement in begin:
                        cursor.execute(statement)
                    result = work(cursor)
                    cursor.execute("COMMIT")
                return result
            except self.transient as e:
                self._abort(cursor)
                if self.dialect.is_conflict(e) and conflicts < CONFLICT_RETRIES:
                    conflicts += 1
                    time.sleep(random.uniform(0, 0.005 * conflicts))
                    continue
                if broken:
                    raise StorageError(f"{self.dialect.name}: {what} failed: {e}") from e
                broken += 1
            except self.error as e:
                self._abort(cursor)
                raise StorageError(f"{self.dialect.name}: {what} failed: {e}") from e
            except BaseException:
                self._abort(cursor)
                raise

    def _abort(self, cursor: Any) -> None:
        try:
            cursor.execute("ROLLBACK")
        except Exception:  # the connection is gone; so is its transaction
            self._drop()

    # --- the locks' connection --------------------------------------------------------------------
    def lock_connection(self) -> _Connection:
        """This thread's connection for advisory locks (they nest on it)."""
        conn = getattr(self._locks, "conn", None)
        if conn is None:
            conn = self._locks.conn = _Connection(self.engine, self.dialect)
        return conn

    def drop_lock_connection(self) -> None:
        conn = self._locks.__dict__.pop("conn", None)
        if conn is not None:
            conn.close()


class _MemoryDatabase(Database):
    """An in-memory SQLite database: one connection, so every use is serialised by one lock."""

    def _fresh(self) -> None:
        super()._fresh()
        self.serial = threading.RLock()
        self._shared: _Connection | None = None

    def after_fork(self) -> None:  # the child keeps its copy of the database (and no lock holder)
        self.serial = threading.RLock()

    @contextmanager
    def core(self) -> Iterator[sa.Connection]:
        with self.serial, self.engine.connect() as conn:
            yield conn

    def _connection(self) -> _Connection:
        if self._shared is None:  # the pool's one connection (detached, the database would go)
            self._shared = _Connection(self.engine, self.dialect, detach=False)
        return self._shared

    def _drop(self) -> None:
        pass

    def fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self.serial:
            return super().fetch(sql, params)

    def batch(self) -> AbstractContextManager[Any]:
        return NULL_CONTEXT  # one connection for every thread: a batch would hold it for them all

    def _transaction(self, begin: tuple[str, ...], work: Callable[[Any], T], what: str, *,
                     pipelined: bool = False) -> T:  # fmt: skip
        with self.serial:
            return super()._transaction(begin, work, what, pipelined=pipelined)


_databases: dict[tuple[str, bool], Database] = {}
_databases_lock = threading.Lock()


def database_for(options: SqlOptions) -> Database:
    """The process's shared engine for the server (and SQLite durability) ``options`` name."""
    key = (options.engine_url.render_as_string(hide_password=False), options.durable)
    db = _databases.get(key)
    if db is None:
        with _databases_lock:
            db = _databases.get(key)
            if db is None:
                memory = options.dialect.name == "sqlite" and options.engine_url.database is None
                db = _databases[key] = (_MemoryDatabase if memory else Database)(options)
    return db


def _after_fork_in_child() -> None:
    global _databases_lock
    _databases_lock = threading.Lock()  # a parent thread may have held it at the fork
    for db in _databases.values():
        db.after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def compile_named(db: Database, stmt: Any) -> tuple[str, tuple[str, ...]]:
    """``stmt`` as the driver's SQL, and the names of its positional parameters in order."""
    compiled = stmt.compile(dialect=db.engine.dialect)
    return str(compiled), tuple(compiled.positiontup or ())


def compile_positional(db: Database, stmt: Any, *names: str) -> str:
    """``stmt`` as the driver's SQL, its positional parameters in the order ``names``."""
    sql, order = compile_named(db, stmt)
    if order != names:
        raise AssertionError(f"parameters {order} are not in the order {names}")
    return sql
