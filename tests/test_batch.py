"""Batched writes (``cache.batch()``) and batched transfer, over every storage kind (SPEC 5, 7)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from fleche import SaveError, cache, fleche
from fleche.call import Call
from fleche.config import cache_from_url
from fleche.storage.base import Intent

# the stores whose batches are transactions: an exception rolls back what a batch has not committed
TRANSACTIONAL = {"embedded", "sqlite", "postgres", "mysql"}
SHARED_BY_URL = {"embedded", "filesystem", "sqlite", "postgres", "mysql", "redis"}


class Unpicklable:
    """Digestible (so a memory cache keeps it) but no serialiser can write it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __digest__(self) -> object:
        return ("unpicklable", self.n)

    def __reduce__(self) -> object:
        raise TypeError("Unpicklable cannot be pickled")


def call(x: object, result: object) -> Call:
    return Call("f", {"x": x}, {}, "tests.batch", result=result)


def memory_with(results: list[object]) -> tuple[object, list[str]]:
    source = cache_from_url("memory://")
    return source, [source.save(call(i, r)) for i, r in enumerate(results)]


def check_consistent(target) -> None:
    """Every stored record's values are there (never a record without its value)."""
    for key in target.list():
        record = target.load(key).record
        target.load_value(record.result)
        for value in record.arguments.values():
            target.load_value(value)


def test_batched_transfer_copies_content(harness) -> None:
    source, keys = memory_with([[i, "r"] for i in range(7)])
    target = harness.cache()
    reported = []
    from fleche.query import transfer_calls

    calls = list(source.query())
    assert transfer_calls(source, calls, target, batch_size=3, progress=reported.append) == 7
    assert reported == [3, 6, 7]
    assert sorted(target.list()) == sorted(keys)
    for key in keys:
        copied, original = target.load(key), source.load(key)
        assert copied.record == original.record
        assert copied.result == original.result
        assert copied.arguments["x"] == original.arguments["x"]
    check_consistent(target)


def test_batched_transfer_keeps_existing_calls_unless_overwrite(harness) -> None:
    source, keys = memory_with(["new 0", "new 1", "new 2"])
    target = harness.cache()
    assert target.save(call(1, "old 1")) == keys[1]  # the same call (key), another result
    assert source.transfer(target, batch_size=2) == 2
    assert [target.load(k).result for k in keys] == ["new 0", "old 1", "new 2"]
    assert source.transfer(target, overwrite=True, batch_size=2) == 3
    assert [target.load(k).result for k in keys] == ["new 0", "new 1", "new 2"]


def test_transfer_pops_what_it_copied(harness) -> None:
    source = harness.cache()
    keys = [source.save(call(i, i)) for i in range(5)]
    target = cache_from_url("memory://")
    assert source.transfer(target, pop=True, batch_size=2) == 5
    assert list(source.list()) == []
    assert sorted(target.list()) == sorted(keys)


def test_transfer_stops_at_a_value_the_target_cannot_store(harness) -> None:
    results: list[object] = [0, 1, 2, Unpicklable(3), 4, 5]
    source, keys = memory_with(results)
    target = harness.cache()
    if harness.name == "memory":  # keeps objects as they are: nothing to serialise
        assert source.transfer(target, batch_size=2) == 6
        return
    with pytest.raises(SaveError, match="3 calls were copied") as caught:
        source.transfer(target, batch_size=2)  # the second batch, (2, 3), fails at 3
    assert keys[3] in str(caught.value) and "Unpicklable cannot be pickled" in str(caught.value)
    assert sorted(target.list()) == sorted(keys[:3])  # before it: stored; it and after: not
    assert [target.load(k).result for k in keys[:3]] == [0, 1, 2]
    check_consistent(target)


def _save_two_then_fail(target) -> tuple[str, str]:
    with target.batch():
        first = target.save(call("a", 1))
        with target.batch():  # nested: joins the outer one
            second = target.save(call("b", 2))
        assert target.contains(first) and target.contains(second)  # this thread sees them
        raise RuntimeError("stop")


def test_a_batch_is_one_commit_where_the_store_has_transactions(harness) -> None:
    target = harness.cache()
    with pytest.raises(RuntimeError, match="stop"):
        _save_two_then_fail(target)
    first, second = (call(x, 0).digested().lookup_key() for x in ("a", "b"))
    rolled_back = harness.name in TRANSACTIONAL
    assert target.contains(first) is not rolled_back
    assert target.contains(second) is not rolled_back
    with target.batch():
        target.save(call("c", 3))
    assert target.load(call("c", 3).digested().lookup_key()).result == 3
    check_consistent(target)


def test_a_batch_writes_seen_by_others_once_committed(harness) -> None:
    target = harness.cache()
    seen: list[bool] = []
    with target.batch():
        key = target.save(call("a", 1))
        other = threading.Thread(target=lambda: seen.append(target.contains(key)))
        other.start()
        other.join()
    assert seen == [harness.name not in TRANSACTIONAL]  # another thread: not before the commit
    assert target.contains(key)


def test_decorated_calls_in_a_batch(harness) -> None:
    target = harness.cache()
    runs = []

    @fleche
    def square(x):
        runs.append(x)
        return x * x

    with cache(target), target.batch():
        assert [square(x) for x in (1, 2, 1)] == [1, 4, 1]
    assert runs == [1, 2]
    with cache(target):
        assert square(2) == 4 and runs == [1, 2]


def test_a_batch_never_waits_for_a_key_while_it_holds_the_store(harness) -> None:
    """A thread computes key K (holding its lock) and then stores it; meanwhile a batch in another
    thread stores A, then K. The batch must commit A before waiting for K, or the computing thread
    would wait for the batch's transaction and the batch for K: a deadlock."""
    target = harness.cache()
    for storage in (target.calls, target.values):
        if hasattr(storage, "lock_timeout"):
            storage.lock_timeout = 10.0
    record_k = call("k", "k").digested()
    key_k = record_k.lookup_key()
    holding, batch_wrote = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def computing() -> None:
        try:
            with target._operation_context(key_k, intent=Intent.COMPUTE):
                holding.set()
                batch_wrote.wait(10)
                time.sleep(0.2)  # the batch is now waiting for K
                target._store(key_k, record_k, [(record_k.arguments["x"], "k"),
                                                (record_k.result, "k")])  # fmt: skip
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=computing)
    worker.start()
    holding.wait(10)
    with target.batch():
        key_a = target.save(call("a", "a"))
        batch_wrote.set()
        assert target.save(call("k", "k")) == key_k  # waits for the computing thread
    worker.join(20)
    assert not worker.is_alive() and errors == []  # neither ran into a lock timeout
    assert target.contains(key_a) and target.load(key_k).result == "k"


@pytest.mark.parametrize("harness", sorted(TRANSACTIONAL), indirect=True)  # the others: no rollback
def test_a_write_failing_in_a_batch_after_changing_rows_rolls_it_back_and_says_so(harness) -> None:
    from fleche.caches import save_call
    from fleche.digest import digest
    from fleche.errors import UnstorableResultWarning

    target = harness.cache()
    bad = call("bad", "r").digested()
    bad.name = None  # type: ignore[assignment]  # the store refuses a record without a name
    with pytest.raises(SaveError, match="rolled back"):  # noqa: PT012 (the batch raises at its end)
        with target.batch():
            first = target.save(call("a", 1))
            with pytest.warns(UnstorableResultWarning):  # the write's caller goes on ...
                assert not save_call(target, bad.lookup_key(), bad, [(digest("r"), "r")])
    assert not target.contains(first)  # ... but its batch was rolled back: the batch raised
    check_consistent(target)


def _compute_then_store(url: str, go: Any, done: Any) -> None:
    """In another process: hold key K (COMPUTE), wait for ``go``, then store K."""
    target = cache_from_url(url)
    record = call("k", "k").digested()
    key = record.lookup_key()
    with target._operation_context(key, intent=Intent.COMPUTE):
        done.set()
        go.wait(10)
        time.sleep(0.3)  # the batch in the parent is now waiting for K
        target._store(key, record, [(record.arguments["x"], "k"), (record.result, "k")])


@pytest.mark.parametrize("harness", sorted(SHARED_BY_URL), indirect=True)  # memory is per process
def test_a_batch_never_waits_for_a_key_another_process_holds(harness) -> None:
    import multiprocessing

    url = harness.url(lock_timeout=10)
    target = cache_from_url(url)
    fork = multiprocessing.get_context("fork")
    go, holding = fork.Event(), fork.Event()
    child = fork.Process(target=_compute_then_store, args=(url, go, holding))
    child.start()
    try:
        assert holding.wait(10)
        with target.batch():
            key_a = target.save(call("a", "a"))
            go.set()
            key_k = target.save(call("k", "k"))  # waits for the child, after committing A
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert target.contains(key_a) and target.load(key_k).result == "k"


def test_transfer_waits_for_a_key_another_thread_holds_and_stores_the_rest_first(harness) -> None:
    source, keys = memory_with(["r0", "r1", "r2"])
    target = harness.cache()
    holding, order = threading.Event(), []

    def computing() -> None:
        with target._operation_context(keys[1], intent=Intent.COMPUTE):
            holding.set()
            time.sleep(0.3)
            order.append(("released", target.contains(keys[0]), target.contains(keys[2])))

    worker = threading.Thread(target=computing)
    worker.start()
    holding.wait(10)
    assert source.transfer(target) == 3
    worker.join(10)
    # the free keys were committed before the transfer waited for the held one
    assert order == [("released", True, True)]
    assert [target.load(k).result for k in keys] == ["r0", "r1", "r2"]
    check_consistent(target)


@pytest.mark.parametrize("size", [0, -5])
def test_a_batch_size_below_one_is_refused_before_anything_is_copied(size: int) -> None:
    source, target = cache_from_url("memory://"), cache_from_url("memory://")
    fleche(cache=source)(lambda x: x * 2)(3)
    assert source.query().count() == 1
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        source.transfer(target, batch_size=size)
    assert target.query().count() == 0
