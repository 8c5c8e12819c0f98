"""transfer, gc and stats on every cache type, over every storage kind (SPEC section 7)."""

from __future__ import annotations

import pytest

from fleche import Rejected, cache, digest, fleche
from fleche.caches import CacheStack, ReadOnlyCache, SizeLimitedCache, VoidCache
from fleche.call import Call
from fleche.config import cache_from_url


def call(x: object, result: object) -> Call:
    return Call("f", {"x": x}, {}, "tests", result=result)


def test_stats_counts_entries_values_hits_and_misses(harness) -> None:
    store = harness.cache()

    @fleche
    def square(x):
        return [x * x]

    with cache(store):
        square(2)  # a miss, then stored
        square(2)  # a hit
        square(3)  # a miss
    stats = store.stats()
    assert (stats["entries"], stats["values"]) == (2, 4)  # arguments 2, 3 and results [4], [9]
    assert (stats["hits"], stats["misses"]) == (1, 2)
    assert stats["bytes"] is None or stats["bytes"] > 0


def test_transfer_copies_records_and_values(harness) -> None:
    source, target = harness.cache(), harness.cache()
    keys = [source.save(call(i, [i])) for i in range(3)]
    assert source.transfer(target) == 3
    assert sorted(target.list()) == sorted(keys)
    assert [target.load(k).result for k in keys] == [[0], [1], [2]]
    assert target.load(keys[1]).arguments["x"] == 1
    assert source.transfer(target) == 0  # kept: the target has them
    assert source.transfer(target, overwrite=True) == 3
    elsewhere = cache_from_url("memory://")  # another kind of storage
    assert source.transfer(elsewhere, pop=True) == 3
    assert list(source.list()) == []
    assert sorted(elsewhere.list()) == sorted(keys)


def test_gc_removes_only_values_no_call_refers_to(harness) -> None:
    store = harness.cache()
    kept = store.save(call("kept", "kept result"))
    gone = store.save(call("gone", "gone result"))
    store.evict(gone)
    assert store.gc() == 0  # written just now: within the grace period
    assert store.gc(grace=0) == 2  # the argument and the result of the evicted call
    assert store.gc(grace=0) == 0
    assert set(store.value_keys()) == {digest("kept"), digest("kept result")}
    assert store.load(kept).result == "kept result"


def test_void_cache_stores_nothing() -> None:
    void = VoidCache()
    runs = []

    @fleche
    def f(x):
        runs.append(x)
        return x

    with cache(void):
        assert f(1) == 1 and f(1) == 1
    assert runs == [1, 1]
    key = void.save(call(1, 1))
    assert not void.contains(key)
    with pytest.raises(KeyError):
        void.load(key)
    with pytest.raises(KeyError):
        void.evict(key)
    assert void.query().count() == 0
    assert void.gc(grace=0) == 0
    assert void.transfer(cache_from_url("memory://")) == 0
    assert void.stats() == {"entries": 0, "values": 0, "bytes": 0, "hits": 0, "misses": 2}


def test_size_limited_transfer_gc_and_stats(harness) -> None:
    limited = SizeLimitedCache(harness.cache(), max_entries=2)
    source = harness.cache()
    for i in range(4):
        source.save(call(i, [i]))
    assert source.transfer(limited) == 4  # every copy is a save: the limit holds
    assert limited.stats()["entries"] == 2
    assert limited.gc(grace=0) >= 0
    assert all(limited.load(k).result is not None for k in limited.list())
    out = cache_from_url("memory://")
    assert limited.transfer(out) == 2


def test_read_only_and_stack_transfer_out(harness) -> None:
    inner = harness.cache()
    key = inner.save(call(1, "one"))
    shelf = ReadOnlyCache(inner)
    out = cache_from_url("memory://")
    assert shelf.transfer(out) == 1
    with pytest.raises(Rejected):
        shelf.transfer(cache_from_url("memory://"), pop=True)
    assert inner.contains(key)
    stack = CacheStack(harness.cache(), inner)
    assert stack.stats()["entries"] == 1
    assert stack._lookup(key) == "one"
    assert stack.stats()["hits"] == 1
