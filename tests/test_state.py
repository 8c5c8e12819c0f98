"""Active cache and metadata: sticky activation, with-blocks isolated per thread and task."""

from __future__ import annotations

import asyncio
import threading

import pytest

import fleche
from fleche import ConfigError, cache, meta, project, tags
from fleche import fleche as cached
from fleche.caches import VoidCache
from fleche.config import cache_from_url
from fleche.metadata import Tags
from fleche.state import active_metadata


def test_cache_returns_the_active_cache() -> None:
    assert isinstance(cache(), fleche.BaseCache)


def test_sticky_activation_holds_for_new_threads() -> None:
    mine = cache_from_url("memory://")
    cache(mine)
    seen = []
    t = threading.Thread(target=lambda: seen.append(cache()))
    t.start()
    t.join()
    assert cache() is mine
    assert seen == [mine]


def test_with_block_scopes_to_the_block_and_the_thread() -> None:
    outer = cache()
    inner = cache_from_url("memory://")
    seen = []
    with cache(inner):
        assert cache() is inner
        t = threading.Thread(target=lambda: seen.append(cache()))
        t.start()
        t.join()
    assert cache() is outer
    assert seen == [outer]


def test_with_blocks_are_isolated_between_asyncio_tasks() -> None:
    a, b = cache_from_url("memory://"), cache_from_url("memory://")

    async def use(c):
        with cache(c):
            await asyncio.sleep(0.01)
            return cache()

    async def main():
        return await asyncio.gather(use(a), use(b))

    assert asyncio.run(main()) == [a, b]


def test_reserved_names_and_unknown_names() -> None:
    assert cache("memory") is not None
    with cache("void"):
        assert isinstance(cache(), VoidCache)
    with pytest.raises(ConfigError, match="memory"):
        cache("no-such-cache")


def test_unknown_url_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        cache("nosuch://x")


def test_fleche_cache_environment_variable(monkeypatch) -> None:
    from fleche.state import _sticky

    monkeypatch.setenv("FLECHE_CACHE", "void")
    _sticky["cache"] = None
    assert isinstance(cache(), VoidCache)


def test_tags_meta_and_project_nest() -> None:
    @cached
    def f(x):
        return x

    with project("alpha"), tags(run=1):
        f(1)
    with meta(Tags(owner="me")):
        f(2)
    assert active_metadata() == ()
    assert f.query(1).only().metadata["tags"] == {"project": "alpha", "run": 1}
    assert f.query(2).only().metadata["tags"] == {"owner": "me"}


def test_meta_without_with_is_sticky() -> None:
    meta(Tags(team="x"))
    assert active_metadata() == (Tags(team="x"),)
