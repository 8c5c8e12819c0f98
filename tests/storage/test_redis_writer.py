"""A miss on a Redis cache is written by the storages' joint writer: its small values and its
record's script in one MULTI/EXEC (a miss was one round trip per value and one for the record).
It must store exactly what the generic path stores, keep its rules (an argument that cannot be
stored is kept by digest only; a result that cannot be stored is reported and leaves nothing
behind), be all or nothing, and never bypass a cache that overrides how entries are stored."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import fleche
from fleche import Cache
from fleche.storage.redis import CallRedis, ValueRedis
from fleche.storage.redis_pieces import LARGE

from ..backends.redis import RedisHarness
from .writer_cases import (
    check_an_unstorable_argument_is_kept_by_digest,
    check_an_unstorable_result_leaves_nothing,
    mixed,
)


@pytest.fixture
def rh(tmp_path: Any) -> Iterator[RedisHarness]:
    harness = RedisHarness(tmp_path)
    harness.check_available()
    yield harness
    harness.close()


class Generic(Cache):
    """A cache that stores through ``_store_value``/``_store_record``, one value at a time."""

    def _store_value(self, key: Any, value: Any) -> None:
        super()._store_value(key, value)


def _generic(rh: RedisHarness) -> Cache:
    url = rh.url()
    return Generic(ValueRedis(url), CallRedis(url))


def _contents(rh: RedisHarness, store: Cache) -> dict[str, Any]:
    """Every key under the cache's prefix, with its value (prefix removed; times, and records,
    which hold theirs, left out: the generic path's records are checked in test_redis)."""
    prefix = store.values.prefix
    found: dict[str, Any] = {}
    for name in rh.raw.scan_iter(f"{prefix}:*"):
        short = name.decode()[len(prefix) :]
        kind = rh.raw.type(name).decode()
        if re.fullmatch(r":c:[0-9a-f]{32}", short):  # a record: it holds its creation time
            found[short] = "record"
        elif short.endswith(":written"):
            found[short] = sorted(rh.raw.hkeys(name))
        elif kind == "string":  # a value, or the names of a record's index sets
            found[short] = rh.raw.get(name).replace(prefix.encode(), b"P")
        elif kind == "zset":
            found[short] = rh.raw.zrange(name, 0, -1)
        elif kind == "set":
            found[short] = sorted(rh.raw.smembers(name))
        elif kind == "hash":
            found[short] = rh.raw.hgetall(name)
    return found


def test_only_a_plain_cache_takes_the_joint_path(rh: RedisHarness) -> None:
    assert rh.cache()._write_call is not None
    assert _generic(rh)._write_call is None


def test_the_joint_writer_stores_what_the_generic_path_stores(rh: RedisHarness) -> None:
    joint, generic = rh.cache(), _generic(rh)
    calls = [(1, "x", b""), (2, "x", b"y" * (2 * LARGE)), (1, "x", b"")]  # a value in pieces
    for store in (joint, generic):
        with fleche.cache(store):
            for args in calls:
                assert mixed(*args) == {"n": args[0], "text": args[1], "size": len(args[2])}
    assert _contents(rh, joint) == _contents(rh, generic)
    with fleche.cache(joint):
        assert mixed(2, "x", b"y" * (2 * LARGE))["size"] == 2 * LARGE  # a hit
    assert (joint.hits, joint.misses) == (2, 2)


def test_a_miss_sends_its_writes_in_one_transaction(rh: RedisHarness, monkeypatch) -> None:
    store = rh.cache()
    client = store.values._conn.client
    pipelines: list[bool] = []
    pipeline = type(client).pipeline

    def counted(self: Any, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipelines.append(transaction)
        return pipeline(self, transaction, shard_hint)

    monkeypatch.setattr(type(client), "pipeline", counted)
    with fleche.cache(store):
        mixed(5, "five", b"5" * 100)
    assert pipelines == [True]  # the lock and its release are single commands
    assert len(store.values) == 4 and len(store.calls) == 1


def test_an_argument_that_cannot_be_stored_is_kept_by_digest(rh: RedisHarness) -> None:
    store = rh.cache()
    check_an_unstorable_argument_is_kept_by_digest(store)


def test_a_result_that_cannot_be_stored_leaves_nothing(rh: RedisHarness) -> None:
    store = rh.cache()
    check_an_unstorable_result_leaves_nothing(store)


def test_a_failed_transaction_writes_none_of_its_values(rh: RedisHarness, monkeypatch) -> None:
    store = rh.cache()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the record's script failed")

    monkeypatch.setattr(store.calls._conn, "put_call", broken)
    with fleche.cache(store), pytest.raises(RuntimeError):
        mixed(7, "seven", b"")
    monkeypatch.undo()
    assert len(store.values) == 0 and len(store.calls) == 0
    with fleche.cache(store), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mixed(7, "seven", b"") == {"n": 7, "text": "seven", "size": 0}
    assert len(store.calls) == 1
