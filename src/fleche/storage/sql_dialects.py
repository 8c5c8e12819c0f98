"""What differs between SQLite, PostgreSQL and MariaDB, in one place (SPEC sections 5 and 6).

The SQL storage has one code path; everything a dialect changes lives here: the driver and its
default, engine options, connection setup (SQLite pragmas, autocommit on the hot-path connections),
column types, the upsert statement, how a write transaction begins, and the locks: the per-key
cross-process lock (``pg_advisory_lock``, ``GET_LOCK``, a byte of a lock file next to an SQLite file) and
the lock that serialises schema creation and upgrades.
"""

from __future__ import annotations

import importlib
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
import xxhash
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..errors import ConfigError, LockTimeoutError, MissingDependencyError
from ._files import range_lock
from .base import pause_batches
from .embedded import PAGE_CACHE_KIB
from .locking import release_all

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

__all__ = ["BLOB", "KEY", "NAME", "TEXT", "Dialect", "dialect_for"]

log = logging.getLogger(__name__)

_MYSQL = ("mysql", "mariadb")

# --- column types: keys sort bytewise, so a key prefix is a key range on every server ----------
KEY = (
    sa.String(32)
    .with_variant(sa.String(32, collation="C"), "postgresql")
    .with_variant(mysql.CHAR(32, charset="ascii", collation="ascii_bin"), *_MYSQL)
)
BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL)
TEXT = sa.Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def NAME(length: int) -> sa.types.TypeEngine[str]:
    """A short text column compared exactly (MariaDB's default collation ignores case)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


class Dialect:
    """The behaviour of one kind of server; subclasses override what their server does otherwise."""

    name = "base"
    driver = ""  # SQLAlchemy driver name, the only one supported (the hot path speaks its DBAPI)
    module = ""  # the import name of that driver
    extra = "all"  # pip extra that installs it
    paramstyle = "format"  # positional, so hot-path parameters are plain tuples
    begin = "BEGIN"
    # a read of several statements that sees one state of the database (a large value's chunks)
    snapshot: tuple[str, ...] = ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",)
    table_options: ClassVar[dict[str, Any]] = {}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    # --- engine -----------------------------------------------------------------------------------
    def check_driver(self) -> None:
        """Import the driver, or raise ``MissingDependencyError`` naming the extra to install."""
        try:
            importlib.import_module(self.module)
        except ImportError as e:
            raise MissingDependencyError(self.module, self.extra, f"{self.name} caches") from e

    def engine_url(self, url: URL) -> URL:
        """``url`` with this dialect's supported driver (``postgresql://`` -> psycopg, ...)."""
        driver = url.get_driver_name()
        if url.drivername.partition("+")[2] and driver != self.driver:
            raise ConfigError(
                f"the {self.name} driver {driver!r} is not supported; use {self.name}+{self.driver}"
            )
        return url.set(drivername=f"{url.get_backend_name()}+{self.driver}")

    def create_engine(self, url: URL, *, durable: bool) -> Engine:
        return sa.create_engine(url, paramstyle=self.paramstyle, **self.engine_options(url))

    def engine_options(self, url: URL) -> dict[str, Any]:
        # pre-ping: a pooled connection the server dropped (restart, pg_terminate_backend) is
        # replaced at checkout, so a retry after a broken connection gets a live one
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}

    def autocommit(self, dbapi_connection: Any) -> None:
        """Put a hot-path connection in autocommit: each read sees the latest commit."""
        raise NotImplementedError

    def pipeline(self, dbapi_connection: Any) -> AbstractContextManager[Any]:
        """A block whose statements are sent without waiting for each one's answer, their
        errors raised when it ends (PostgreSQL's pipeline mode); elsewhere, nothing."""
        return nullcontext()

    def is_conflict(self, error: BaseException) -> bool:
        """True when the transaction failed only because another one held what it needed (a
        deadlock, a serialisation conflict, a lock wait timeout): once it is rolled back,
        running it again is safe."""
        return False

    # --- statements -------------------------------------------------------------------------------
    def upsert(self, table: sa.Table, values: dict[str, Any], update: list[str]) -> Any:
        """INSERT that overwrites the columns ``update`` of an existing row with the same key."""
        pk = [c.name for c in table.primary_key]
        stmt = postgresql.insert(table).values(values)
        return stmt.on_conflict_do_update(
            index_elements=pk, set_={c: stmt.excluded[c] for c in update}
        )

    # --- locks ------------------------------------------------------------------------------------
    def process_lock(self, db: Any, space: str, key: str, timeout: float) -> Any:
        """The cross-process lock of ``key`` in the key space ``space`` (a table), or None."""
        return None

    def process_locks_nowait(self, db: Any, space: str, keys: list[str], timeout: float
                             ) -> dict[str, Any]:  # fmt: skip
        """The locks of ``keys`` that nobody holds, taken without waiting: key -> entered lock
        (None where there is none to take). One by one here; servers may take many at once."""
        taken: dict[str, Any] = {}
        for key in keys:
            lock = self.process_lock(db, space, key, timeout)
            if lock is None or lock.try_enter():
                taken[key] = lock
        return taken

    def release_process_locks(self, db: Any, locks: list[Any]) -> None:
        """Release locks :meth:`process_locks_nowait` took."""
        release_all(locks)

    def schema_lock(self, conn: sa.Connection, space: str) -> AbstractContextManager[Any]:
        """Serialises schema creation and upgrades between processes (inside a transaction)."""
        raise NotImplementedError


class SqliteDialect(Dialect):
    name = "sqlite"
    driver = "pysqlite"
    module = "sqlite3"
    paramstyle = "qmark"
    begin = "BEGIN IMMEDIATE"  # take the write lock up front: a deferred upgrade can deadlock
    snapshot = ("BEGIN",)  # in WAL mode, a read transaction keeps the snapshot of its first read
    table_options: ClassVar[dict[str, Any]] = {"sqlite_with_rowid": False}

    def engine_url(self, url: URL) -> URL:
        url = super().engine_url(url)
        if self.is_memory(url):
            return url.set(database=None)
        path = Path(url.database or "").expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return url.set(database=str(path))

    @staticmethod
    def is_memory(url: URL) -> bool:
        return url.database in (None, "", ":memory:")

    def create_engine(self, url: URL, *, durable: bool) -> Engine:
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        memory = self.is_memory(url)
        if memory:  # one connection for every thread: an in-memory database lives in it
            options["poolclass"] = sa.StaticPool
        engine = sa.create_engine(url, paramstyle=self.paramstyle, **options)
        synchronous = "FULL" if durable else "NORMAL"

        @sa.event.listens_for(engine, "connect")
        def _setup(dbapi_connection: Any, record: Any) -> None:
            # the driver's own transaction handling is off; BEGIN is emitted below (SQLAlchemy's
            # documented recipe), and hot-path connections stay in autocommit
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            # 16 MiB of pages, as the embedded default (SQLite's default is 2 MiB): a hit at
            # 100,000 calls (a 118 MiB file) took 27.0-28.1 µs with 2 MiB, 23.5-24.5 with 16
            cursor.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            immediate = conn.get_execution_options().get("fleche_immediate")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def autocommit(self, dbapi_connection: Any) -> None:
        dbapi_connection.isolation_level = None

    def upsert(self, table: sa.Table, values: dict[str, Any], update: list[str]) -> Any:
        pk = [c.name for c in table.primary_key]
        stmt = sqlite.insert(table).values(values)
        return stmt.on_conflict_do_update(
            index_elements=pk, set_={c: stmt.excluded[c] for c in update}
        )

    def process_lock(self, db: Any, space: str, key: str, timeout: float) -> Any:
        if db.lock_dir is None:  # in memory: no other process can see this database
            return None
        # one byte of one file per table (``_files.RangeLock``): no file is left per key; the
        # thread-level table is shared by the storages of the database (``CallSql._lock_table``)
        return range_lock(f"{db.lock_dir}/{space}.lock", key, timeout)

    def schema_lock(self, conn: sa.Connection, space: str) -> AbstractContextManager[Any]:
        # the transaction began with BEGIN IMMEDIATE (see ``_begin``): it holds the write lock
        return _Nothing()


class PostgresDialect(Dialect):
    name = "postgresql"
    driver = "psycopg"
    module = "psycopg"
    extra = "postgres"

    def autocommit(self, dbapi_connection: Any) -> None:
        dbapi_connection.autocommit = True

    def is_conflict(self, error: BaseException) -> bool:
        return getattr(error, "sqlstate", None) in ("40P01", "40001")  # deadlock, serialisation

    def pipeline(self, dbapi_connection: Any) -> AbstractContextManager[Any]:
        """psycopg's pipeline mode (libpq 14 or newer): a miss's transaction, from ``BEGIN`` to
        ``COMMIT``, in one round trip instead of one a statement (a miss 1.9 -> 1.2 ms)."""
        import psycopg

        if not psycopg.Pipeline.is_supported():
            return nullcontext()
        return dbapi_connection.pipeline()

    def process_lock(self, db: Any, space: str, key: str, timeout: float) -> Any:
        return _AdvisoryLock(db, _bigint(f"{space}:{key}"), timeout)

    def process_locks_nowait(self, db: Any, space: str, keys: list[str], timeout: float
                             ) -> dict[str, Any]:  # fmt: skip
        """Every free key's advisory lock in one round trip (``pg_try_advisory_lock``)."""
        locks = {key: _AdvisoryLock(db, _bigint(f"{space}:{key}"), timeout) for key in keys}
        ids = [lock.lock_id for lock in locks.values()]
        rows = _on_lock_connection(
            db, "SELECT id, pg_try_advisory_lock(id) FROM unnest(%s::bigint[]) AS id", (ids,)
        )
        got = {lock_id for lock_id, ok in rows if ok}
        return {key: lock for key, lock in locks.items() if lock.lock_id in got}

    def release_process_locks(self, db: Any, locks: list[Any]) -> None:
        """Every lock in one round trip (``pg_advisory_unlock``)."""
        ids = [lock.lock_id for lock in locks]
        try:
            _on_lock_connection(
                db, "SELECT pg_advisory_unlock(id) FROM unnest(%s::bigint[]) AS id", (ids,)
            )
        except Exception as e:  # the session is gone, and its locks with it
            log.warning("could not release %d advisory locks: %s", len(ids), e)
            db.drop_lock_connection()

    def schema_lock(self, conn: sa.Connection, space: str) -> AbstractContextManager[Any]:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_bigint(f"{space}:schema"))))
        return _Nothing()  # released by the transaction's end


class MysqlDialect(Dialect):
    name = "mysql"
    driver = "pymysql"
    module = "pymysql"
    extra = "mysql"
    begin = "START TRANSACTION"
    snapshot = (  # the isolation level for the next transaction only, whatever the server's
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    )
    table_options: ClassVar[dict[str, Any]] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

    def is_conflict(self, error: BaseException) -> bool:
        return bool(error.args) and error.args[0] in (1213, 1205)  # deadlock, lock wait timeout

    def engine_options(self, url: URL) -> dict[str, Any]:
        # the server closes idle connections after wait_timeout (8 h by default)
        return {
            "connect_args": {"connect_timeout": 10},
            "pool_recycle": 3600,
            "pool_pre_ping": True,
        }

    def autocommit(self, dbapi_connection: Any) -> None:
        dbapi_connection.autocommit(True)

    def upsert(self, table: sa.Table, values: dict[str, Any], update: list[str]) -> Any:
        stmt = mysql.insert(table).values(values)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})

    def process_lock(self, db: Any, space: str, key: str, timeout: float) -> Any:
        # lock names are server-wide and at most 64 characters: hash database, space and key
        name = "fleche-" + xxhash.xxh3_128_hexdigest(f"{db.url.database}:{space}:{key}".encode())
        return _NamedLock(db, name, timeout)

    def schema_lock(self, conn: sa.Connection, space: str) -> AbstractContextManager[Any]:
        # DDL commits implicitly in MariaDB, so the lock must outlive any one transaction
        name = "fleche-" + xxhash.xxh3_128_hexdigest(
            f"{conn.engine.url.database}:{space}:schema".encode()
        )
        return _SchemaNamedLock(conn, name)


_DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SqliteDialect,
    "postgresql": PostgresDialect,
    "mysql": MysqlDialect,
    "mariadb": MysqlDialect,
}


def dialect_for(backend: str) -> Dialect:
    """The dialect of an SQLAlchemy backend name; ``ConfigError`` for an unsupported one."""
    try:
        return _DIALECTS[backend]()
    except KeyError:
        known = ", ".join(sorted(_DIALECTS))
        raise ConfigError(f"unsupported SQL backend {backend!r}; supported: {known}") from None


def _bigint(text: str) -> int:
    """A signed 64-bit lock id for ``text`` (what ``pg_advisory_lock`` takes)."""
    value = xxhash.xxh3_64_intdigest(text.encode())
    return value - (1 << 64) if value >= 1 << 63 else value


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _on_lock_connection(db: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Rows of ``sql`` on the thread's lock connection, replaced once if found dead."""
    for attempt in (0, 1):
        cursor = db.lock_connection().cursor
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        except Exception as e:
            db.drop_lock_connection()
            if attempt or not isinstance(e, db.transient):
                raise
    raise AssertionError("unreachable")


class _AdvisoryLock:
    """``pg_advisory_lock`` on the thread's lock connection; ``lock_timeout`` bounds the wait."""

    __slots__ = ("db", "lock_id", "timeout")
    pauses_batches = True  # it calls ``pause_batches`` before it waits (see ``locking``)

    def __init__(self, db: Any, lock_id: int, timeout: float) -> None:
        self.db, self.lock_id, self.timeout = db, lock_id, timeout

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it, without waiting; True when taken."""
        sql = "SELECT pg_try_advisory_lock(%s)"
        return bool(_on_lock_connection(self.db, sql, (self.lock_id,))[0][0])

    def __enter__(self) -> None:
        if self.try_enter():
            return
        pause_batches()
        for attempt in (0, 1):  # a lock connection found dead is replaced once
            holder = self.db.lock_connection()
            cursor = holder.cursor
            try:
                if holder.timeout != self.timeout:
                    milliseconds = max(1, round(self.timeout * 1000))  # 0: "wait forever"
                    cursor.execute(
                        "SELECT set_config('lock_timeout', %s, false)", (f"{milliseconds}ms",)
                    )
                    holder.timeout = self.timeout
                cursor.execute("SELECT pg_advisory_lock(%s)", (self.lock_id,))
                return
            except Exception as e:
                if getattr(e, "sqlstate", None) == "55P03":  # lock_not_available
                    raise LockTimeoutError(
                        f"gave up waiting {self.timeout:g}s for the advisory lock {self.lock_id}"
                    ) from None
                self.db.drop_lock_connection()
                if attempt or not isinstance(e, self.db.transient):
                    raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.db.lock_connection().cursor.execute(
                "SELECT pg_advisory_unlock(%s)", (self.lock_id,)
            )
        except Exception as e:  # the session is gone, and its locks with it
            log.warning("could not release the advisory lock %s: %s", self.lock_id, e)
            self.db.drop_lock_connection()


class _NamedLock:
    """``GET_LOCK`` on the thread's lock connection (MariaDB nests them per session)."""

    __slots__ = ("db", "name", "timeout")
    pauses_batches = True  # it calls ``pause_batches`` before it waits (see ``locking``)

    def __init__(self, db: Any, name: str, timeout: float) -> None:
        self.db, self.name, self.timeout = db, name, timeout

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it, without waiting; True when taken."""
        return _on_lock_connection(self.db, "SELECT GET_LOCK(%s, 0)", (self.name,))[0][0] == 1

    def __enter__(self) -> None:
        if self.try_enter():
            return
        pause_batches()
        for attempt in (0, 1):  # a lock connection found dead is replaced once
            cursor = self.db.lock_connection().cursor
            try:
                cursor.execute("SELECT GET_LOCK(%s, %s)", (self.name, self.timeout))
                (got,) = cursor.fetchone()
                break
            except Exception as e:
                self.db.drop_lock_connection()
                if attempt or not isinstance(e, self.db.transient):
                    raise
        if got != 1:
            raise LockTimeoutError(f"gave up waiting {self.timeout:g}s for the lock {self.name}")

    def __exit__(self, *exc: object) -> None:
        try:
            self.db.lock_connection().cursor.execute("SELECT RELEASE_LOCK(%s)", (self.name,))
        except Exception as e:  # the session is gone, and its locks with it
            log.warning("could not release the lock %s: %s", self.name, e)
            self.db.drop_lock_connection()


class _SchemaNamedLock:
    __slots__ = ("conn", "name")

    def __init__(self, conn: sa.Connection, name: str) -> None:
        self.conn, self.name = conn, name

    def __enter__(self) -> None:
        got = self.conn.execute(sa.select(sa.func.get_lock(self.name, 60))).scalar()
        if got != 1:
            raise LockTimeoutError(f"gave up waiting 60s for the schema lock {self.name}")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute(sa.select(sa.func.release_lock(self.name)))


def lock_directory(url: URL) -> Path | None:
    """Where an SQLite database keeps its lock files (``<db>.locks``); None in memory."""
    if url.get_backend_name() != "sqlite" or SqliteDialect.is_memory(url):
        return None
    path = Path(f"{url.database}.locks")
    os.makedirs(path, exist_ok=True)
    return path
