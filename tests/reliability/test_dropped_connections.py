"""Dropped database connections: PostgreSQL sessions terminated, Redis clients killed.

The cache's connections carry a name of their own (``application_name`` / ``client_name``) so that
a separate admin connection kills exactly them (``pg_terminate_backend``, ``CLIENT KILL``), never
another test's. Cycles go round these moments:

- ``idle``: between operations; the next call finds its connections dead;
- ``computing``: while the body runs, holding the key's lock;
- ``in_write`` (PostgreSQL): inside a write transaction, before its COMMIT, once (the write is
  retried on a new connection) or on every attempt (the write fails).

Count: 8 cycles per backend in CI, 200 under stress. Pass rule: every call returns its computed
value (a failed store is an ``UnstorableResultWarning``, never an exception); after each cycle no
stored call record lacks its result value, nothing corrupt is read, and the cache has reconnected:
a new call is stored and the next one is a hit.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fleche
from fleche import fleche as cached
from fleche.errors import CorruptEntryWarning, FlecheWarning, UnstorableResultWarning

from ..backends import HARNESSES
from .common import count, record

pytestmark = pytest.mark.timeout(1200)  # full counts (nox -s stress) outlast the default 300 s

MOMENTS = {
    "postgres": ("idle", "computing", "in_write", "in_every_write"),
    "redis": ("idle", "computing"),
}
runs: list[int] = []
during_body: list[Callable[[], int]] = []


@cached
def entry(i: int) -> dict[str, Any]:
    runs.append(i)
    for kill in during_body:
        kill()
    return {"i": i, "data": bytes([i % 251]) * 2000}


def postgres_killer(tag: str) -> Callable[[], int]:
    import psycopg

    from ..backends.postgres import URL

    admin = psycopg.connect(URL.replace("+psycopg", ""), autocommit=True)

    def kill() -> int:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (tag,),
        ).fetchall()
        return len(rows)

    kill.close = admin.close  # type: ignore[attr-defined]
    return kill


def redis_killer(tag: str) -> Callable[[], int]:
    from ..backends.redis import raw_client

    admin = raw_client()

    def kill() -> int:
        ids = [c["id"] for c in admin.client_list() if c.get("name") == tag]
        for client_id in ids:
            admin.client_kill_filter(_id=client_id)
        return len(ids)

    kill.close = admin.close  # type: ignore[attr-defined]
    return kill


@pytest.fixture(params=sorted(MOMENTS))
def dropping(request, tmp_path) -> Iterator[tuple[str, Any, Callable[[], int]]]:
    """(kind, cache, kill): ``kill()`` ends every connection of ``cache`` and returns how many."""
    kind = request.param
    harness = HARNESSES[kind](tmp_path)
    harness.check_available()
    tag = f"fleche-drop-{uuid.uuid4().hex[:12]}"
    if kind == "postgres":
        store, kill = harness.cache(application_name=tag), postgres_killer(tag)
    else:
        store, kill = harness.cache(client_name=tag), redis_killer(tag)
    yield kind, store, kill
    kill.close()  # type: ignore[attr-defined]
    harness.close()


def killing_writes(db: Any, kill: Callable[[], int], times: int) -> Callable[..., Any]:
    """``db.write`` that kills the session inside the next ``times`` write transactions."""
    original, left = db.write, [times]

    def write(work: Callable[[Any], Any], **options: Any) -> Any:
        def work_then_kill(cursor: Any) -> Any:
            result = work(cursor)
            if left[0] > 0:
                left[0] -= 1
                assert kill() > 0
            return result

        return original(work_then_kill, **options)  # pipelined or not, as the caller asked

    return write


def orphans(store: Any) -> int:
    """Stored call records whose result value is missing."""
    missing = 0
    for key in list(store.calls.list()):
        try:
            result = store.calls.load(key).result
        except KeyError:
            continue
        missing += int(not store.values.contains(result))
    return missing


def test_dropped_connections_lose_nothing_and_reconnect(dropping) -> None:
    kind, store, kill_all = dropping
    moments = MOMENTS[kind]
    cycles = count(ci=8, full=200)
    tallies = {"cycles": 0, "killed_sessions": 0, "unstored": 0, "orphans": 0, "wrong": 0}

    def kill() -> int:
        killed = kill_all()
        tallies["killed_sessions"] += killed
        return killed

    with fleche.cache(store), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FlecheWarning)
        for cycle in range(cycles):
            moment = moments[cycle % len(moments)]
            i = 2 * cycle
            assert entry(i + 1) == {"i": i + 1, "data": bytes([(i + 1) % 251]) * 2000}
            before = len(caught)
            if moment == "idle":
                assert kill() > 0
                result = entry(i)
            elif moment == "computing":
                during_body.append(kill)
                try:
                    result = entry(i)
                finally:
                    during_body.clear()
            else:
                db = store.calls._db
                db.write = killing_writes(db, kill, 1 if moment == "in_write" else 1000)
                try:
                    result = entry(i)
                finally:
                    del db.write
            want = {"i": i, "data": bytes([i % 251]) * 2000}
            tallies["wrong"] += int(result != want)
            assert result == want, moment
            new = [w.category for w in caught[before:]]
            assert CorruptEntryWarning not in new, moment
            tallies["unstored"] += new.count(UnstorableResultWarning)
            if moment == "in_every_write":
                assert UnstorableResultWarning in new
            tallies["orphans"] += orphans(store)
            assert tallies["orphans"] == 0, moment
            ran = len(runs)
            assert entry(i + 1) == {"i": i + 1, "data": bytes([(i + 1) % 251]) * 2000}
            assert entry(i) == want
            if moment != "in_every_write":
                assert len(runs) == ran, f"{moment}: the cache did not keep the entries"
            tallies["cycles"] += 1
    record("dropped_connections", kind, tallies)
    assert tallies["killed_sessions"] > 0 and tallies["wrong"] == 0
