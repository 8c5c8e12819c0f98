"""SQL storage on SQLAlchemy 2 Core: SQLite, PostgreSQL (psycopg 3), MariaDB (pymysql) (SPEC 5, 6, 9).

``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``, ``mysql+pymysql://user@host/db``
(``postgresql://`` and ``mysql://`` pick those drivers), with fleche's options in the query string:
``prefix=`` (table prefix, default ``fleche``), ``durable=1`` (SQLite ``synchronous=FULL``),
``secret_key=``, ``compress=zlib``, ``lock_timeout=``; the rest goes to the driver.

One code path for every server: the tables are in ``sql_schema``, the engine and the per-thread
driver connections of the hot path in ``sql_engine``, and all that differs between servers in
``sql_dialects``. A write is one transaction: a value's chunks together, a call record with its
argument rows, and a miss's values with its record (``_joint_writer``). Cross-process locks guard
call keys only: values are content-addressed and each write of one is atomic, so two writers of
a value write the same bytes. In a batch
(``storage.batch()``) the writes share one transaction, and ``_save_many`` writes many values or
records with one ``executemany`` per statement (pipelined by psycopg).
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa

from ..caches import Cache, serialise_values
from ..call import DigestedCall, QueryCall
from ..digest import Digest
from ..errors import IntegrityError
from .base import CallMixin, StorageBackend, UrlIdentity, ValueMixin, check_key
from .filesystem import shared_lock_table
from .locking import DEFAULT_LOCK_TIMEOUT, LockTable, ManyValuesMixin, PerKeyLockMixin
from .serialize import Codec, check_record_digests, dump_record, record_checksum
from .sql_engine import Database, SqlOptions, compile_named, compile_positional, database_for
from .sql_schema import (
    CHUNK_SIZE,
    QueryShape,
    Tables,
    clip,
    ensure_schema,
    query_parameters,
    query_statement,
    version_text,
)

__all__ = [
    "CallSql",
    "Sql",
    "SqlBackend",
    "SqlCallBackend",
    "ValueSql",
    "cache_from_url",
]


def _signed(checksum: int) -> int:
    """An unsigned 64-bit checksum as the signed value a BIGINT column holds."""
    return checksum - (1 << 64) if checksum >= 1 << 63 else checksum


def _chunks(parts: list[bytes | memoryview], size: int) -> Iterator[bytes]:
    """The concatenation of ``parts`` cut into pieces of ``size`` bytes (the last may be shorter)."""
    if sum(memoryview(p).nbytes for p in parts) <= size:
        yield b"".join(parts)
        return
    pending: list[memoryview] = []
    filled = 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view.nbytes:
            take = min(size - filled, view.nbytes)
            pending.append(view[:take])
            filled, view = filled + take, view[take:]
            if filled == size:
                yield b"".join(pending)
                pending, filled = [], 0
    if pending:
        yield b"".join(pending)


_NO_BUFFERS = bytes(4)
_SHAPES = 256  # compiled query statements kept per storage
_GROUP = 4  # chunks per statement when a large value is read: a few MiB in flight
_PAGE = 500  # keys per statement when many are looked up at once
_ZERO: Any = sa.literal_column("0")  # inline, not a parameter of the compiled statement


class SqlStore(UrlIdentity, StorageBackend):
    """What values and call records share: the URL, the engine, the schema, key listings."""

    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        self.options = options = SqlOptions.parse(url)
        options.dialect.check_driver()  # fail here, naming the extra to install
        if options.lock_timeout is not None:
            self.lock_timeout = options.lock_timeout
        self.codec = Codec(options.secret_key, options.compress)
        self.tables = Tables(options.prefix, options.dialect)
        self._db = db = database_for(options)
        with db.serial:
            ensure_schema(db.engine, options.prefix, options.dialect, options.url(mask=True))
        self._prepare(db)

    @property
    def _table(self) -> sa.Table:
        raise NotImplementedError

    def _prepare(self, db: Database) -> None:
        raise NotImplementedError

    def _keys(self) -> sa.Select[Any]:
        return sa.select(self._table.c.key)

    def list(self) -> Iterator[Digest]:
        """Every stored key, in order (on the thread's connection: in a batch, with its writes)."""
        sql = self.__dict__.get("_sql_list")
        if sql is None:
            stmt = self._keys().order_by(self._table.c.key)
            sql = self._sql_list = compile_positional(self._db, stmt)
        return iter([Digest(k) for (k,) in self._db.fetch(sql, ())])

    def __len__(self) -> int:
        with self._db.core() as conn:
            count = sa.select(sa.func.count()).select_from(self._keys().subquery())
            return int(conn.execute(count).scalar_one())

    def batch(self) -> Any:
        """This thread's writes in one transaction until the block ends (see ``sql_engine``)."""
        return self._db.batch()

    def _contains_many(self, keys: builtins.list[Digest]) -> set[Digest]:
        """The stored ones among ``keys``: one statement per page of keys."""
        found: set[Digest] = set()
        for start in range(0, len(keys), _PAGE):
            page = [check_key(k) for k in keys[start : start + _PAGE]]
            size = 1 << (len(page) - 1).bit_length()  # a few statement sizes, compiled once each
            page += page[-1:] * (size - len(page))
            found.update(Digest(k) for (k,) in self._db.fetch(self._sql_among(size), tuple(page)))
        return found

    def _sql_among(self, size: int) -> str:
        compiled: dict[int, str] = self.__dict__.setdefault("_sql_among_sizes", {})
        sql = compiled.get(size)
        if sql is None:
            keys = sa.bindparam("keys", value=["0"] * size, type_=sa.String, expanding=True)
            stmt = self._keys().where(self._table.c.key.in_(keys))
            text = stmt.compile(
                dialect=self._db.engine.dialect, compile_kwargs={"render_postcompile": True}
            )
            sql = compiled[size] = str(text)
        return sql

    def _candidates(self, prefix: str, limit: int) -> builtins.list[Digest]:
        # hex sorts below "g", so the keys with the prefix are the range [prefix, prefix + "g");
        # one prepared statement on the driver's cursor (no SQLAlchemy per call: expand is hot)
        sql = self.__dict__.get("_sql_candidates")
        if sql is None:
            column, text = self._table.c.key, sa.String
            low, high = sa.bindparam("low", type_=text), sa.bindparam("high", type_=text)
            stmt = self._keys().where(column >= low, column < high).order_by(column)
            sql = self._sql_candidates = compile_positional(self._db, stmt, "low", "high")
        rows = self._db.fetch(f"{sql} LIMIT {int(limit)}", (prefix, prefix + "g"))
        return [Digest(k) for (k,) in rows]


class SqlBackend(SqlStore):
    """Values: frames (``serialize.Codec``) in chunks of ``CHUNK_SIZE`` bytes, one row each."""

    @property
    def _table(self) -> sa.Table:
        return self.tables.values

    def _prepare(self, db: Database) -> None:
        sql = partial(compile_positional, db)
        t, dialect, key = self.tables.values, db.dialect, sa.bindparam("key", type_=sa.String)
        chunks = sa.select(t.c.chunk, t.c.data).where(t.c.key == key)
        self._sql_head = sql(chunks.order_by(t.c.chunk), "key") + " LIMIT 2"
        self._sql_last = sql(chunks.order_by(t.c.chunk.desc()), "key") + " LIMIT 1"
        low, high = sa.bindparam("low", type_=sa.Integer), sa.bindparam("high", type_=sa.Integer)
        between = chunks.where(t.c.chunk >= low, t.c.chunk < high).order_by(t.c.chunk)
        self._sql_chunks = sql(between, "key", "low", "high")
        self._sql_contains = sql(
            sa.select(t.c.chunk).where(t.c.key == key, t.c.chunk == _ZERO), "key"
        )
        self._sql_delete = sql(sa.delete(t).where(t.c.key == key), "key")
        trim = sa.delete(t).where(t.c.key == key, t.c.chunk >= sa.bindparam("n"))
        self._sql_trim = sql(trim, "key", "n")
        names = ("key", "chunk", "data", "written")
        upsert = dialect.upsert(t, {n: sa.bindparam(n) for n in names}, ["data", "written"])
        self._sql_put = sql(upsert, *names)

    def _keys(self) -> sa.Select[Any]:
        return sa.select(self._table.c.key).where(self._table.c.chunk == _ZERO)

    def _put(self, key: Digest, value: Any) -> None:
        parts = self.codec.dumps(key, value)  # serialised before the transaction begins
        written = time.time()

        def work(cursor: Any) -> None:
            count = 0
            for count, chunk in enumerate(_chunks(parts, CHUNK_SIZE), 1):
                cursor.execute(self._sql_put, (key, count - 1, chunk, written))
            cursor.execute(self._sql_trim, (key, count))  # a longer old value's tail

        self._db.write(work)

    def _put_many(self, items: builtins.list[tuple[Digest, Any]]) -> None:
        """Many values in one transaction: their chunks, then the tails of longer old values,
        each kind in one ``executemany``."""
        rows, tails, written = [], [], time.time()
        for key, value in items:  # serialised before the transaction begins
            count = 0
            for count, chunk in enumerate(_chunks(self.codec.dumps(key, value), CHUNK_SIZE), 1):
                rows.append((key, count - 1, chunk, written))
            tails.append((key, count))

        def work(cursor: Any) -> None:
            cursor.executemany(self._sql_put, rows)
            cursor.executemany(self._sql_trim, tails)

        if rows:
            self._db.write(work)

    def _get(self, key: Digest) -> Any:
        # one statement for a value of one chunk; a larger one is read again, chunk group by
        # chunk group, into one buffer in one snapshot, so a load holds the frame once
        rows = self._db.fetch(self._sql_head, (key,))
        if not rows:
            raise KeyError(key)
        if len(rows) == 1:
            return self._load_chunk(key, rows[0][1])
        del rows
        try:
            frame = self._db.read(partial(self._read_chunks, key))
            return self.codec.loads(key, frame)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _load_chunk(self, key: Digest, frame: bytes) -> Any:
        """The value whose whole frame is one chunk (``_get``, and the joined read of a hit)."""
        if frame[5:9] != _NO_BUFFERS:  # out-of-band buffers (arrays) load writable
            frame = bytearray(frame)  # type: ignore[assignment]
        try:
            return self.codec.loads(key, frame)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _read_chunks(self, key: Digest, cursor: Any) -> bytearray:
        """The frame of a value of several chunks, read in groups into one preallocated buffer."""
        cursor.execute(self._sql_last, (key,))
        row = cursor.fetchone()
        if row is None:  # evicted since the first read
            raise KeyError(key)
        last, tail = row
        frame = bytearray(last * CHUNK_SIZE + len(tail))
        view = memoryview(frame)
        view[last * CHUNK_SIZE :] = tail
        del row, tail
        expected = 0
        for low in range(0, last, _GROUP):
            cursor.execute(self._sql_chunks, (key, low, min(low + _GROUP, last)))
            for number, data in cursor.fetchall():
                if number != expected or len(data) != CHUNK_SIZE:
                    raise IntegrityError(f"value {key}: chunk {expected} is missing or torn")
                view[number * CHUNK_SIZE : (number + 1) * CHUNK_SIZE] = data
                expected += 1
        if expected != last:
            raise IntegrityError(f"value {key}: chunk {expected} is missing")
        return frame

    def _contains(self, key: Digest) -> bool:
        return bool(self._db.fetch(self._sql_contains, (key,)))

    def _evict(self, key: Digest) -> None:
        def work(cursor: Any) -> None:
            cursor.execute(self._sql_delete, (key,))
            if not cursor.rowcount:
                raise KeyError(key)

        self._db.write(work)

    def stored_size(self, key: str) -> int:
        """Bytes the value ``key`` occupies (its frame); ``KeyError`` when it is not stored."""
        t = self._table
        with self._db.core() as conn:
            size = conn.execute(
                sa.select(sa.func.sum(sa.func.length(t.c.data))).where(t.c.key == key)
            ).scalar()
        if size is None:
            raise KeyError(key)
        return int(size)

    def stored_age(self, key: str) -> float:
        """Seconds since the value ``key`` was last written; ``KeyError`` when it is not stored."""
        t = self._table
        with self._db.core() as conn:
            row = conn.execute(sa.select(t.c.written).where(t.c.key == key, t.c.chunk == 0)).first()
        if row is None:
            raise KeyError(key)
        return time.time() - (row[0] or 0.0)


class SqlCallBackend(SqlStore):
    """Call records: checked JSON plus indexed columns, and one row per argument."""

    @property
    def _table(self) -> sa.Table:
        return self.tables.calls

    def _prepare(self, db: Database) -> None:
        sql = partial(compile_positional, db)
        t, a = self.tables.calls, self.tables.arguments
        key = sa.bindparam("key", type_=sa.String)
        self._sql_get = sql(sa.select(t.c.record, t.c.checksum).where(t.c.key == key), "key")
        self._sql_contains = sql(sa.select(t.c.key).where(t.c.key == key), "key")
        self._sql_delete = sql(sa.delete(t).where(t.c.key == key), "key")
        self._sql_unargue = sql(sa.delete(a).where(a.c.call_key == key), "key")
        names = [c.name for c in t.columns]
        upsert = db.dialect.upsert(t, {n: sa.bindparam(n) for n in names}, names[1:])
        self._sql_put = sql(upsert, *names)
        argument = sa.insert(a).values({n: sa.bindparam(n) for n in ("call_key", "name", "digest")})
        self._sql_argue = sql(argument, "call_key", "name", "digest")
        self._sql_queries: dict[QueryShape, tuple[str, tuple[str, ...]]] = {}

    def _row(
        self, key: Digest, call: Any
    ) -> tuple[tuple[Any, ...], builtins.list[tuple[Any, ...]]]:
        """The ``calls`` row of a record and its ``arguments`` rows."""
        record = call.digested()
        data = dump_record(key, record.to_record())  # magic, checksum, JSON
        created = (record.metadata.get("fleche") or {}).get("created", time.time())
        row = (
            key,
            clip(record.name),
            clip(record.module),
            version_text(record.version),
            clip(record.code_digest, 64),
            None if not record.result else str(record.result),
            float(created),
            data[12:].decode(),
            _signed(record_checksum(key, data[12:])),
        )
        arguments = {clip(n): d for n, d in record.arguments.items()}
        return row, [(key, n, d) for n, d in arguments.items()]

    def _put(self, key: Digest, call: Any) -> None:
        row, rows = self._row(key, call)

        def work(cursor: Any) -> None:
            cursor.execute(self._sql_put, row)
            cursor.execute(self._sql_unargue, (key,))
            if rows:
                cursor.executemany(self._sql_argue, rows)

        self._db.write(work)

    def _put_many(self, items: builtins.list[tuple[Digest, DigestedCall]]) -> None:
        """Many records in one transaction: each statement of ``_put`` once, in ``executemany``."""
        records, arguments = [], []
        for key, call in items:
            row, rows = self._row(key, call)
            records.append(row)
            arguments += rows

        def work(cursor: Any) -> None:
            cursor.executemany(self._sql_put, records)
            cursor.executemany(self._sql_unargue, [(row[0],) for row in records])
            if arguments:
                cursor.executemany(self._sql_argue, arguments)

        if records:
            self._db.write(work)

    def _decode(self, key: str, record: str, checksum: int) -> DigestedCall:
        """The record of a row, after checking its checksum; ``IntegrityError`` if it fails."""
        if _signed(record_checksum(key, record.encode())) != checksum:
            raise IntegrityError(f"call record {key}: checksum mismatch (corrupt or truncated)")
        try:
            return DigestedCall.from_record(check_record_digests(key, json.loads(record)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise IntegrityError(f"call record {key}: not a call record ({e})") from e

    def _get(self, key: Digest) -> DigestedCall:
        rows = self._db.fetch(self._sql_get, (key,))
        if not rows:
            raise KeyError(key)
        try:
            return self._decode(key, *rows[0])
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _joint_reader(self, values: Any) -> Callable[[Digest], Any] | None:
        """A hit in one statement, not two round trips, when ``values`` is an SQL value store in
        the same database (see ``Cache``): the record joined to its value's first chunk. The
        record's checksum is verified and its result compared with the column the join used; a
        value of several chunks (or none) is read by the value store's own path."""
        if (
            not isinstance(values, SqlBackend)
            or values._db is not self._db
            or type(values)._get is not SqlBackend._get
        ):
            return None
        c, v = self.tables.calls, values.tables.values
        first = c.outerjoin(v, sa.and_(v.c.key == c.c.result, v.c.chunk == _ZERO))
        statement = (
            sa.select(c.c.record, c.c.checksum, c.c.result, v.c.data)
            .select_from(first)
            .where(c.c.key == sa.bindparam("key", type_=sa.String))
        )
        sql, db = compile_positional(self._db, statement, "key"), self._db

        def read(key: Digest) -> Any:
            rows = db.fetch(sql, (key,))
            if not rows:
                raise KeyError(key)
            record, checksum, result, frame = rows[0]
            try:
                if _signed(record_checksum(key, record.encode())) != checksum:
                    raise IntegrityError(f"call record {key}: checksum mismatch")
                if json.loads(record).get("result") != result:
                    raise IntegrityError(f"call record {key}: its result column differs")
            except IntegrityError as e:
                raise self._corrupt(key, e) from e
            except (ValueError, TypeError, AttributeError) as e:
                error = IntegrityError(f"call record {key}: not a call record ({e})")
                raise self._corrupt(key, error) from e
            if result is None:
                raise KeyError(key)
            result_key = Digest(result)
            if frame is None or len(frame) >= CHUNK_SIZE:  # absent, or maybe of several chunks
                return values._get(result_key)
            return values._load_chunk(result_key, frame)

        return read

    def _joint_writer(self, values: Any) -> Callable[..., Exception | None] | None:
        """A miss's writes in one transaction, not one per value and one for the record, when
        ``values`` is a plain SQL value store in the same database (see ``caches.save_call``;
        on PostgreSQL a miss was four commits). Every frame is made before the transaction
        begins, so a result that cannot be serialised writes nothing. Values of one chunk go
        in one ``executemany``, larger ones chunk by chunk as ``_put`` writes them; both in key
        order, so that misses storing the same values lock their rows in one order. The caller
        holds the call key's WRITE context."""
        if not (
            isinstance(values, SqlBackend)
            and values._db is self._db
            and getattr(type(values), "save", None) is ValueMixin.save
            and type(values).put is StorageBackend.put
            and type(values)._put is SqlBackend._put
            and type(self)._put is SqlCallBackend._put
        ):
            return None  # a subclass that changes how entries are written keeps its own path
        codec, db = values.codec, self._db
        put_chunk, trim = values._sql_put, values._sql_trim

        def write(key: Digest, record: DigestedCall, arguments: Sequence[tuple[Digest, Any]],
                  result_key: Digest, result: Any) -> Exception | None:  # fmt: skip
            framed = serialise_values(codec.dumps, arguments, result_key, result)
            if isinstance(framed, Exception):
                return framed
            row, argument_rows = self._row(key, record)
            written, small, large = time.time(), [], []
            for name in sorted(framed):
                parts = framed[name]
                if sum(memoryview(part).nbytes for part in parts) <= CHUNK_SIZE:
                    small.append((name, 0, b"".join(parts), written))
                else:
                    large.append((name, parts))

            def work(cursor: Any) -> None:
                if small:
                    cursor.executemany(put_chunk, small)
                    cursor.executemany(trim, [(entry[0], 1) for entry in small])  # longer old ones
                for name, parts in large:
                    count = 0
                    for count, chunk in enumerate(_chunks(parts, CHUNK_SIZE), 1):
                        cursor.execute(put_chunk, (name, count - 1, chunk, written))
                    cursor.execute(trim, (name, count))
                cursor.execute(self._sql_put, row)
                cursor.execute(self._sql_unargue, (key,))
                if argument_rows:
                    cursor.executemany(self._sql_argue, argument_rows)

            db.write(work, pipelined=True)  # it reads no result: one round trip on PostgreSQL
            return None

        return write

    def _contains(self, key: Digest) -> bool:
        return bool(self._db.fetch(self._sql_contains, (key,)))

    def _evict(self, key: Digest) -> None:
        def work(cursor: Any) -> None:
            cursor.execute(self._sql_delete, (key,))
            if not cursor.rowcount:
                raise KeyError(key)
            cursor.execute(self._sql_unargue, (key,))

        self._db.write(work)

    def query(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        """Records matching ``template``, found by one indexed statement (see ``sql_schema``),
        compiled once per shape of template and run on the driver's cursor."""
        wanted = template.argument_digests()
        shape, params = query_parameters(template)
        compiled = self._sql_queries.get(shape)
        if compiled is None:
            if len(self._sql_queries) >= _SHAPES:  # shapes are few; a pathological caller aside
                self._sql_queries.clear()
            compiled = compile_named(self._db, query_statement(self.tables, shape))
            self._sql_queries[shape] = compiled
        sql, names = compiled
        rows = self._db.fetch(sql, tuple(params[n] for n in names))
        for key, record, checksum in rows:
            try:
                call = self._decode(key, record, checksum)
            except IntegrityError as e:
                self._corrupt(Digest(key), e)  # warned and evicted: a miss
                continue
            if template.matches(call, arg_digests=wanted):
                yield Digest(key), call

    def _process_lock(self, key: str) -> Any:
        return self.options.dialect.process_lock(
            self._db, self.tables.calls.name, key, self.lock_timeout
        )

    def _lock_table(self) -> LockTable:
        # an SQLite file's byte locks belong to the process: its threads must share one table
        lock_dir = self._db.lock_dir
        if lock_dir is None:
            return PerKeyLockMixin._lock_table(self)  # type: ignore[arg-type]
        return shared_lock_table(f"{lock_dir}/{self.tables.calls.name}")

    def _try_process_locks(self, keys: builtins.list[str]) -> dict[str, Any]:
        return self.options.dialect.process_locks_nowait(
            self._db, self.tables.calls.name, keys, self.lock_timeout
        )

    def _release_process_locks(self, locks: builtins.list[Any]) -> None:
        self.options.dialect.release_process_locks(self._db, locks)


class ValueSql(ManyValuesMixin, ValueMixin, PerKeyLockMixin, SqlBackend):
    """Values in an SQL database."""


class CallSql(CallMixin, PerKeyLockMixin, SqlCallBackend):
    """Call records in an SQL database. The mixins sit left of the backend, so its indexed
    ``query``, its bulk write and its cross-process locks are named here, lest the scan and the
    no-ops win."""

    query = SqlCallBackend.query
    _process_lock = SqlCallBackend._process_lock
    _lock_table = SqlCallBackend._lock_table
    _try_process_locks = SqlCallBackend._try_process_locks
    _release_process_locks = SqlCallBackend._release_process_locks

    def _save_many(self, items: builtins.list[tuple[Digest, DigestedCall]]) -> None:
        """Many records in one transaction; the caller holds their keys (``_holding``)."""
        self._put_many([(check_key(key), record) for key, record in items])


Sql = CallSql
"""The name of the SQL call storage in fleche 0.22.2 (``Sql(url=None)`` is in memory)."""


def cache_from_url(url: str) -> Cache:
    """A cache of values and call records in one SQL database; both share one engine.

    Raises ``MissingDependencyError`` without the driver and ``ConfigError`` for a bad URL or a
    database written with another digest scheme.
    """
    values = ValueSql(url)
    return Cache(values, CallSql(url), url=values.to_url())
