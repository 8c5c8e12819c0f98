"""Caches made of caches: stacks, pools, read-only and filtered views, over every storage kind."""

from __future__ import annotations

import pickle

import pytest

from fleche import AmbiguousDigestError, Rejected, cache, fleche
from fleche.caches import (
    BaseCache,
    CachePool,
    CacheStack,
    FilteredCache,
    ReadOnlyCache,
    VoidCache,
)
from fleche.call import Call, QueryCall
from fleche.errors import ConfigError


class Counter:
    def __init__(self) -> None:
        self.n = 0


def _call(x: object, result: object = None, name: str = "f", **tags: object) -> Call:
    return Call(name, {"x": x}, {"tags": tags} if tags else {}, "tests", result=result)


def _keys_sharing_a_prefix(a: BaseCache, b: BaseCache) -> tuple[str, str, str]:
    """Save calls into ``a`` and ``b`` until one key of each shares a 1-character prefix."""
    seen: dict[str, str] = {}
    for i in range(64):
        key = b.save(_call(("b", i), i))
        seen.setdefault(key[0], key)
    for i in range(64):
        key = _call(("a", i), i).lookup_key()
        if key[0] in seen:
            a.save(_call(("a", i), i))
            return key, seen[key[0]], key[0]
    raise AssertionError("no shared prefix in 64 keys")  # pragma: no cover


# --- CacheStack -------------------------------------------------------------------------------
def test_stack_reads_through_and_backfills_record_and_values(harness) -> None:
    fast, slow = harness.cache(), harness.cache()
    ran = Counter()

    @fleche
    def double(x):
        ran.n += 1
        return [x, x]

    with cache(slow):
        double(3)
    stack = CacheStack(fast, slow)
    key = double.digest(3)
    assert not fast.contains(key)
    with cache(stack):
        assert double(3) == [3, 3]
    assert ran.n == 1
    stored = fast.load(key)  # copied into the fast layer: record, argument and result
    assert stored.result == [3, 3]
    assert dict(stored.arguments) == {"x": 3}
    assert stack.stats()["hits"] == 1


def test_stack_saves_to_the_first_layer_only(harness) -> None:
    fast, slow = harness.cache(), harness.cache()
    stack = CacheStack(fast, slow)
    key = stack.save(_call(1, "one"))
    assert fast.contains(key)
    assert not slow.contains(key)

    @fleche
    def f(x):
        return x + 1

    with cache(stack):
        assert f(1) == 2
    assert fast.contains(f.digest(1))
    assert not slow.contains(f.digest(1))


def test_stack_backfill_skips_layers_that_refuse(harness) -> None:
    shelf, slow = harness.cache(), harness.cache()
    key = slow.save(_call(1, "one"))
    stack = CacheStack(ReadOnlyCache(shelf), slow)
    assert stack._lookup(key) == "one"
    assert not shelf.contains(key)


def test_stack_keys_are_unique_across_layers(harness) -> None:
    fast, slow = harness.cache(), harness.cache()
    both = _call("both", 1)
    key = fast.save(both)
    slow.save(both)
    only_slow = slow.save(_call("slow", 2))
    stack = CacheStack(fast, slow)
    assert sorted(stack.list()) == sorted({key, only_slow})
    assert stack.query().count() == 2
    assert stack.expand(key[:12]) == key
    assert stack.contains(only_slow)
    assert stack.load(only_slow).result == 2
    assert stack.stats()["entries"] == 2


def test_stack_expand_and_shrink_see_every_layer(harness) -> None:
    fast, slow = harness.cache(), harness.cache()
    mine, theirs, prefix = _keys_sharing_a_prefix(fast, slow)
    stack = CacheStack(fast, slow)
    with pytest.raises(AmbiguousDigestError) as raised:
        stack.expand(prefix)
    assert {mine, theirs} <= set(raised.value.candidates)
    short = stack.shrink(mine)
    assert len(short) > 1  # unique in fast alone with one character, not across the stack
    assert stack.expand(short) == mine
    assert stack.shrink(mine, theirs) == [short, stack.shrink(theirs)]
    with pytest.raises(KeyError):
        stack.expand(_call("never stored").lookup_key())


def test_stack_evicts_from_every_layer(harness) -> None:
    fast, slow = harness.cache(), harness.cache()
    call = _call(1, 1)
    key = fast.save(call)
    slow.save(call)
    stack = CacheStack(fast, slow)
    stack.evict(key)
    assert not fast.contains(key)
    assert not slow.contains(key)
    with pytest.raises(KeyError):
        stack.evict(key)


def test_stack_eviction_refused_by_a_read_only_layer(harness) -> None:
    fast, shared = harness.cache(), harness.cache()
    key = shared.save(_call(1, 1))
    fast.save(_call(1, 1))
    stack = CacheStack(fast, ReadOnlyCache(shared))
    with pytest.raises(Rejected):
        stack.evict(key)
    assert not fast.contains(key)  # the layers that allow it still lose it
    assert shared.contains(key)


def test_stack_gc_collects_in_each_writable_layer(harness) -> None:
    fast, slow, shelf = harness.cache(), harness.cache(), harness.cache()
    for layer in (fast, slow, shelf):
        layer.evict(layer.save(_call(1, "gone")))
    stack = CacheStack(fast, slow, ReadOnlyCache(shelf))
    assert stack.gc(grace=0) == 4
    assert list(fast.value_keys()) == list(slow.value_keys()) == []
    assert len(list(shelf.value_keys())) == 2


def test_stack_transfer_copies_everything_once(harness) -> None:
    fast, slow, target = harness.cache(), harness.cache(), harness.cache()
    fast.save(_call(1, 1))
    slow.save(_call(1, 1))
    slow.save(_call(2, 2))
    assert CacheStack(fast, slow).transfer(target) == 2
    assert sorted(c.result for c in target.query()) == [1, 2]


def test_stack_compat_forms_and_errors(harness) -> None:
    a, b = harness.cache(), harness.cache()
    assert CacheStack((a, b)) == CacheStack(a, b)
    assert CacheStack(a, b).stack == (a, b)
    with pytest.raises(ConfigError):
        CacheStack()
    with pytest.raises(ConfigError):
        CacheStack(a, "not a cache")  # type: ignore[arg-type]


def test_stack_pickles_with_its_layers() -> None:
    from fleche.config import cache_from_url

    stack = CacheStack(cache_from_url("memory://"), VoidCache())
    stack.save(_call(1, 1))
    again = pickle.loads(pickle.dumps(stack))
    assert isinstance(again, CacheStack)
    assert again.query().count() == 1


# --- CachePool --------------------------------------------------------------------------------
def test_pool_reads_from_every_member_and_writes_to_none(harness) -> None:
    a, b = harness.cache(), harness.cache()
    in_a = a.save(_call(1, "a"))
    in_b = b.save(_call(2, "b"))
    pool = CachePool(a, b)
    assert pool._lookup(in_a) == "a"
    assert pool._lookup(in_b) == "b"
    assert sorted(pool.list()) == sorted([in_a, in_b])
    assert pool.query(QueryCall("f")).count() == 2
    assert pool.caches == (a, b)
    for write in (
        lambda: pool.save(_call(3, "c")),
        lambda: pool.evict(in_a),
        pool.gc,
        lambda: _transfer_into(pool, harness),
    ):
        with pytest.raises(Rejected):
            write()
    assert a.contains(in_a)
    assert not a.contains(_call(3).lookup_key())
    assert not b.contains(_call(3).lookup_key())


def test_pool_never_backfills(harness) -> None:
    a, b = harness.cache(), harness.cache()
    key = b.save(_call(1, 1))
    assert CachePool(a, b)._lookup(key) == 1
    assert not a.contains(key)


def test_pool_gives_calls_away_only_as_copies(harness) -> None:
    a, target = harness.cache(), harness.cache()
    a.save(_call(1, 1))
    pool = CachePool(a)
    with pytest.raises(Rejected):
        pool.transfer(target, pop=True)
    assert target.query().count() == 0  # refused before anything was copied
    assert pool.transfer(target) == 1


def test_decorated_miss_on_a_pool_computes_then_refuses_to_store(harness) -> None:
    ran = Counter()

    @fleche
    def f(x):
        ran.n += 1
        return x

    with cache(CachePool(harness.cache())), pytest.raises(Rejected):
        f(1)
    assert ran.n == 1


# --- ReadOnlyCache ----------------------------------------------------------------------------
def test_read_only_serves_hits_and_refuses_writes(harness) -> None:
    inner = harness.cache()
    ran = Counter()

    @fleche
    def f(x):
        ran.n += 1
        return x * 10

    with cache(inner):
        f(1)
    shelf = ReadOnlyCache(inner)
    assert shelf.cache is inner
    with cache(shelf):
        assert f(1) == 10
    assert ran.n == 1
    key = f.digest(1)
    values_before = sorted(inner.value_keys())
    for write in (
        lambda: shelf.save(_call(2, 2)),
        lambda: shelf.evict(key),
        lambda: shelf.gc(grace=0),
        lambda: shelf.transfer(harness.cache(), pop=True),
        lambda: _transfer_into(shelf, harness),
    ):
        with pytest.raises(Rejected):
            write()
    assert inner.contains(key)
    assert sorted(inner.value_keys()) == values_before
    assert shelf.stats()["entries"] == 1


def _transfer_into(target: BaseCache, harness) -> int:
    source = harness.cache()
    source.save(_call(9, 9))
    return source.transfer(target)


# --- FilteredCache ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["function", "template"])
def test_filtered_view_exposes_only_matching_calls(harness, how) -> None:
    inner = harness.cache()
    red = inner.save(_call(1, "r", colour="red"))
    blue = inner.save(_call(2, "b", colour="blue"))
    other = inner.save(_call(3, "o", name="g", colour="red"))
    if how == "function":
        view = inner.filter(lambda call: call.metadata.get("tags", {}).get("colour") == "red")
    else:
        view = inner.filter(QueryCall(metadata={"tags": {"colour": "red"}}))
    assert isinstance(view, FilteredCache)
    assert sorted(view.list()) == sorted([red, other])
    assert view.contains(red)
    assert not view.contains(blue)
    assert view.load(red).result == "r"
    with pytest.raises(KeyError):
        view.load(blue)
    with pytest.raises(KeyError):
        view._lookup(blue)
    assert view.query(QueryCall("f")).keys() == [red]
    assert view.expand(red[:10]) == red
    with pytest.raises(KeyError):
        view.expand(blue[:10])
    with pytest.raises(Rejected):
        view.save(_call(4, 4))
    with pytest.raises(Rejected):
        view.evict(red)
    with pytest.raises(Rejected):
        view.gc(grace=0)
    assert inner.contains(blue)


def test_filtered_view_serves_hits_through_the_decorator(harness) -> None:
    inner = harness.cache()

    @fleche
    def f(x):
        return x

    with cache(inner):
        f(1)
        f(2)
    ran = Counter()

    @fleche
    def f(x):  # the same identity: hits what the first one stored
        ran.n += 1
        return x

    with cache(inner.filter(lambda call: call.arguments["x"] == 1)):
        assert f(1) == 1
        assert ran.n == 0
        with pytest.raises(Rejected):  # hidden: a miss, and the view stores nothing
            f(2)
    assert ran.n == 1


def test_filtered_shrink_needs_only_to_tell_visible_calls_apart(harness) -> None:
    inner = harness.cache()
    keys = [inner.save(_call(i, i)) for i in range(40)]
    kept = keys[::8]
    view = inner.filter(lambda call: call.key in kept)
    for key in kept:
        short = view.shrink(key)
        assert len(short) <= len(inner.shrink(key))
        assert view.expand(short) == key
    assert view.shrink(*kept[:2]) == [view.shrink(kept[0]), view.shrink(kept[1])]
