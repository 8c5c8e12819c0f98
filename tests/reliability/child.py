"""Child processes of the fault-injection suite (``python -m tests.reliability.child MODE URL ...``).

Modes:
- ``write URL SEED``: store entries from the bounded pool through a cached function, forever,
  until killed.
- ``stampede URL MARKER SLEEP``: call one slow cached function once; the body appends a line to
  MARKER each time it really runs, so the parent can count executions.
- ``churn URL SEED SECONDS``: threads doing random saves, loads, evictions and gc for SECONDS;
  prints a JSON tally.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import warnings
from typing import Any

from fleche import cache, fleche
from fleche.errors import FlecheWarning

from .common import POOL, expected, same


@fleche
def produce(i: int):
    return expected(i)


def write(url: str, seed: int) -> None:
    rng = random.Random(seed)
    with cache(url):
        print("ready", flush=True)
        while True:
            produce(rng.randrange(POOL))


def write_ready(url: str, seed: int, ready: Any) -> None:
    """``write``, for a process forked from the preloaded fork server (``common.start_writer``):
    sets the ``ready`` event instead of printing."""
    rng = random.Random(seed)
    with cache(url):
        ready.set()
        while True:
            produce(rng.randrange(POOL))


def stampede(url: str, marker: str, sleep: float) -> None:
    @fleche
    def slow(x: int) -> int:
        with open(marker, "a") as f:
            f.write(f"{x}\n")
        time.sleep(sleep)
        return x * 2

    with cache(url):
        print("ready", flush=True)
        result = slow(21)
    print(json.dumps({"result": result}), flush=True)


def churn(url: str, seed: int, seconds: float, threads: int = 3) -> None:
    tally = {
        "saves": 0,
        "loads": 0,
        "evictions": 0,
        "gcs": 0,
        "wrong": 0,
        "errors": [],
        "corrupt": 0,
    }
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    with cache(url) as store:
        print("ready", flush=True)

        def work(worker: int) -> None:
            rng = random.Random(seed * 100 + worker)
            while time.monotonic() < stop:
                i = rng.randrange(POOL)
                op = rng.random()
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", FlecheWarning)
                        if op < 0.5:
                            value = produce(i)
                            name = "loads"
                            wrong = not same(value, expected(i))
                        elif op < 0.85:
                            produce.rerun(i)
                            name, wrong = "saves", False
                        elif op < 0.98:
                            try:
                                produce.evict(i)
                            except KeyError:
                                pass
                            name, wrong = "evictions", False
                        else:
                            store.gc()
                            name, wrong = "gcs", False
                    with lock:
                        tally[name] += 1
                        tally["wrong"] += int(wrong)
                        tally["corrupt"] += len(caught)
                except Exception as e:  # reported to the parent, which fails the test
                    with lock:
                        tally["errors"].append(f"{type(e).__name__}: {e}")

        workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    print(json.dumps(tally), flush=True)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "write":
        write(rest[0], int(rest[1]))
    elif mode == "stampede":
        stampede(rest[0], rest[1], float(rest[2]))
    elif mode == "churn":
        churn(rest[0], int(rest[1]), float(rest[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
