"""A process pool computing into one persistent cache, with ``.bind()``.

Run it with ``python examples/process_pool.py``. Workers are started with ``spawn`` (the default on
macOS and Windows): they import this script afresh and know nothing of the cache the parent
activated. ``simulate.bind()`` returns a picklable callable that carries the active cache (by its
URL) and metadata into each worker. Results computed in the workers are in ``./.fleche`` for the
parent, and for the next run.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from fleche import cache, fleche, tags


@fleche
def simulate(n: int, seed: int = 0) -> dict:
    """A slow simulation; records which process computed it."""
    time.sleep(0.3)
    return {"n": n, "seed": seed, "value": (n * 7919 + seed) % 101, "pid": os.getpid()}


def run_pool(label: str, task: object, jobs: list[int]) -> list[dict]:
    spawn = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        results = list(pool.map(task, jobs))
    elapsed = time.perf_counter() - start
    workers = sorted({r["pid"] for r in results} - {os.getpid()})
    print(f"{label:<44} {len(results)} results in {elapsed:5.2f} s (computed by pids {workers})")
    return results


def main() -> None:
    cache("./.fleche")
    jobs = list(range(8))
    with tags(batch="first"):
        task = simulate.bind(seed=1)  # binds the cache, the tags and seed=1
    run_pool("first pool (8 calls of 0.3 s, 2 workers):", task, jobs)
    run_pool("second pool (same calls, served from cache):", task, jobs)

    found = simulate.query(seed=1).count()
    print(f"calls the parent finds in the cache: {found}")
    if found != len(jobs):  # the workers' keys must be the parent's (same script, same module)
        raise SystemExit(f"expected {len(jobs)} calls computed by the workers, found {found}")
    tagged = simulate.query(metadata={"tags": {"batch": "first"}}).count()
    print(f"calls tagged batch=first in the workers: {tagged}")
    start = time.perf_counter()
    result = simulate(3, seed=1)
    elapsed = (time.perf_counter() - start) * 1e3
    print(
        f"simulate(3, seed=1) in the parent (pid {os.getpid()}): a hit in {elapsed:.1f} ms, "
        f"computed by worker {result['pid']}"
    )


if __name__ == "__main__":
    main()
