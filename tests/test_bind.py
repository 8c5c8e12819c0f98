"""``.bind()`` carries the active cache and metadata into worker processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from fleche import cache, fleche, meta, tags
from fleche.call import Call
from fleche.config import cache_from_config, cache_from_url, resolve_cache
from fleche.metadata import Runtime

from .backends import HARNESSES


@fleche
def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_bound_calls_land_in_the_shared_cache_with_their_metadata(tmp_path, start) -> None:
    shared = cache_from_url(f"file://{tmp_path / 'shared'}")
    with cache(shared), tags(run="pool", start=start), meta(Runtime()):
        work = square.bind()
    context = multiprocessing.get_context(start)
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        assert list(pool.map(work, range(5))) == [0, 1, 4, 9, 16]
    with cache(shared):
        stored = square.query()
        assert stored.count() == 5
        assert sorted(call.result for call in stored) == [0, 1, 4, 9, 16]
        for call in stored:
            assert call.metadata["tags"] == {"run": "pool", "start": start}
            assert call.metadata["runtime"]["duration"] >= 0
        assert square.contains(3)
    # the parent's own active cache was left alone
    assert not cache().contains(square.digest(3))


def test_bound_arguments_are_partial(tmp_path) -> None:
    shared = cache_from_url(f"file://{tmp_path / 'shared'}")
    with cache(shared):
        bound = square.bind(7)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(bound).result() == 49
    with cache(shared):
        assert square.load(7) == 49


def test_a_cache_built_from_a_url_pickles_as_its_url(tmp_path) -> None:
    url = f"file://{tmp_path / 'c'}"
    built = cache_from_url(url)
    data = pickle.dumps(built)
    assert url.encode() in data
    assert b"FileBackend" not in data and b"ValueFiles" not in data  # no storage objects inside
    assert pickle.loads(data) == built


def test_caches_built_from_config_pickle_as_their_urls(tmp_path) -> None:
    config = [
        {"url": "memory://"},
        {"url": f"file://{tmp_path / 'team'}", "read_only": True},
        {"values": f"file://{tmp_path / 'v'}", "calls": f"file://{tmp_path / 'c'}"},
    ]
    built = cache_from_config(config)
    again = pickle.loads(pickle.dumps(built))
    assert again == built
    assert str(tmp_path / "team").encode() in pickle.dumps(built)


@pytest.mark.parametrize("kind", ["path", "sqlite"])
def test_bound_calls_land_in_a_shared_sql_cache(tmp_path, kind) -> None:
    shared = resolve_cache(
        str(tmp_path / "here") if kind == "path" else f"sqlite:///{tmp_path}/c.db"
    )
    with cache(shared):
        work = square.bind()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 4, 9]
    with cache(shared):
        assert sorted(square.query().results()) == [0, 1, 4, 9]


@pytest.mark.parametrize("kind", sorted(name for name in HARNESSES if name != "memory"))
def test_every_persistent_cache_pickles_as_its_url(tmp_path, kind) -> None:
    harness = HARNESSES[kind](tmp_path)
    harness.check_available()
    try:
        built = harness.cache()
        key = built.save(Call("f", {"x": 1}, {}, "tests", result=2))
        data = pickle.dumps(built)
        assert built.url.encode() in data
        again = pickle.loads(data)
        assert again == built
        assert again.load(key).result == 2
    finally:
        harness.close()


def test_bound_calls_in_a_multiprocessing_pool(tmp_path) -> None:
    shared = cache_from_url(f"file://{tmp_path / 'shared'}")
    with cache(shared), tags(via="multiprocessing"):
        work = square.bind()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(work, [5, 6]) == [25, 36]
    with cache(shared):
        assert [c.metadata["tags"] for c in square.query()] == [{"via": "multiprocessing"}] * 2
        assert square.load(6) == 36
