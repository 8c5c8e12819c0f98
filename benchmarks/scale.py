"""W5 (hit latency and footprint as the store grows) and W8 (query, expand, shrink at scale).

One worker fills its subject in steps (``mode.scale``), timing hits on keys spread over the whole
store at each step, so the figures at every size come from the same process. Each step is filled
in bulk the fastest way the library allows (``subjects.Subject.fill``: fleche's persistent
backends through a memory cache and ``transfer``), and its fill time is reported with the step.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import bodies
from .modes import Mode
from .subjects import FlecheSubject, Subject
from .timing import budgeted, current_rss, peak_rss, per_call, per_call_in_turn


def fill(subject: Subject, f: Any, start: int, stop: int) -> dict[str, float]:
    """Store calls ``start..stop-1`` the fastest way the library allows (``Subject.fill``, whose
    module says how each store is filled); the seconds it took."""
    return subject.fill(f, ((i, bodies.group(i)) for i in range(start, stop)))


def _hit_run(f: Any, stored: int, mode: Mode) -> Any:
    """A run of hits on ``mode.probes`` stored keys drawn from the whole store."""
    probe = random.Random(stored).sample(range(stored), min(mode.probes, stored))
    keys = [(i, bodies.group(i)) for i in probe]

    def run() -> int:
        for a, b in keys:
            f(a, b)
        return len(keys)

    return run


def hits(f: Any, stored: int, mode: Mode) -> dict[str, Any]:
    """Microseconds per hit over ``mode.probes`` stored keys drawn from the whole store."""
    return per_call(_hit_run(f, stored, mode), mode.repeats)


# the backends whose query by one argument is an index look-up, judged by W8's growth target
# (``targets.SQL_LIKE``); file:// and memory read every record, so theirs is not timed in turn
INDEXED_QUERIES = {"fleche-embedded", "fleche-sqlite", "fleche-postgresql", "fleche-redis"}


def _query_run(f: Any, stored: int, seed: int) -> Any:
    """A run of 20 queries by one argument, each matching one stored call."""
    pick = random.Random(seed).sample(range(stored), min(20, stored))

    def run() -> int:
        for i in pick:
            found = list(f.query(a=i))
            assert len(found) == 1, f"query(a={i}) found {len(found)} calls"
        return len(pick)

    return run


class Reference:
    """A second store of the subject's backend holding the first size's calls, whose hits (W5)
    and queries by one argument (W8) are timed in turn with the growing store's at every later
    step: the growth targets compare the two, measured in the same seconds. Timed at different
    minutes instead, the same hit moved by up to 1.9x, and the same query by 2.3x, on the
    virtual machine of the 2026-12-03 runs (see docs/performance.md)."""

    def __init__(self, subject: FlecheSubject, f: Any, stored: int) -> None:
        # outside the subject's directory, whose footprint is measured
        self.root = Path(tempfile.mkdtemp(prefix="fleche-bench-w5-reference-"))
        self.subject = subject.twin(self.root)
        self.subject.fill(f, ((i, bodies.group(i)) for i in range(stored)))
        self.f, self.stored = self.subject.decorate_here(bodies.small), stored

    def hits(self, f: Any, stored: int, mode: Mode) -> dict[str, Any]:
        """The growing store's hits (``hit_us``) and this store's (``reference_hit_us``)."""
        runs = {"hit_us": _hit_run(f, stored, mode),
                "reference_hit_us": _hit_run(self.f, self.stored, mode)}  # fmt: skip
        return per_call_in_turn(runs, mode.repeats)

    def queries(self, f: Any, stored: int, mode: Mode) -> dict[str, Any]:
        """The growing store's query by one argument (``query_one_s``) and this store's
        (``reference_query_one_s``), seconds per query."""
        runs = {"query_one_s": _query_run(f, stored, -stored),
                "reference_query_one_s": _query_run(self.f, self.stored, -stored)}  # fmt: skip
        timed = per_call_in_turn(runs, mode.repeats)
        return {name: _scaled(stats, 1e-6) for name, stats in timed.items()}

    def close(self) -> None:
        try:
            self.subject.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def queries(subject: FlecheSubject, f: Any, stored: int, mode: Mode,
            reference: Reference | None = None) -> dict[str, Any]:  # fmt: skip
    """W8: query by one argument (1 match and 1% matches), expand and shrink a key; each figure
    is the median of the runs that fit in ``mode.query_budget`` seconds (at least three). With a
    ``reference`` store, the query by one argument is timed in turn with the reference's."""
    pick = random.Random(-stored).sample(range(stored), 20)
    keys = [f.digest(i, bodies.group(i)) for i in pick]
    cache = subject.cache
    budget = mode.query_budget

    def group() -> None:
        n = f.query(b=bodies.group(pick[0])).count()
        assert n == len(range(pick[0] % 100, stored, 100)), n

    def expand() -> None:
        for key in keys:
            assert cache.expand(key[:12]) == key

    def shrink() -> None:
        for key in keys:
            cache.shrink(key)

    rotation = iter(range(10**9))

    def one() -> None:
        i = pick[next(rotation) % len(pick)]
        found = list(f.query(a=i))
        assert len(found) == 1, f"query(a={i}) found {len(found)} calls"

    if reference is not None and subject.name in INDEXED_QUERIES:
        found = reference.queries(f, stored, mode)
    else:  # one query a run: a scan of 100,000 records takes seconds
        found = {"query_one_s": budgeted(one, budget)}
    return {
        **found,
        "query_group_s": budgeted(group, budget, at_most=50),
        "group_size": len(range(pick[0] % 100, stored, 100)),
        "expand_us": _scaled(budgeted(expand, budget), 1e6 / len(keys)),
        "shrink_us": _scaled(budgeted(shrink, budget), 1e6 / len(keys)),
    }


def _scaled(stats: dict[str, Any], factor: float) -> dict[str, Any]:
    """A timing summary with every figure (and sample) multiplied by ``factor``."""
    return {
        k: (v * factor if k != "samples" else [s * factor for s in v]) for k, v in stats.items()
    }


def w5_scale(subject: Subject, mode: Mode, workloads: set[str]) -> dict[str, Any]:
    """Fill to each size of ``mode.scale`` and measure what ``workloads`` (W5, W8) ask for."""
    f = subject.decorate(bodies.small)
    rss_before = current_rss()
    steps: list[dict[str, Any]] = []
    not_reached: list[dict[str, Any]] = []
    stored, spent = 0, 0.0
    reference: Reference | None = None
    # later steps are timed against a reference store (persistent backends, W5 and W8)
    wants_reference = (
        bool({"W5", "W8"} & workloads) and isinstance(subject, FlecheSubject) and subject.persistent
    )
    try:
        for size in mode.subject_scale.get(subject.name, mode.scale):
            if stored and spent / stored * (size - stored) + spent > mode.fill_budget:
                more = spent / stored * (size - stored)
                not_reached.append({
                    "stored": size,
                    "why": f"filling to {size:,} would take about {more:.0f} s more, past this "
                    f"mode's {mode.fill_budget:.0f} s budget"
                    + ("" if mode.name == "full" else " (--full has a larger one)"),
                })  # fmt: skip
                break
            step: dict[str, Any] = {"stored": size, **fill(subject, f, stored, size)}
            spent += step["fill_s"]
            stored = size
            if "W5" in workloads:
                step.update(reference.hits(f, stored, mode) if reference else
                            {"hit_us": hits(f, stored, mode)})  # fmt: skip
                step["footprint"] = subject.footprint()
                step["rss_added"] = current_rss() - rss_before
            if "W8" in workloads and isinstance(subject, FlecheSubject):
                step.update(queries(subject, f, stored, mode, reference))
            if reference is None and wants_reference:
                before = current_rss()
                reference = Reference(subject, f, stored)
                rss_before += current_rss() - before  # the subject's own memory, not its
            steps.append(step)
    finally:
        if reference is not None:
            reference.close()
    result: dict[str, Any] = {"steps": steps}
    if not_reached:
        result["not_reached"] = not_reached
    if "memory" in workloads and isinstance(subject, FlecheSubject) and subject.persistent:
        result["open"] = _open_in_fresh_process(subject, mode, stored)
    return result


def _open_in_fresh_process(subject: FlecheSubject, mode: Mode, stored: int) -> dict[str, Any]:
    """Peak RSS of a fresh process that opens this store and serves hits from it."""
    from .worker import run_child

    return run_child("mem-open", subject, mode, {"stored": stored})


def mem_open(subject: Subject, mode: Mode, stored: int) -> dict[str, Any]:
    """In a fresh process: open the store, hit ``mode.probes`` keys, report peak RSS."""
    f = subject.decorate(bodies.small)
    hit = hits(f, stored, mode)
    return {"stored": stored, "peak_rss": peak_rss(), "hit_us": hit}
