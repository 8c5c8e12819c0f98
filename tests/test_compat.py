"""Names kept for code written against fleche 0.22.2 (SPEC section 13): they exist and behave."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from fleche import D, DigestError, digest, fleche
from fleche.call import Call, DigestedCall, QueryCall


def test_fleche_call_lazy_names() -> None:
    from fleche.call import LazyArguments, LazyCall
    from fleche.config import cache_from_url

    store = cache_from_url("memory://")
    key = store.save(Call("f", {"x": [1], "y": "two"}, {}, "tests", result={"r": 3}))
    stored = store.load(key)
    assert isinstance(stored, LazyCall)
    assert isinstance(stored.arguments, LazyArguments)
    assert list(stored.arguments) == ["x", "y"]
    assert stored.arguments["y"] == "two"
    full = stored.fetch()
    assert isinstance(full, Call)
    assert full.arguments == {"x": [1], "y": "two"}
    assert full.result == {"r": 3}


def test_fleche_caches_names() -> None:
    from fleche.caches import (
        BaseCache,
        Cache,
        CachePool,
        CacheStack,
        FilteredCache,
        ReadOnlyCache,
        RefreshingCache,
        Rejected,
        SizeLimitedCache,
    )
    from fleche.errors import Rejected as TheRejected
    from fleche.storage.memory import CallMemory, ValueMemory

    assert Rejected is TheRejected
    plain = Cache(ValueMemory(), CallMemory())  # storages positionally
    for kind in (CacheStack, CachePool, FilteredCache, ReadOnlyCache, RefreshingCache):
        assert issubclass(kind, BaseCache)
    assert issubclass(SizeLimitedCache, BaseCache)
    key = plain.save(Call("f", {"x": 1}, {}, "tests", result=2))
    view = plain.filter(lambda call: call.arguments["x"] == 1)
    assert isinstance(view, FilteredCache)
    assert view.contains(key)
    with pytest.raises(Rejected):
        view.save(Call("f", {"x": 3}, {}, "tests", result=4))


def test_refreshing_cache_misses_and_forwards_saves() -> None:
    from fleche.caches import RefreshingCache
    from fleche.config import cache_from_url

    inner = cache_from_url("memory://")
    key = inner.save(Call("f", {"x": 1}, {}, "tests", result=1))
    refreshing = RefreshingCache(inner)
    with pytest.raises(KeyError):
        refreshing._lookup(key)
    assert not refreshing.contains(key)
    new = refreshing.save(Call("f", {"x": 2}, {}, "tests", result=2))
    assert inner.contains(new)


def test_the_caches_module_imports_without_the_composite_module_first() -> None:
    code = "import fleche.caches as c; print(c.CacheStack.__module__, c.FilteredCache.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["fleche.composite", "FilteredCache"]
    with pytest.raises(AttributeError):
        importlib.import_module("fleche.caches").NoSuchCache  # noqa: B018


def test_fleche_digest_names() -> None:
    from fleche.digest import DIGEST_LENGTH, Indigestible

    assert DIGEST_LENGTH == 32
    assert len(digest(1)) == DIGEST_LENGTH
    assert Indigestible is DigestError
    with pytest.raises(Indigestible):
        digest(iter([1]))


def test_fleche_query_iterator() -> None:
    from fleche.query import QueryIterator

    @fleche
    def f(x):
        return x

    f(1)
    f(2)
    found = f.query()
    assert isinstance(found, QueryIterator)
    assert sorted(found.results()) == [1, 2]
    assert found.filter(lambda call: call.result == 2).only().result == 2


def test_fleche_config_names_round_trip() -> None:
    from fleche.config import cache_from_config, cache_to_config

    stack = [
        {"values": {"type": "memory"}, "calls": {"type": "memory"}},
        {"values": {"type": "void"}, "calls": {"type": "void"}},
    ]
    built = cache_from_config(stack)
    assert type(built).__name__ == "CacheStack"
    assert cache_from_config(cache_to_config(built)) == built
    limited = cache_from_config(
        {"values": {"type": "memory"}, "calls": {"type": "memory"}, "max_size": 100}
    )
    assert limited.max_size == 100
    read_only = cache_from_config(
        {"values": {"type": "memory"}, "calls": {"type": "memory"}, "read_only": True}
    )
    assert type(read_only).__name__ == "ReadOnlyCache"


def test_calls_and_digests_as_before() -> None:
    record = Call("f", {"x": 1}, {}, "tests", result=2).digested()
    assert isinstance(record, DigestedCall)
    assert QueryCall("f").matches(record)
    assert D(1) == digest(1)


def test_fleche_storage_names_of_section_5(tmp_path) -> None:
    from fleche.caches import Cache
    from fleche.storage import (
        CallMemory,
        CallPickleFile,
        CallVoid,
        MemoryBackend,
        Sql,
        ValueMemory,
        ValuePickleFile,
        ValueVoid,
        VoidBackend,
    )

    backend = MemoryBackend()
    backend.put([1], "a" * 32)
    assert backend.get("a" * 32) == [1]
    void = VoidBackend()
    void.put(1, "b" * 32)
    with pytest.raises(KeyError):
        void.get("b" * 32)
    for values, calls in [
        (ValueMemory(), CallMemory()),
        (ValuePickleFile(tmp_path / "values"), CallPickleFile(tmp_path / "calls")),
        (ValueMemory(), Sql(f"sqlite:///{tmp_path}/calls.db")),
    ]:
        store = Cache(values, calls)
        key = store.save(Call("f", {"x": 1}, {}, "tests", result=[2]))
        assert store.load(key).result == [2]
        assert store.load(key).arguments["x"] == 1
    nothing = Cache(ValueVoid(), CallVoid())
    assert not nothing.contains(nothing.save(Call("f", {"x": 1}, {}, "tests", result=2)))
