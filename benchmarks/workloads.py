"""W1-W4: hit and miss latency, large arguments and large results (run inside one worker)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from . import bodies, sqlfloor
from .modes import Mode
from .subjects import Diskcache, Subject
from .timing import MIB, per_call, summary


def w1_hit(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Hit latency of ``f(a: int, b: str)`` over ``mode.keys`` stored keys, cycled."""
    f = subject.decorate(bodies.small)
    keys = [(i, "x") for i in range(mode.keys)]
    for a, b in keys:
        f(a, b)

    def run() -> int:
        for a, b in keys:
            f(a, b)
        return len(keys)

    return {"hit_us": per_call(run, mode.repeats)}


def w2_miss(subject: Subject, mode: Mode, context: bool = True) -> dict[str, Any]:
    """Miss + store latency: each run calls ``f`` with keys never seen before.

    A run is at least ``mode.misses`` calls and, for a fast store, as many as fit in about
    ``RUN_SECONDS``: SQLite stores (fleche's embedded and sqlite caches, diskcache) pay for their
    WAL checkpoints every hundred commits or so, and a run long enough to hold several of them
    charges that cost to every library alike instead of to whichever run a checkpoint fell in.
    With ``context`` (the first process of a subject), the figures printed beside the table are
    measured too: the embedded default's SQL alone, and diskcache's miss with a per-key lock.
    """
    result, size = _timed_misses(subject.decorate(bodies.small), mode)
    found: dict[str, Any] = {"miss_us": result, "calls_per_run": size}
    if context and subject.name == "fleche-embedded":  # the floor of its layout (see ``sqlfloor``)
        found["sql_floor"] = sqlfloor.embedded_miss_sql(size, mode.repeats, subject.workdir)
    if context and isinstance(subject, Diskcache):  # with the lock fleche's miss takes (context)
        found["locked"] = {"miss_us": _timed_misses(subject.decorate_locked(bodies.small), mode)[0]}
    return found


def _timed_misses(f: Any, mode: Mode) -> tuple[dict[str, Any], int]:
    """Microseconds per miss of ``f`` (see :func:`w2_miss`) and the calls in a timed run."""
    counter = iter(range(10**9))
    size = mode.misses

    def run() -> int:
        start = next(counter) * MAX_RUN
        for i in range(start, start + size):
            f(i, "miss")
        return size

    began = time.perf_counter()
    run()  # the warm-up also tells how many calls fit in a run
    elapsed = time.perf_counter() - began
    size = min(MAX_RUN, max(mode.misses, int(mode.misses * RUN_SECONDS / max(elapsed, 1e-9))))
    return per_call(run, mode.repeats, warmup=0), size


RUN_SECONDS = 0.4  # W2: the shortest timed run of a fast store
MAX_RUN = 5000  # W2: the longest


def _array(mb: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).random(mb * MIB // 8)


def _xxh3(buffer: Any) -> None:
    import xxhash

    xxhash.xxh3_128(buffer).digest()


def interleaved(runs: dict[str, Any], repeats: int, budget: float,
                settle: Any = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Seconds per run of each callable, taken in turn (so a change of load hits all alike).

    One untimed warm-up round, then rounds until ``repeats`` are done or ``budget`` seconds are
    spent, with at least three rounds. ``settle``, when given, runs untimed before each run.
    """
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    deadline = time.perf_counter() + budget
    for done in range(repeats):
        if done >= 3 and time.perf_counter() > deadline:
            break
        for name, run in runs.items():
            if settle is not None:
                settle()
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: summary(values) for name, values in samples.items()}


def w3_array_argument(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Hit with a large array argument, against raw xxh3-128 over the same buffer."""
    arr = _array(mode.array_mb)
    f = subject.decorate(bodies.array_argument)
    start = time.perf_counter()
    f(arr)  # the miss stores the argument too (fleche keeps argument values)
    first = time.perf_counter() - start
    timed = interleaved(
        {"hit": lambda: f(arr), "xxh3": lambda: _xxh3(arr.data)}, mode.big_repeats, 8
    )
    hit, raw = timed["hit"], timed["xxh3"]
    return {
        "bytes": arr.nbytes,
        "first_call_s": first,
        "hit_s": hit,
        "xxh3_s": raw,
        "hit_gbps": arr.nbytes / hit["median"] / 1e9,
        "xxh3_gbps": arr.nbytes / raw["median"] / 1e9,
        "fraction_of_xxh3": raw["median"] / hit["median"],
    }


def _settle(nbytes: int) -> Any:
    """What runs, untimed, before each W4 run, fleche's or numpy's: ``os.sync``, so that no run
    pays for writing back the previous runs' files, then three times ``nbytes`` of memory
    touched and let go at once. On the VM these figures come from (a Firecracker kernel with a
    balloon device; its host, we read, takes back memory the guest frees), writing 100 MiB into
    fresh memory, a new file's page cache or a loaded array, took up to 296 ms instead of 22-28:
    whichever run drew it lost, at random (np.save, 12 runs in a row: 220-294 ms; after the
    touch: 21-36 ms). Memory just let go is the kernel's to hand out again, still backed."""
    import numpy as np

    def settle() -> None:
        os.sync()
        np.ones(3 * nbytes // 8)  # written, then freed as soon as made

    return settle


W4_JUDGED = ("fleche-file", "fleche-embedded")  # the subjects W4's target names


def w4_array_result(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Store (miss) and load (hit) of a large array result, against np.save / np.load on the
    same disk, in the same process, taken in turn. Each store writes a new value and the cache
    keeps them all, so each np.save writes a new file too (kept till the end). The subjects the
    target does not judge run ``mode.reported_big_repeats`` rounds, the others ``big_repeats``."""
    import numpy as np

    bodies.ARRAY = _array(mode.array_mb)
    f = subject.decorate(bodies.big_result)
    calls = iter(range(10**9))
    current = [0]

    def store() -> None:
        current[0] = next(calls)
        f(current[0])  # a miss: element 0 makes it a new value

    def load() -> None:
        loaded = f(current[0])
        assert float(loaded[0]) == float(current[0]), "the hit returned another call's result"

    saved = iter(range(10**9))
    last = [Path()]

    def np_save(tmp: str) -> None:  # a new file each time, as each store writes a new value
        last[0] = Path(tmp) / f"a{next(saved)}.npy"
        np.save(last[0], bodies.ARRAY)

    repeats = mode.big_repeats if subject.name in W4_JUDGED else mode.reported_big_repeats
    with tempfile.TemporaryDirectory(dir=subject.workdir) as tmp:
        timed = interleaved(
            {
                "store": store,
                "load": load,
                "np_save": lambda: np_save(tmp),
                "np_load": lambda: np.load(last[0]),
            },
            repeats,
            15,
            settle=_settle(bodies.ARRAY.nbytes),
        )
    return {
        "bytes": bodies.ARRAY.nbytes,
        "runs": repeats,
        "store_s": timed["store"],
        "load_s": timed["load"],
        "np_save_s": timed["np_save"],
        "np_load_s": timed["np_load"],
        "store_vs_np_save": timed["store"]["median"] / timed["np_save"]["median"],
        "load_vs_np_load": timed["load"]["median"] / timed["np_load"]["median"],
    }
