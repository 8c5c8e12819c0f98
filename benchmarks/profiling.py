"""Where the time goes: the hit path, the store path and a large-buffer digest under cProfile.

cProfile inflates the cost of small functions (each call pays the profiler's hook), so shares of
time are what to read here, not absolute times; the workloads give those.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path
from typing import Any

from . import bodies
from .modes import Mode
from .subjects import Subject
from .timing import MIB

TOP = 8


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a builtin: "<method 'digest' of 'xxhash.xxh3_128' objects>"
    path = Path(filename)
    parts = path.parts
    for anchor in ("fleche", "sqlalchemy", "redis", "psycopg", "numpy", "cloudpickle"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return f"{'/'.join(parts[i:])}:{line}({name})"
    return f"{path.name}:{line}({name})"


def _top(profile: cProfile.Profile, calls: int) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for func, (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": _label(func),
                "calls_per_op": ncalls / calls,
                "self_pct": 100 * tottime / total,
                "cumulative_pct": 100 * cumtime / total,
            }
        )
    rows.sort(key=lambda r: r["self_pct"], reverse=True)
    return {"operations": calls, "profiled_s": total, "top": rows[:TOP]}


def _profiled(run: Any, calls: int) -> dict[str, Any]:
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    return _top(profile, calls)


def profile_subject(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Profiles of hits, misses (compute + store) and, on memory, a large-buffer digest."""
    f = subject.decorate(bodies.small)
    n = max(200, mode.keys)
    keys = [(i, "p") for i in range(n)]
    for a, b in keys:
        f(a, b)

    def hit() -> None:
        for _ in range(5):
            for a, b in keys:
                f(a, b)

    def miss() -> None:
        for i in range(n, 2 * n):
            f(i, "p")

    found = {"hit": _profiled(hit, 5 * n), "miss": _profiled(miss, n)}
    if subject.name == "fleche-memory":
        import numpy as np

        from fleche import digest

        arr = np.random.default_rng(0).random(mode.array_mb * MIB // 8)
        digest(arr)
        found["digest_array"] = _profiled(lambda: [digest(arr) for _ in range(5)], 5)
    return found
