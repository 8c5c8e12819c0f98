"""Concurrent writers and the stampede.

Concurrent writers — count: 2 processes x 3 threads for 3 s in CI, 4 x 3 for 30 s under stress.
Pass rule: no exception escapes, no wrong value is read.

Stampede — count: 6 callers (3 processes x 2 calls) on one cold key in CI, 16 under stress.
Pass rule: the body runs exactly once; killing the holder mid-compute lets the others finish
within the lock's lease (and the body then runs once more, in one of them).
"""

from __future__ import annotations

import json
import time

import pytest

from .common import count, record, spawn, wait_ready

pytestmark = pytest.mark.timeout(1200)  # full counts (nox -s stress) outlast the default 300 s


def test_concurrent_writers_never_read_a_wrong_value(persistent) -> None:
    kind, _, url = persistent
    processes = count(ci=2, full=4)
    seconds = count(ci=3, full=30)
    children = [spawn("churn", url, str(p), str(seconds)) for p in range(processes)]
    tallies = []
    for child in children:
        out, err = child.communicate(timeout=seconds + 120)
        assert child.returncode == 0, err
        tallies.append(json.loads(out.strip().splitlines()[-1]))
    total = {
        k: sum(t[k] for t in tallies)
        for k in ("saves", "loads", "evictions", "gcs", "wrong", "corrupt")
    }
    errors = [e for t in tallies for e in t["errors"]]
    record("concurrent_writers", kind, {**total, "errors": len(errors), "processes": processes})
    assert errors == []
    assert total["wrong"] == 0
    assert total["loads"] > 0 and total["saves"] > 0


def test_stampede_computes_once(persistent, tmp_path) -> None:
    kind, _, url = persistent
    callers = count(ci=3, full=8)
    marker = tmp_path / "ran.txt"
    children = [spawn("stampede", url, str(marker), "1.0") for _ in range(callers)]
    for child in children:
        wait_ready(child)
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1])["result"])
    runs = len(marker.read_text().splitlines())
    record("stampede", kind, {"callers": callers, "body_runs": runs})
    assert results == [42] * callers
    assert runs == 1


def test_stampede_survives_a_killed_holder(persistent, tmp_path) -> None:
    kind, _, url = persistent
    marker = tmp_path / "ran.txt"
    holder = spawn("stampede", url, str(marker), "30")
    wait_ready(holder)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the holder never started computing"
    waiters = [spawn("stampede", url, str(marker), "0.2") for _ in range(2)]
    for child in waiters:
        wait_ready(child)
    time.sleep(0.3)
    holder.kill()
    holder.wait(10)
    started = time.monotonic()
    for child in waiters:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["result"] == 42
    waited = time.monotonic() - started
    runs = len(marker.read_text().splitlines())
    record("stampede_killed_holder", kind, {"body_runs": runs, "waited_s": round(waited, 2)})
    assert runs == 2  # the killed holder's run, then exactly one waiter's
