"""The SQL storage beyond the conformance suite: chunks, key ranges, query push-down, transactions,
integrity, schema versions and upgrades, drivers, cross-process locks and fork safety."""

from __future__ import annotations

import os
import pickle
import re
import select
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

import fleche
from fleche.call import DigestedCall, QueryCall
from fleche.digest import SCHEME_VERSION, Digest, digest
from fleche.errors import (
    ConfigError,
    CorruptEntryWarning,
    LockTimeoutError,
    MissingDependencyError,
    StorageError,
)
from fleche.storage.base import Intent
from fleche.storage.serialize import Codec, dump_record, record_checksum
from fleche.storage.sql import CallSql, Sql, ValueSql, cache_from_url
from fleche.storage.sql_engine import Database, SqlOptions, database_for
from fleche.storage.sql_schema import CHUNK_SIZE, SCHEMA_VERSION, Tables

from ..backends import HARNESSES
from .held_once import save_and_load_traced

SQL_KINDS = ["sqlite", "postgres", "mysql"]


def _harness(kind: str, tmp_path: Any) -> Any:
    harness = HARNESSES[kind](tmp_path)
    harness.check_available()
    return harness


@pytest.fixture(params=SQL_KINDS)
def sql(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A harness for each SQL server (skips or fails as ``service_unavailable`` says)."""
    harness = _harness(request.param, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def postgres(tmp_path: Any) -> Iterator[Any]:
    harness = _harness("postgres", tmp_path)
    yield harness
    harness.close()


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Statements sent to the server inside the block (transaction control aside), through
    SQLAlchemy or through the hot path's prepared statements (``Database.fetch``)."""
    seen: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append((statement, parameters))

    fetch = Database.fetch

    def fetch_seen(db: Database, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        if db.engine is engine:
            seen.append((statement, parameters))
        return fetch(db, statement, parameters)

    sa.event.listen(engine, "before_cursor_execute", listener)
    Database.fetch = fetch_seen  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Database.fetch = fetch  # type: ignore[method-assign]
        sa.event.remove(engine, "before_cursor_execute", listener)


def plan(storage: Any, statement: str, parameters: Any) -> str | None:
    """The server's plan for a statement (None on MariaDB, whose plans here are not checked).

    PostgreSQL is told to avoid sequential scans: on a small table it would pick one anyway, so
    the question asked is whether an index *can* serve the statement (a plan without one still
    shows "Seq Scan").
    """
    name = storage.options.dialect.name
    with storage._db.engine.connect() as conn:
        if name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        if name == "postgresql":
            with conn.begin():
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            return "\n".join(str(row[0]) for row in rows)
    return None


def first_index(storage: Any, statement: str, parameters: Any) -> str | None:
    """The index through which the server's plan for a statement reads its first rows."""
    name = storage.options.dialect.name
    with storage._db.engine.begin() as conn:
        if name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            details = [str(row[-1]) for row in rows if str(row[-1]).startswith(("SEARCH", "SCAN"))]
            found = re.search(r"USING (?:COVERING )?INDEX (\w+)", details[0])
            return found and found.group(1)
        if name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # see ``plan``
            tree = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
            return next(_scans(tree[0]["Plan"])).get("Index Name")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
        return rows[0]["key"]  # MariaDB lists the tables in join order


def assert_indexed(text: str | None) -> None:
    if text is None:
        return
    lines = [line.strip() for line in text.splitlines()]
    assert not any(line.startswith("SCAN") for line in lines), text  # SQLite: a full scan
    assert "Seq Scan" not in text, text  # PostgreSQL: a full scan
    assert "TEMP B-TREE" not in text, text  # SQLite sorted the rows itself


def execute(storage: Any, sql_text: str, **params: Any) -> list[Any]:
    """Run plain SQL on the storage's database, bypassing fleche (``{t}`` is its table)."""
    preparer = storage._db.engine.dialect.identifier_preparer
    text = sql_text.format(
        t=preparer.format_table(storage._table),
        a=preparer.format_table(storage.tables.arguments),
        s=preparer.format_table(storage.tables.schema),
        key=preparer.quote("key"),
    )
    with storage._db.engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        return list(result.all()) if result.returns_rows else []


def record(
    name: str = "f", module: str = "tests", result: Any = 0, **arguments: Any
) -> DigestedCall:
    return DigestedCall(
        name,
        {k: digest(v) for k, v in arguments.items()},
        {"fleche": {"created": 1.0}},
        module,
        None,
        None,
        digest(result),
    )


# --- URLs, identity, drivers -------------------------------------------------------------------
def test_url_options_are_fleches_and_the_rest_goes_to_the_driver() -> None:
    options = SqlOptions.parse(
        "postgresql://u:Passw0rd@db.example/cache?prefix=team&durable=1&secret_key=c0ffee&compress=zlib"
        "&lock_timeout=5&sslmode=require"
    )
    assert options.engine_url.drivername == "postgresql+psycopg"
    assert dict(options.engine_url.query) == {"sslmode": "require"}
    assert (options.prefix, options.durable, options.secret_key) == ("team", True, "c0ffee")
    assert (options.compress, options.lock_timeout) == ("zlib", 5.0)
    masked = options.url(mask=True)
    assert "Passw0rd" not in masked and "c0ffee" not in masked
    assert "Passw0rd" in options.url() and "c0ffee" in options.url()
    assert SqlOptions.parse(options.url()) == options
    assert SqlOptions.parse("postgres://h/db").engine_url.drivername == "postgresql+psycopg"
    assert SqlOptions.parse("mysql://root@h/db").engine_url.drivername == "mysql+pymysql"
    assert SqlOptions.parse("mariadb://root@h/db").engine_url.drivername == "mariadb+pymysql"
    with pytest.raises(ConfigError, match="psycopg2"):
        SqlOptions.parse("postgresql+psycopg2://h/db")
    with pytest.raises(ConfigError, match="oracle"):
        SqlOptions.parse("oracle://h/db")


@pytest.mark.parametrize(("scheme", "module", "extra"), [
    ("postgresql", "psycopg", "postgres"),
    ("mysql", "pymysql", "mysql"),
])  # fmt: skip
def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=rf"pip install 'fleche\[{extra}\]'") as info:
        fleche.config.cache_from_url(f"{scheme}://root@127.0.0.1/test")
    assert isinstance(info.value, ImportError)


def test_identity_equality_and_pickle(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/c.db?prefix=one"
    values = ValueSql(url)
    assert values == ValueSql(url)
    assert values != ValueSql(f"sqlite:///{tmp_path}/c.db?prefix=two")
    assert values != CallSql(url)
    key = values.save("kept")
    clone = pickle.loads(pickle.dumps(values))
    assert clone == values and clone.load(key) == "kept"
    cache = cache_from_url(url)
    assert cache.values == values and cache.calls == CallSql(url)
    assert pickle.loads(pickle.dumps(cache)) == cache
    with pytest.raises(ConfigError, match="prefix"):
        ValueSql(f"sqlite:///{tmp_path}/c.db?prefix=no-dashes")


def test_sqlite_runs_in_wal_with_chosen_durability(tmp_path: Any) -> None:
    def pragma(storage: Any, name: str) -> Any:
        cursor = storage._db._connection().cursor
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]

    normal = ValueSql(tmp_path / "d.db")  # a plain path is an SQLite file
    durable = ValueSql(f"sqlite:///{tmp_path}/d.db?durable=1")
    assert pragma(normal, "journal_mode") == "wal"
    assert pragma(normal, "busy_timeout") > 0
    assert (pragma(normal, "synchronous"), pragma(durable, "synchronous")) == (1, 2)  # NORMAL, FULL
    assert "durable=1" in durable.to_url()
    # 16 MiB of pages per connection, as the embedded default (SQLite's default is 2 MiB)
    assert pragma(normal, "cache_size") == pragma(durable, "cache_size") == -16 * 1024


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    calls = Sql()  # fleche 0.22.2's spelling: an in-memory database
    key = calls.save(record(x=os.urandom(8).hex()))
    assert calls.load(key).name == "f"
    cache = cache_from_url(f"sqlite://?prefix=m{os.urandom(4).hex()}")

    @fleche.fleche(cache=cache)
    def square(x: int) -> int:
        return x * x

    threads = [threading.Thread(target=square, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(call.result for call in square.query()) == [i * i for i in range(6)]


# --- values in chunks ----------------------------------------------------------------------------
def test_large_values_are_stored_in_chunks(sql: Any) -> None:
    values = sql.value_storage()
    big = os.urandom(3 * CHUNK_SIZE + 123)
    key = values.save(big)
    rows = execute(
        values, "SELECT chunk, LENGTH(data) FROM {t} WHERE {key} = :k ORDER BY chunk", k=key
    )
    assert [chunk for chunk, _ in rows] == [0, 1, 2, 3]
    assert all(size <= CHUNK_SIZE for _, size in rows)
    assert values.stored_size(key) == sum(size for _, size in rows)
    assert values.load(key) == big
    values.put(b"small", key)  # a shorter value leaves no stale tail behind
    assert len(execute(values, "SELECT chunk FROM {t} WHERE {key} = :k", k=key)) == 1
    assert values.load(key) == b"small"


def test_arrays_load_writable(tmp_path: Any) -> None:
    np = pytest.importorskip("numpy")
    values = ValueSql(tmp_path / "a.db")
    loaded = values.load(values.save(np.arange(10.0)))
    assert loaded.flags.writeable and list(loaded) == list(np.arange(10.0))


def test_a_large_value_is_read_in_one_snapshot(sql: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its chunks take several statements; a writer between them (here another encoding of the
    same value, with fewer chunks) must not tear the read."""
    url = sql.url()
    values, other = ValueSql(url), ValueSql(url + "&compress=zlib")
    big = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 1)
    key = values.save(big)
    read_chunks, rewritten = values._read_chunks, []

    def interrupted(key: Digest, cursor: Any) -> Any:
        execute = cursor.execute

        class Cursor:  # the driver's cursor, with a writer in another thread after the first read
            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

            def execute(self, *args: Any) -> Any:
                result = execute(*args)
                if not rewritten:
                    writer = threading.Thread(target=lambda: rewritten.append(other.put(big, key)))
                    writer.start()
                    writer.join()
                return result

        return read_chunks(key, Cursor())

    monkeypatch.setattr(values, "_read_chunks", interrupted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        assert values.load(key) == big
    assert rewritten and len(execute(values, "SELECT chunk FROM {t} WHERE {key} = :k", k=key)) == 1
    assert values.load(key) == big  # the new encoding, read in one statement


@pytest.mark.parametrize("damage", ["missing", "torn"])
def test_a_large_value_missing_or_tearing_a_chunk_is_a_warned_miss(sql: Any, damage: str) -> None:
    values = sql.value_storage()
    key = values.save(os.urandom(3 * CHUNK_SIZE))
    if damage == "missing":
        execute(values, "DELETE FROM {t} WHERE {key} = :k AND chunk = 1", k=key)
    else:
        execute(values, "UPDATE {t} SET data = :d WHERE {key} = :k AND chunk = 1", k=key, d=b"x")
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        values.load(key)
    assert key not in sql.raw_keys(values)


def test_a_large_array_is_held_once_while_stored_and_loaded(sql: Any) -> None:
    """No copy of the whole frame on the way in or out (allocations seen by tracemalloc), and
    the loaded array is writable: it lives in the buffer the chunks were read into."""
    np = pytest.importorskip("numpy")
    values = sql.value_storage()
    array = np.arange(4 * 1024 * 1024, dtype=np.float64)  # 32 MiB: a driver's per-chunk copies
    # (pymysql escapes a chunk into its query text) stay far below the whole frame
    values.save(np.zeros(4))  # connections opened, statements compiled
    stored, loaded_peak, loaded = save_and_load_traced(values, array)
    assert stored < 0.5 * array.nbytes
    assert loaded_peak < 1.5 * array.nbytes
    assert loaded.flags.writeable and np.array_equal(loaded, array)


# --- key ranges and query push-down -------------------------------------------------------------
def test_prefix_scans_are_key_ranges_with_a_limit(sql: Any) -> None:
    values = sql.value_storage()
    keys = [Digest("abc" + format(i, "x").rjust(29, "0")) for i in range(40)]
    for key in keys[:40]:
        values.put(1, key)
    values.put(2, "f" * 32)
    with statements(values._db.engine) as seen:
        assert values.expand("f") == "f" * 32
    assert len(seen) == 1
    statement, parameters = seen[0]
    upper = statement.upper()
    assert ">=" in statement and "<" in statement and "LIMIT" in upper and "LIKE" not in upper
    assert_indexed(plan(values, statement, parameters))
    assert values.shrink("f" * 32) == "f"
    with statements(values._db.engine) as seen:
        assert values.shrink(keys[7]) == keys[7]  # keys[0:16] differ in the last digit only
    assert len(seen) <= 6  # a binary search over prefix lengths, each one ranged query
    calls = sql.call_storage()
    key = calls.save(record(x=1))
    with statements(calls._db.engine) as seen:
        assert calls.expand(key[:5]) == key
    assert_indexed(plan(calls, *seen[0]))


def test_query_is_one_indexed_statement(sql: Any) -> None:
    calls = sql.call_storage()
    for i in range(30):
        calls.save(record("f", x=i, y=i % 3))
        calls.save(record("g", x=i, y=i % 3))
    wanted = record("f", x=7, y=1)
    with statements(calls._db.engine) as seen:
        found = dict(calls.query(QueryCall("f", {"x": 7}, module="tests")))
    assert found == {wanted.lookup_key(): wanted}
    assert len(seen) == 1 and seen[0][0].lstrip().upper().startswith("SELECT")
    assert "JOIN" in seen[0][0].upper()
    assert_indexed(plan(calls, *seen[0]))
    assert first_index(calls, *seen[0]) == f"{calls.options.prefix}_arguments_value"


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The scans of a PostgreSQL JSON plan, in the order they start (left child first)."""
    if "Relation Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


def test_query_by_argument_starts_from_its_index_on_fresh_tables(postgres: Any) -> None:
    """Right after a bulk fill, before any ANALYZE, PostgreSQL believes a function has one call;
    a query fixing an argument must still start from the argument's index, and reach the calls
    by their key, in the plan made for its values and in the generic plan of a prepared one."""
    calls = postgres.call_storage()
    engine, prefix = calls._db.engine, calls.options.prefix
    table, arguments = (engine.dialect.identifier_preparer.format_table(t) for t in
                        (calls.tables.calls, calls.tables.arguments))  # fmt: skip
    with engine.begin() as conn:
        for name in (table, arguments):
            conn.exec_driver_sql(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
        conn.exec_driver_sql(
            f"INSERT INTO {table} (key, name, module, record, checksum) "
            "SELECT md5(i::text), 'f', 'tests', '{}', 0 FROM generate_series(1, 4000) AS i"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {arguments} (call_key, name, digest) "
            "SELECT md5(i::text), 'x', md5('x' || i) FROM generate_series(1, 4000) AS i"
        )
    wanted = record("f", x=-1)
    calls.save(wanted)
    with statements(engine) as seen:
        found = dict(calls.query(QueryCall("f", {"x": -1}, module="tests")))
    assert found == {wanted.lookup_key(): wanted}
    statement, parameters = seen[0]
    numbered = iter(range(1, 100))
    prepared = re.sub("%s", lambda _: f"${next(numbered)}", statement)
    with engine.begin() as conn:
        analysed = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE %s "
            "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
            (f"{prefix}_%",),
        ).scalar()
        assert analysed == 0  # the planner has no statistics on these tables
        custom = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        conn.exec_driver_sql(f"PREPARE fleche_q AS {prepared}")
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        literals = ", ".join("'{}'".format(str(p).replace("'", "''")) for p in parameters)
        generic = conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) EXECUTE fleche_q({literals})"
        ).scalar()
        conn.exec_driver_sql("DEALLOCATE fleche_q")
    for plan_json in (custom, generic):
        scans = list(_scans(plan_json[0]["Plan"]))
        assert scans[0].get("Index Name") == f"{prefix}_arguments_value", scans
        assert [s.get("Index Name") for s in scans[1:]] == [f"{prefix}_calls_pkey"], scans


def test_query_semantics_in_the_database(sql: Any) -> None:
    calls = sql.call_storage()
    for i in range(6):
        calls.save(record("f", result=i % 3, x=i, y=i % 2))
    calls.save(record("f", x=0))  # no y
    calls.save(record("F", x=0, y=0))  # names compare exactly, whatever the collation
    calls.save(record("f", module="other", x=0, y=0))
    long_name = "n" * 300  # longer than the indexed column: clipped there, exact in the record
    calls.save(record(long_name, x=1))
    calls.save(record(long_name[:-1] + "m", x=1))

    def count(template: QueryCall) -> int:
        return len(dict(calls.query(template)))

    assert count(QueryCall("f", module="tests")) == 7
    assert count(QueryCall("f", {"y": None}, module="tests")) == 6  # present, any value
    assert count(QueryCall("f", {"y": 1, "x": 3})) == 1
    assert count(QueryCall("f", {"y": 1, "x": 2})) == 0
    assert count(QueryCall("F")) == 1
    assert count(QueryCall("f", {"x": 0})) == 3
    assert count(QueryCall("f", {"x": 0, "y": None}, module="tests")) == 1  # fixed and present
    assert count(QueryCall("f", {"x": 0, "y": 0, "z": None})) == 0
    assert count(QueryCall(long_name)) == 1
    assert count(QueryCall("f", result=2)) == 2
    assert count(QueryCall(result=digest(2))) == 2  # a digest stands for its value
    assert count(QueryCall("f", version=2)) == 0


# --- transactions and integrity -----------------------------------------------------------------
def test_record_and_arguments_are_one_transaction(
    sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = sql.call_storage()
    kept = record(x=1)
    key = calls.save(kept)
    broken = calls._sql_argue.replace(calls.tables.arguments.name, "no_such_table")
    monkeypatch.setattr(calls, "_sql_argue", broken)
    with pytest.raises(StorageError):
        calls.save(record(x=2))
    with pytest.raises(StorageError):
        calls.save(record(x=3, y=3), key)  # an overwrite that fails keeps the old record
    monkeypatch.undo()
    assert set(calls.list()) == {key} and calls.load(key) == kept
    assert execute(calls, "SELECT name, digest FROM {a}") == [("x", digest(1))]


def test_readers_never_see_a_record_without_its_arguments(sql: Any) -> None:
    calls = sql.call_storage()
    done = threading.Event()
    orphans: list[int] = []

    def write() -> None:
        try:
            for i in range(60):
                calls.save(record(x=i, y=-i))
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    check = "SELECT COUNT(*) FROM {t} c WHERE (SELECT COUNT(*) FROM {a} a WHERE a.call_key = c.{key}) < 2"
    while not done.is_set():
        orphans.append(execute(calls, check)[0][0])
    writer.join()
    assert len(calls) == 60 and set(orphans) <= {0}


def test_corrupt_record_is_a_warned_miss_and_removed(sql: Any) -> None:
    calls = sql.call_storage()
    key, other = calls.save(record(x=1)), calls.save(record(x=2))
    execute(
        calls, "UPDATE {t} SET record = REPLACE(record, '\"f\"', '\"h\"') WHERE {key} = :k", k=key
    )
    with pytest.warns(CorruptEntryWarning, match="checksum"), pytest.raises(KeyError):
        calls.load(key)
    assert key not in sql.raw_keys(calls)
    assert execute(calls, "SELECT COUNT(*) FROM {a} WHERE call_key = :k", k=key) == [(0,)]
    execute(calls, "UPDATE {t} SET checksum = checksum + 1 WHERE {key} = :k", k=other)
    with pytest.warns(CorruptEntryWarning):
        assert dict(calls.query(QueryCall("f"))) == {}
    assert list(calls.list()) == []


def test_corrupt_value_is_a_warned_miss_and_removed(sql: Any) -> None:
    values = sql.value_storage()
    key = values.save(b"x" * 100)
    execute(values, "DELETE FROM {t} WHERE {key} = :k", k=key)
    torn = Codec().dumps_bytes(key, b"x" * 100)[:-10]
    execute(values, "INSERT INTO {t} ({key}, chunk, data) VALUES (:k, 0, :d)", k=key, d=torn)
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        values.load(key)
    assert key not in sql.raw_keys(values)


@fleche.fleche
def _sized(n: int) -> bytes:
    return bytes([n % 256]) * n


def test_a_hit_is_one_statement_and_reads_every_size(sql: Any) -> None:
    """The record joined to its value's first chunk; a value of several chunks is read whole."""
    store = sql.cache()
    assert store._read_result is not None
    sizes = [0, 10, CHUNK_SIZE - 64, CHUNK_SIZE, 2 * CHUNK_SIZE + 5]
    with fleche.cache(store):
        for n in sizes:
            assert _sized(n) == bytes([n % 256]) * n
        counts = []
        for n in sizes:
            with statements(store.calls._db.engine) as seen:
                assert _sized(n) == bytes([n % 256]) * n
            counts.append(len(seen))
        assert (store.hits, store.misses) == (len(sizes), len(sizes))
    assert counts[:3] == [1, 1, 1]  # below a chunk: the joined read alone
    assert all(count > 1 for count in counts[3:])  # a chunk or more: the value's own reads too


def _damage_call(store: Any, sql_text: str, key: str) -> None:
    execute(store.calls, sql_text, k=key)


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE {t} SET record = REPLACE(record, '\"_sized\"', '\"other\"') WHERE {key} = :k",
        "UPDATE {t} SET checksum = checksum + 1 WHERE {key} = :k",
        "UPDATE {t} SET result = NULL WHERE {key} = :k",
    ],
    ids=["record", "checksum", "result-column"],
)
def test_a_damaged_record_on_the_hit_path_is_a_warned_miss(sql: Any, damage: str) -> None:
    store = sql.cache()
    with fleche.cache(store):
        _sized(7)
        key = _sized.digest(7)
        _damage_call(store, damage, key)
        with pytest.warns(CorruptEntryWarning, match=key):
            assert _sized(7) == bytes([7]) * 7  # recomputed
        assert _sized.contains(7) and store.misses == 2


def test_a_result_column_naming_another_value_is_never_served(sql: Any) -> None:
    """The join follows the ``result`` column, which the record's checksum does not cover: it is
    compared with the record, so a row pointing at another stored value is a miss, not a wrong
    result."""
    store = sql.cache()
    with fleche.cache(store):
        _sized(7), _sized(8)
        other = digest(bytes([8]) * 8)
        execute(store.calls, "UPDATE {t} SET result = :r WHERE {key} = :k",
                r=other, k=_sized.digest(7))  # fmt: skip
        with pytest.warns(CorruptEntryWarning, match="result column"):
            assert _sized(7) == bytes([7]) * 7


def test_a_torn_or_missing_value_on_the_hit_path_is_a_miss(sql: Any) -> None:
    store = sql.cache()
    with fleche.cache(store):
        _sized(9), _sized(10)
        torn, gone = digest(bytes([9]) * 9), digest(bytes([10]) * 10)
        execute(store.values, "UPDATE {t} SET data = :d WHERE {key} = :k", d=b"torn", k=torn)
        execute(store.values, "DELETE FROM {t} WHERE {key} = :k", k=gone)
        with pytest.warns(CorruptEntryWarning, match=torn):
            assert _sized(9) == bytes([9]) * 9
        assert _sized(10) == bytes([10]) * 10  # its value is gone: a plain miss
        assert _sized(9) == bytes([9]) * 9 and _sized(10) == bytes([10]) * 10
        assert store.hits == 2


# --- schema versions -----------------------------------------------------------------------------
def test_another_digest_scheme_or_a_newer_schema_is_refused(sql: Any) -> None:
    calls = sql.call_storage()
    execute(calls, "UPDATE {s} SET value = 999 WHERE name = 'digest_scheme'")
    with pytest.raises(ConfigError, match="999") as info:
        CallSql(calls.to_url())
    assert f"digest scheme {SCHEME_VERSION}" in str(info.value)
    execute(calls, "UPDATE {s} SET value = :v WHERE name = 'digest_scheme'", v=SCHEME_VERSION)
    execute(calls, "UPDATE {s} SET value = :v WHERE name = 'schema'", v=SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError, match="upgrade fleche"):
        ValueSql(calls.to_url())


def test_upgrade_from_version_0(sql: Any) -> None:
    url = sql.url()
    options = SqlOptions.parse(url)
    old = Tables(options.prefix, options.dialect, version=0)
    stored = record(x=1, y="a")
    key = stored.lookup_key()
    data = dump_record(key, stored.to_record())
    checksum = record_checksum(key, data[12:])
    with database_for(options).engine.begin() as conn:  # the layout fleche wrote at version 0
        old.create(conn)
        conn.execute(sa.insert(old.schema), [
            {"name": "digest_scheme", "value": SCHEME_VERSION}, {"name": "schema", "value": 0}
        ])  # fmt: skip
        conn.execute(sa.insert(old.calls).values(
            key=key, name="f", module="tests", result=stored.result, created=1.0,
            record=data[12:].decode(), checksum=checksum - (1 << 64) if checksum >> 63 else checksum,
        ))  # fmt: skip
        frame = Codec().dumps_bytes(stored.result, "result")
        conn.execute(sa.insert(old.values).values(key=stored.result, chunk=0, data=frame))
    calls, values = CallSql(url), ValueSql(url)
    versions = dict(execute(calls, "SELECT name, value FROM {s}"))
    assert versions == {"schema": SCHEMA_VERSION, "digest_scheme": SCHEME_VERSION}
    assert dict(calls.query(QueryCall("f", {"y": "a"}))) == {key: stored}  # arguments filled
    assert values.load(stored.result) == "result"
    assert 0 <= values.stored_age(stored.result) < 600  # written: set by the upgrade


# --- locks across processes, fork ---------------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys
    from fleche.storage.base import Intent
    from fleche.storage.sql import CallSql
    calls = CallSql(sys.argv[1])
    with calls._operation_context(sys.argv[2], intent=Intent.COMPUTE):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def _wait_for_line(process: subprocess.Popen[str], seconds: float = 30) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    assert ready, "the lock holder did not answer in time"
    return process.stdout.readline().strip()


@pytest.mark.parametrize("ending", ["release", "kill"])
def test_lock_excludes_another_process_until_released_or_dead(sql: Any, ending: str) -> None:
    calls = sql.call_storage()
    key, other = "1" * 32, "2" * 32
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, calls.to_url(), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for_line(holder) == "locked"
        calls.lock_timeout = 0.3
        with pytest.raises(LockTimeoutError):
            with calls._operation_context(key, intent=Intent.COMPUTE):
                pass
        with calls._operation_context(other, intent=Intent.COMPUTE):  # other keys are free
            pass
        if ending == "kill":
            holder.kill()  # the server (or kernel) frees what a dead process held
        else:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(30)
        calls.lock_timeout = 10
        with calls._operation_context(key, intent=Intent.COMPUTE):
            pass
    finally:
        holder.kill()
        holder.wait(30)


def test_deep_recursion_nests_locks_on_one_connection(postgres: Any) -> None:
    cache = postgres.cache()
    calls = cache.calls
    held: list[int] = []

    @fleche.fleche
    def fib(n: int) -> int:
        if n == 1:  # the deepest call: fib(200) ... fib(1) each hold their key's lock
            cursor = calls._db.lock_connection().cursor
            cursor.execute(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            held.append(cursor.fetchone()[0])
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        with fleche.cache(cache):
            assert fib(200) == 280571172992510140037611932413038677189525
    finally:
        sys.setrecursionlimit(limit)
    assert held == [200]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_uses_the_cache_on_its_own_connections(sql: Any) -> None:
    cache = sql.cache()

    @fleche.fleche(cache=cache)
    def pair(a: int, b: str) -> dict[str, Any]:
        return {"a": a, "b": b}

    pair(1, "a")
    connection = cache.calls._db._connection()
    pid = os.fork()
    if pid == 0:  # the child: read a hit, store a new call, report by exit code
        code = 1
        try:
            hit = pair(1, "a") == {"a": 1, "b": "a"} and cache.hits == 1
            pair(2, "b")
            code = 0 if hit and cache.calls._db._connection() is not connection else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.calls._db._connection() is connection  # the parent's session survived
    connection.cursor.execute("SELECT 1")
    assert list(connection.cursor.fetchall()) == [(1,)]
    assert pair.contains(2, "b")
