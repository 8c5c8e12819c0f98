"""SizeLimitedCache: least recently used eviction by entries and bytes, across threads and processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from fleche import cache, fleche
from fleche.caches import SizeLimitedCache
from fleche.call import Call
from fleche.config import cache_from_url
from fleche.errors import ConfigError
from fleche.sizelimit import estimate_size
from fleche.storage.memory import CallMemory, ValueMemory


def _call(x: object, result: object = None) -> Call:
    return Call("f", {"x": x}, {}, "tests", result=result)


def test_keeps_at_most_max_entries(harness) -> None:
    limited = SizeLimitedCache(harness.cache(), max_entries=3)
    keys = [limited.save(_call(i, i)) for i in range(7)]
    assert sorted(limited.list()) == sorted(keys[-3:])
    assert limited.stats()["entries"] == 3


def test_evicts_the_least_recently_used(harness) -> None:
    limited = SizeLimitedCache(harness.cache(), max_entries=3)
    first, second, third = (limited.save(_call(i, i)) for i in range(3))
    assert limited._lookup(first) == 0  # used again: now the newest
    fourth = limited.save(_call(3, 3))
    assert sorted(limited.list()) == sorted([first, third, fourth])
    assert not limited.contains(second)


def test_access_order_is_shared_through_the_store() -> None:
    """Two cache objects over one store (as two processes would be) see each other's hits."""
    inner = cache_from_url("memory://")
    here = SizeLimitedCache(inner, max_entries=3)
    there = SizeLimitedCache(inner, max_entries=3)
    first, second, _ = (here.save(_call(i, i)) for i in range(3))
    there._lookup(first)  # only ``there`` knows, through the record it rewrote
    assert (
        inner.load(first).metadata["fleche"]["accessed"]
        >= inner.load(second).metadata["fleche"]["accessed"]
    )
    here.save(_call(3, 3))
    assert here.contains(first)
    assert not here.contains(second)


def test_evicted_calls_take_their_unshared_values_along(harness) -> None:
    inner = harness.cache()
    limited = SizeLimitedCache(inner, max_entries=1)
    limited.save(Call("f", {"x": "shared"}, {}, "tests", result="first"))
    limited.save(Call("g", {"x": "shared"}, {}, "tests", result="second"))
    assert sorted(inner.load_value(k) for k in inner.value_keys()) == ["second", "shared"]


def test_keeps_at_most_max_bytes() -> None:
    inner = cache_from_url("memory://")
    limited = SizeLimitedCache(inner, max_bytes=10_000)
    for i in range(10):
        limited.save(_call(i, bytes(3_000)))
    stats = limited.stats()
    assert 0 < stats["bytes"] <= 10_000
    assert stats["entries"] == 3  # three results of 3000 bytes (and their small arguments)
    limited.save(_call("huge", bytes(20_000)))  # larger than the limit on its own: not kept
    assert limited.stats()["bytes"] <= 10_000
    assert not limited.contains(_call("huge").lookup_key())


def test_sizes_come_from_the_storage_or_an_estimate(harness) -> None:
    inner = harness.cache()
    limited = SizeLimitedCache(inner, max_bytes=50_000)
    key = limited.save(_call(1, bytes(20_000)))
    recorded = inner.load(key).metadata["fleche"]["bytes"]
    result_key = inner.load(key).record.result
    stored_size = inner._value_size(result_key)
    if stored_size is None:  # the storage cannot tell (memory): the limiter estimates
        assert recorded >= estimate_size(bytes(20_000)) >= 20_000
    else:
        assert recorded >= stored_size >= 20_000


def test_limits_are_checked() -> None:
    inner = cache_from_url("memory://")
    with pytest.raises(ConfigError):
        SizeLimitedCache(inner)
    with pytest.raises(ConfigError):
        SizeLimitedCache(inner, max_entries=-1)
    with pytest.raises(ConfigError):
        SizeLimitedCache(inner, max_bytes="1 GB")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SizeLimitedCache(inner, max_entries=1, max_size=1)


def test_the_form_of_fleche_0_22_2() -> None:
    limited = SizeLimitedCache(values=ValueMemory(), calls=CallMemory(), max_size=2)
    assert limited.max_size == limited.max_entries == 2
    for i in range(4):
        limited.save(_call(i, i))
    assert limited.stats()["entries"] == 2


def test_decorated_functions_respect_the_limit(harness) -> None:
    limited = SizeLimitedCache(harness.cache(), max_entries=4)

    @fleche
    def square(x):
        return x * x

    @fleche
    def outer(n):
        return sum(square(i) for i in range(n))  # nested saves while outer holds its lock

    with cache(limited):
        for i in range(10):
            assert square(i) == i * i
        assert outer(6) == 55
        assert square(9) == 81
    assert limited.stats()["entries"] == 4
    assert limited.contains(square.digest(9))


def test_async_functions_respect_the_limit() -> None:
    limited = SizeLimitedCache(cache_from_url("memory://"), max_entries=2)

    @fleche
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    async def main():
        with cache(limited):
            return await asyncio.gather(*(double(i) for i in range(6)))

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert limited.stats()["entries"] == 2


def test_threads_never_exceed_the_limit_by_more_than_one_each() -> None:
    limit, threads, saves = 5, 4, 40
    limited = SizeLimitedCache(cache_from_url("memory://"), max_entries=limit)
    done = threading.Event()
    seen: list[int] = []

    def sample() -> None:
        while not done.is_set():
            seen.append(limited.stats()["entries"])

    def work(t: int) -> None:
        for i in range(saves):
            limited.save(_call((t, i), i))

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    sampler.join()
    assert seen
    assert max(seen) <= limit + threads
    assert limited.stats()["entries"] == limit


def test_pickles_with_its_limits() -> None:
    import pickle

    limited = SizeLimitedCache(cache_from_url("memory://"), max_entries=3, max_bytes=100)
    again = pickle.loads(pickle.dumps(limited))
    assert again == limited
    again.save(_call(1, 1))
    assert again.stats()["entries"] == 1


_WORKER = textwrap.dedent(
    """
    import sys
    from fleche.call import Call
    from fleche.config import cache_from_config

    url, limit, worker, saves = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    limited = cache_from_config({"url": url, "max_entries": limit})
    for i in range(saves):
        limited.save(Call("f", {"x": (worker, i)}, {}, "tests", result=i))
    """
)


@pytest.mark.slow
def test_four_processes_never_exceed_the_limit_by_more_than_one_each(tmp_path) -> None:
    """Four processes save into one file cache while a sampler counts its entries."""
    limit, processes, saves = 6, 4, 40
    url = f"file://{tmp_path / 'shared'}"
    observer = SizeLimitedCache(cache_from_url(url), max_entries=limit)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, str(limit), str(p), str(saves)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    seen = []
    while any(w.poll() is None for w in workers):
        seen.append(observer.stats()["entries"])
    for w in workers:
        assert w.wait(timeout=120) == 0, w.stderr.read() if w.stderr else ""
    assert max(seen) <= limit + processes
    assert observer.stats()["entries"] == limit
