"""Lock rules under nesting (SPEC section 4): deep recursion, threads, asyncio tasks, real cycles.

- ``fib(200)`` on PostgreSQL: 200 nested COMPUTE locks, all advisory locks on one server session
  (counted in ``pg_locks`` from an admin connection at the deepest call). Pass rule: one backend
  pid holds them all, as many as the recursion is deep, and the right Fibonacci number is returned.
- Nested calls across threads and tasks. Count: 6 threads (or tasks) x 3 rounds over overlapping
  keys in CI, 16 x 10 under stress, on every persistent backend. Pass rule: every call returns
  the right value (no deadlock: each worker finishes), and each body ran at most once per key.
- A real cycle (a(1) waits for a thread computing b(1), which calls a(1)): with ``lock_timeout=1``
  it ends in ``LockTimeoutError``, on every persistent backend, and the keys are free afterwards.

Worker threads see the cache activated for the whole process (``fleche.cache(x)``; the test
fixtures restore the default afterwards), not one activated by ``with``, which is per thread.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import fleche
from fleche import fleche as cached
from fleche.errors import LockTimeoutError

from ..backends import HARNESSES
from .common import count, record

pytestmark = pytest.mark.timeout(1200)  # full counts (nox -s stress) outlast the default 300 s

# --- fib(200): one connection for the locks ----------------------------------------------------
depth_seen: list[tuple[int, int]] = []


def pg_admin() -> Any:
    import psycopg

    from ..backends.postgres import URL

    return psycopg.connect(URL.replace("+psycopg", ""), autocommit=True)


def test_fib_200_on_postgres_holds_its_locks_on_one_connection(tmp_path) -> None:
    harness = HARNESSES["postgres"](tmp_path)
    harness.check_available()
    tag = f"fleche-fib-{uuid.uuid4().hex[:12]}"
    store = harness.cache(application_name=tag)
    admin = pg_admin()
    depth_seen.clear()

    @cached
    def fib(n: int) -> int:
        if n < 2:
            if not depth_seen:  # the deepest call: every ancestor holds its key's lock
                rows = admin.execute(
                    "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s",
                    (tag,),
                ).fetchall()
                pids = Counter(pid for (pid,) in rows)
                depth_seen.extend(pids.items())
            return n
        return fib(n - 1) + fib(n - 2)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        with fleche.cache(store):
            result = fib(200)
            assert fib(200) == result
    finally:
        sys.setrecursionlimit(limit)
        admin.close()
        harness.close()
    a, b = 0, 1
    for _ in range(200):
        a, b = b, a + b
    assert result == a
    pids = dict(depth_seen)
    record("nesting_fib200", "postgres", {"lock_pids": len(pids), "locks": sum(pids.values())})
    assert len(pids) == 1, f"advisory locks spread over sessions: {pids}"
    assert sum(pids.values()) >= 199  # fib(200) ... fib(2), and fib(1) itself


# --- nested calls across threads and tasks ------------------------------------------------------
body_runs: Counter[str] = Counter()
runs_lock = threading.Lock()


def ran(name: str) -> None:
    with runs_lock:
        body_runs[name] += 1


@cached
def leaf(j: int) -> int:
    ran(f"leaf{j}")
    return j * j


@cached
def middle(j: int) -> int:
    ran(f"middle{j}")
    return leaf(j) + leaf(j + 1)


@cached
def outer(i: int) -> int:
    ran(f"outer{i}")
    with ThreadPoolExecutor(2) as pool:  # nested calls in other threads, on other keys
        parts = list(pool.map(middle, [i, i + 1]))
    return parts[0] + parts[1] + middle(i + 2)


def want_outer(i: int) -> int:
    def middle_(j: int) -> int:
        return j * j + (j + 1) * (j + 1)

    return middle_(i) + middle_(i + 1) + middle_(i + 2)


@cached
async def aleaf(j: int) -> int:
    ran(f"aleaf{j}")
    await asyncio.sleep(0)
    return j * j


@cached
async def amiddle(j: int) -> int:
    ran(f"amiddle{j}")
    a, b = await asyncio.gather(aleaf(j), aleaf(j + 1))
    return a + b


@cached
async def aouter(i: int) -> int:
    ran(f"aouter{i}")
    parts = await asyncio.gather(amiddle(i), amiddle(i + 1), amiddle(i + 2))
    return sum(parts)


@pytest.fixture(params=sorted(n for n in HARNESSES if n != "memory"))
def fresh(request, tmp_path) -> Any:
    """(kind, harness) of one persistent backend, closed after the test."""
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    yield request.param, harness
    harness.close()


def test_nested_calls_across_threads_and_tasks_never_deadlock(fresh) -> None:
    kind, harness = fresh
    workers, rounds = count(ci=6, full=16), count(ci=3, full=10)
    done = 0
    for r in range(rounds):
        body_runs.clear()
        fleche.cache(harness.cache())  # for the whole process: worker threads use it too
        keys = [r * 100 + w % 3 for w in range(workers)]  # overlapping: workers share keys
        errors: list[BaseException] = []
        results: dict[int, int] = {}

        def work(i: int, results: dict[int, int] = results, errors: list = errors) -> None:
            try:
                results[i] = outer(i)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads), f"{kind}: threads deadlocked"
        assert errors == []
        assert results == {k: want_outer(k) for k in set(keys)}

        async def tasks(keys: list[int] = keys) -> list[int]:
            return await asyncio.gather(*(aouter(k) for k in keys))

        got = asyncio.run(asyncio.wait_for(tasks(), 300))
        assert got == [want_outer(k) for k in keys]
        assert max(body_runs.values()) == 1, f"{kind}: a body ran twice: {body_runs}"
        done += 2 * workers
    record("nesting_threads_tasks", kind, {"workers": workers, "rounds": rounds, "calls": done})


# --- a real cycle -------------------------------------------------------------------------------
@cached
def cycle_a(i: int) -> int:
    with ThreadPoolExecutor(1) as pool:  # a(i) waits for a thread computing b(i) ...
        return pool.submit(cycle_b, i).result() + 1


@cached
def cycle_b(i: int) -> int:
    return cycle_a(i) * 2  # ... which needs a(i): its lock is held by the first thread


def test_a_real_cycle_ends_in_lock_timeout(fresh) -> None:
    kind, harness = fresh
    store = harness.cache(lock_timeout=1)
    fleche.cache(store)  # for the whole process: the pool's thread uses it too
    with pytest.raises(LockTimeoutError):
        cycle_a(7)
    assert not store.contains(cycle_a.digest(7))
    # the locks were released: the same keys work when there is no cycle
    assert leaf(7) == 49 and middle(7) == 49 + 64
    record("nesting_cycle", kind, {"lock_timeout_raised": 1})
