"""Short digests on every cache kind: expand and shrink, alone and combined (stacks, pools, views)."""

from __future__ import annotations

import re

import pytest

from fleche import AmbiguousDigestError
from fleche.caches import (
    BaseCache,
    CachePool,
    CacheStack,
    FilteredCache,
    ReadOnlyCache,
    SizeLimitedCache,
    VoidCache,
)
from fleche.call import Call

RECORD = Call("f", {"x": 1}, {}, "tests", result=1).digested()


def key(stem: str) -> str:
    return stem.ljust(32, "0")


def put(cache: BaseCache, *keys: str) -> None:
    """Store a call record under each of ``keys`` (no values needed to expand or shrink)."""
    for k in keys:
        cache._store(k, RECORD, [])


def listed(error: AmbiguousDigestError) -> list[str]:
    return re.findall(r"[0-9a-f]{32}", str(error))


def test_ambiguous_error_lists_at_most_ten_candidates(harness) -> None:
    plain = harness.cache()
    many = [key(f"abc{i:03x}") for i in range(15)]
    put(plain, *many)
    with pytest.raises(AmbiguousDigestError) as raised:
        plain.expand("abc")
    assert listed(raised.value) == many[:10]  # the ten smallest, in order
    assert str(raised.value).startswith("prefix 'abc' is ambiguous: it matches abc000")
    assert str(raised.value).endswith(" ...")  # and a sign that there are more
    few = [key("fed1"), key("fed2"), key("fed3")]
    put(plain, *few)
    with pytest.raises(AmbiguousDigestError) as raised:
        plain.expand("fed")
    assert listed(raised.value) == few
    assert not str(raised.value).endswith("...")


@pytest.mark.parametrize("kind", [CacheStack, CachePool])
def test_layers_list_ten_candidates_from_all_of_them(harness, kind) -> None:
    a, b = harness.cache(), harness.cache()
    many = [key(f"abc{i:03x}") for i in range(15)]
    put(a, *many[1::2])
    put(b, *many[0::2])
    with pytest.raises(AmbiguousDigestError) as raised:
        kind(a, b).expand("abc")
    assert listed(raised.value) == many[:10]
    assert str(raised.value).endswith(" ...")


@pytest.mark.parametrize("kind", [CacheStack, CachePool])
def test_layers_expand_and_shrink_across_each_other(harness, kind) -> None:
    a, b = harness.cache(), harness.cache()
    mine, theirs, lone = key("abcdef12"), key("abcdef13"), key("5")
    put(a, mine, lone)
    put(b, theirs)
    assert a.shrink(mine) == "a" and b.shrink(theirs) == "a"  # each alone: one character
    both = kind(a, b)
    assert both.shrink(mine) == "abcdef12"  # together: as long as it takes to tell them apart
    assert both.shrink(mine, theirs, lone) == ["abcdef12", "abcdef13", "5"]
    assert both.expand("abcdef12") == mine
    assert both.expand("abcdef13") == theirs
    assert both.expand("5") == lone
    with pytest.raises(AmbiguousDigestError) as raised:
        both.expand("abcdef1")
    assert raised.value.candidates == [mine, theirs]
    with pytest.raises(KeyError):
        both.expand("0")
    with pytest.raises(KeyError):
        both.expand(key("9"))


@pytest.mark.parametrize("kind", [CacheStack, CachePool])
def test_layers_expand_value_digests_across_each_other(harness, kind) -> None:
    a, b = harness.cache(), harness.cache()
    in_a = a.save(Call("f", {"x": "only in a"}, {}, "tests", result="ra"))
    in_b = b.save(Call("f", {"x": "only in b"}, {}, "tests", result="rb"))
    both = kind(a, b)
    for k in (a.load(in_a).record.result, b.load(in_b).record.result):
        assert both.values_expand(k[:12]) == k
        assert both.load_value(k) in ("ra", "rb")
    with pytest.raises(KeyError):
        both.values_expand(key("0")[:12])


@pytest.mark.parametrize(
    "wrap",
    [
        ReadOnlyCache,
        lambda c: SizeLimitedCache(c, max_entries=100),
        lambda c: FilteredCache(c, lambda call: True),
    ],
    ids=["read-only", "size-limited", "filtered"],
)
def test_wrappers_expand_and_shrink_like_their_cache(harness, wrap) -> None:
    inner = harness.cache()
    keys = [key("abcdef12"), key("abcdef13"), key("5")]
    put(inner, *keys)
    view = wrap(inner)
    assert view.shrink(*keys) == ["abcdef12", "abcdef13", "5"]
    assert view.shrink(keys[2]) == "5"
    assert [view.expand(p) for p in ("abcdef12", "abcdef13", "5")] == keys
    with pytest.raises(AmbiguousDigestError):
        view.expand("abcdef1")
    with pytest.raises(KeyError):
        view.expand("0")


def test_void_cache_expands_nothing() -> None:
    void = VoidCache()
    with pytest.raises(KeyError):
        void.expand("abc")
    with pytest.raises(KeyError):
        void.values_expand("abc")
    assert void.shrink(key("abc")) == "a"
