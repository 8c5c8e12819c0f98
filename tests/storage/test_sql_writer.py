"""A miss on an SQL cache is written by the storages' joint writer: its values and its record in
one transaction (a PostgreSQL miss was four commits). It must store exactly what the generic
path stores, keep its rules (an argument that cannot be stored is kept by digest only; a result
that cannot be stored is reported and leaves nothing behind), be all or nothing, and never
bypass a cache that overrides how values or records are stored."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import fleche
from fleche import Cache
from fleche.errors import StorageError, UnstorableResultWarning
from fleche.storage.sql import CallSql, ValueSql
from fleche.storage.sql_engine import Database
from fleche.storage.sql_schema import CHUNK_SIZE

from .test_sql import SQL_KINDS, _harness, execute
from .writer_cases import (
    check_an_unstorable_argument_is_kept_by_digest,
    check_an_unstorable_result_leaves_nothing,
    mixed,
)


@pytest.fixture(params=SQL_KINDS)
def sql(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    harness = _harness(request.param, tmp_path)
    yield harness
    harness.close()


class Generic(Cache):
    """A cache that stores through ``_store_value``/``_store_record``, one value at a time."""

    def _store_value(self, key: Any, value: Any) -> None:
        super()._store_value(key, value)


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the SQL transactions begun from here on (``write``, ``read``)."""
    begun: list[str] = []
    transaction = Database._transaction

    def counted(db: Database, begin: Any, work: Any, what: str, **options: Any) -> Any:
        begun.append(what)
        return transaction(db, begin, work, what, **options)

    monkeypatch.setattr(Database, "_transaction", counted)
    return begun


def _generic(sql: Any) -> Cache:
    url = sql.url()
    return Generic(ValueSql(url), CallSql(url))


def _rows(store: Cache) -> dict[str, list[tuple]]:
    return {
        "values": sorted(execute(store.values, "SELECT {key}, chunk, data FROM {t}")),
        "calls": sorted(
            execute(store.calls, "SELECT {key}, name, module, version, result FROM {t}")
        ),
        "arguments": sorted(execute(store.calls, "SELECT call_key, name, digest FROM {a}")),
    }


@fleche.fleche
def sized(n: int) -> bytes:
    return bytes([n % 256]) * n


@fleche.fleche
def large_only() -> bytes:
    return b"L" * (2 * CHUNK_SIZE)  # no argument, a result of several chunks: no small value


def test_only_a_plain_cache_takes_the_joint_path(sql: Any) -> None:
    assert sql.cache()._write_call is not None
    assert _generic(sql)._write_call is None


def test_the_joint_writer_stores_what_the_generic_path_stores(sql: Any) -> None:
    joint, generic = sql.cache(), _generic(sql)
    calls = [(1, "x", b""), (2, "x", b"y" * 50_000), (1, "x", b"")]
    for store in (joint, generic):
        with fleche.cache(store):
            for args in calls:
                assert mixed(*args) == {"n": args[0], "text": args[1], "size": len(args[2])}
            assert sized(3 * CHUNK_SIZE + 7) == bytes([7]) * (3 * CHUNK_SIZE + 7)  # chunks
            assert large_only() == b"L" * (2 * CHUNK_SIZE)
    assert _rows(joint) == _rows(generic)
    with fleche.cache(joint):
        assert sized(3 * CHUNK_SIZE + 7) == bytes([7]) * (3 * CHUNK_SIZE + 7)  # a hit
        assert mixed(2, "x", b"y" * 50_000)["size"] == 50_000
        assert large_only() == b"L" * (2 * CHUNK_SIZE)
    assert (joint.hits, joint.misses) == (4, 4)


def test_a_miss_is_one_transaction(sql: Any, transactions: list[str]) -> None:
    store = sql.cache()
    with fleche.cache(store):
        mixed(5, "five", b"5" * 100)
    assert transactions == ["write"]
    assert len(store.values) == 4  # three arguments and the result


def test_an_argument_that_cannot_be_stored_is_kept_by_digest(sql: Any) -> None:
    store = sql.cache()
    check_an_unstorable_argument_is_kept_by_digest(store)


def test_a_result_that_cannot_be_stored_leaves_nothing(sql: Any) -> None:
    store = sql.cache()
    check_an_unstorable_result_leaves_nothing(store)


def test_a_failed_record_write_rolls_its_values_back(
    sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sql.cache()
    broken = store.calls._sql_argue.replace(store.calls.tables.arguments.name, "no_such_table")
    monkeypatch.setattr(store.calls, "_sql_argue", broken)
    with fleche.cache(store), pytest.warns(UnstorableResultWarning):
        assert mixed(7, "seven", b"") == {"n": 7, "text": "seven", "size": 0}
    monkeypatch.undo()
    assert len(store.values) == 0 and len(store.calls) == 0
    with fleche.cache(store), warnings.catch_warnings():
        warnings.simplefilter("error")
        mixed(7, "seven", b"")  # stored now
    assert len(store.calls) == 1 and store.misses == 2


def test_threads_storing_the_same_values_at_once_all_succeed(sql: Any) -> None:
    """Misses of different calls sharing argument and result values, in parallel: their rows
    are locked in one order, so no transaction waits on another in a cycle (a deadlock)."""
    store = sql.cache()
    failures: list[BaseException] = []

    @fleche.fleche
    def shared(i: int, a: str, b: str) -> str:
        return "same result"

    def run(offset: int) -> None:
        try:
            with fleche.cache(store), warnings.catch_warnings():
                warnings.simplefilter("error")
                for i in range(offset, offset + 15):
                    shared(i, "first", "second") if i % 2 else shared(i, "second", "first")
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run, args=(100 * n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(store.calls) == 60


def test_misses_in_a_batch_join_its_transaction(sql: Any, transactions: list[str]) -> None:
    store = sql.cache()
    with fleche.cache(store):
        with store.batch():
            for n in range(5):
                mixed(n, "batched", b"")
        assert transactions == []  # every miss wrote in the batch's transaction
        assert [mixed(n, "batched", b"")["n"] for n in range(5)] == list(range(5))
    assert (store.hits, store.misses) == (5, 5) and len(store.calls) == 5


def _conflict(kind: str) -> Exception:
    """The error a server raises in the transaction it chose as a deadlock's victim."""
    if kind == "postgres":
        import psycopg

        return psycopg.errors.DeadlockDetected("deadlock detected")
    import pymysql

    return pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_deadlock_victim_is_run_again(kind: str, tmp_path: Any) -> None:
    harness = _harness(kind, tmp_path)
    try:
        store = harness.value_storage()
        db, runs = store._db, []

        def work(cursor: Any) -> str:
            runs.append(1)
            if len(runs) <= 3:
                raise _conflict(kind)
            return "done"

        assert db._transaction((db.dialect.begin,), work, "write") == "done"
        assert len(runs) == 4  # three conflicts, then through

        def always(cursor: Any) -> str:
            raise _conflict(kind)

        with pytest.raises(StorageError, match=r"(?i)deadlock"):
            db._transaction((db.dialect.begin,), always, "write")  # not forever
    finally:
        harness.close()


def test_a_miss_on_postgresql_is_sent_as_one_pipeline(tmp_path: Any, monkeypatch) -> None:
    from fleche.storage.sql_dialects import PostgresDialect

    harness = _harness("postgres", tmp_path)
    try:
        store, entered = harness.cache(), []
        pipeline = PostgresDialect.pipeline

        def counted(self: PostgresDialect, dbapi_connection: Any) -> Any:
            entered.append(dbapi_connection)
            return pipeline(self, dbapi_connection)

        monkeypatch.setattr(PostgresDialect, "pipeline", counted)
        with fleche.cache(store):
            assert mixed(3, "piped", b"p") == {"n": 3, "text": "piped", "size": 1}
            assert len(entered) == 1  # the miss's transaction, from BEGIN to COMMIT
            assert mixed(3, "piped", b"p")["size"] == 1 and store.hits == 1
        assert len(store.values) == 4
    finally:
        harness.close()
