"""The orchestrator: which worker runs which workload on which subject, one process each, in turn.

Workers run one after another (never two at once: on two cores they would time each other), each in
a fresh temporary directory removed afterwards, each bounded by the mode's timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .modes import Mode
from .subjects import ALL, FLECHE_BACKENDS, PERSISTENT
from .worker import NO_SUBJECT, _environment, parse_result

WORKLOADS = ("floors", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "memory", "profile")
FLECHE = tuple("fleche-" + b for b in FLECHE_BACKENDS)
LARGE = (*FLECHE, "joblib", "diskcache", "cachier")  # hashable-only caches cannot take arrays
APPLIES: dict[str, tuple[str, ...]] = {
    "W1": ALL,
    "W2": ALL,
    "W3": LARGE,
    "W4": LARGE,
    "W5": ALL,
    "W6": tuple(s for s in LARGE if s in PERSISTENT),
    "W7": ALL,
    "W8": FLECHE,
    "memory": LARGE,
    "profile": ("fleche-memory", "fleche-embedded"),
}
# W1's targets compare these; a hit takes 19-30 µs for fleche and 42-78 µs for diskcache from one
# process to the next on the same code (memory layout, which core), so each runs in
# ``mode.compared_processes`` processes, in rounds, and the median process counts (as pyperf does)
HIT_COMPARED = ("fleche-memory", "fleche-embedded", "diskcache")
# W2's target compares these two; their misses drift with the machine as much as hits do (the
# embedded default's 1.1x-1.4x of diskcache's in three W2 runs minutes apart), so they run in
# rounds too; the SQL floor is measured in the first process only
MISS_COMPARED = ("fleche-embedded", "diskcache")
ROUNDS = {"W1": (HIT_COMPARED, "hit_us"), "W2": (MISS_COMPARED, "miss_us")}
NOT_APPLICABLE = {
    "W3": "arguments must be hashable; an ndarray is not",
    "W4": "in-process only; nothing to compare with np.save/np.load",
    "W6": "in one process only: two processes never share it",
    "W8": "no query by argument, no short keys",
}


def run_worker(task: str, subject: str, mode: Mode, params: dict[str, Any] | None = None,
               workdir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one worker in its own temporary directory; its result, an error or a timeout."""
    import json

    own = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix=f"fleche-bench-{task}-"))
    command = [sys.executable, "-m", "benchmarks.worker", task, subject, "--mode", mode.name]
    command += ["--workdir", str(work), "--params", json.dumps(params or {})]
    began = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=mode.timeout,
            env=_environment(),
            check=False,
        )
        result = parse_result(done.stdout, done.stderr, done.returncode)
    except subprocess.TimeoutExpired:
        result = {"error": f"timed out after {mode.timeout:.0f} s"}
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    result["worker_s"] = time.perf_counter() - began
    return result


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _brief(result: dict[str, Any]) -> str:
    if "unavailable" in result:
        return "unavailable: " + result["unavailable"]
    if "error" in result:
        return "ERROR: " + result["error"]
    return f"ok ({result['worker_s']:.1f} s)"


def plan(mode: Mode, workloads: Iterable[str], subjects: Iterable[str],
         skipped: list[tuple[str, str, str]]) -> list[tuple[str, str, dict]]:  # fmt: skip
    """(task, subject, params) for every worker the selected workloads need, in run order;
    what this mode leaves out goes to ``skipped`` as (task, subject, why)."""
    chosen = set(workloads)
    wanted = list(subjects)
    tasks: list[tuple[str, str, dict]] = []

    def each(workload: str) -> list[str]:
        return [s for s in wanted if s in APPLIES[workload]]

    if "floors" in chosen:
        tasks.append(("floors", NO_SUBJECT, {}))
    for workload in ("W1", "W2", "W3", "W4"):
        if workload in chosen:
            tasks += [(workload, s, {}) for s in each(workload)]
        if workload in ROUNDS and workload in chosen:
            compared = [s for s in each(workload) if s in ROUNDS[workload][0]]
            for n in range(2, mode.compared_processes + 1):
                tasks += [(workload, s, {"process": n}) for s in compared]
    scale = chosen & {"W5", "W8", "memory"}
    if chosen & {"W5", "W8"}:
        for s in each("W5") if "W5" in chosen else each("W8"):
            if s not in FLECHE and s not in mode.scale_peers:
                skipped.append(("scale", s, f"W5 runs {s} in --full mode only"))
                continue
            tasks.append(("scale", s, {"workloads": sorted(scale)}))
    if "W6" in chosen:
        tasks += [("W6", s, {}) for s in each("W6")]
    if "W7" in chosen:
        tasks.append(("imports", NO_SUBJECT, {}))
        tasks += [("W7", s, {}) for s in each("W7")]
    if "memory" in chosen:
        tasks += [("mem-digest", NO_SUBJECT, {"layout": layout}) for layout in ("C", "F")]
        tasks += [("mem-store", s, {}) for s in each("memory")]
    if "profile" in chosen:
        tasks += [("profile", s, {}) for s in each("profile")]
    return tasks


def run(mode: Mode, workloads: Iterable[str], subjects: Iterable[str]) -> dict[str, Any]:
    """Run every planned worker; results keyed by task, then subject."""
    results: dict[str, Any] = {}
    repeated: dict[tuple[str, str], list[dict[str, Any]]] = {}
    skipped: list[tuple[str, str, str]] = []
    tasks = plan(mode, workloads, subjects, skipped)
    for task, subject, why in skipped:
        results.setdefault(task, {})[subject] = {"skipped": why}
    for n, (task, subject, params) in enumerate(tasks, 1):
        label = task + (f" {params['layout']}" if "layout" in params else "")
        label += f" (process {params['process']})" if "process" in params else ""
        _log(f"[{n}/{len(tasks)}] {label} {'' if subject == NO_SUBJECT else subject} ...")
        result = run_worker(task, subject, mode, params)
        _log(f"    {_brief(result)}")
        key = f"{task}-{params['layout']}" if "layout" in params else task
        if subject == NO_SUBJECT:
            results[key] = result
        elif "process" in params:  # another process of a subject measured above
            repeated.setdefault((key, subject), [results[key][subject]]).append(result)
        else:
            results.setdefault(key, {})[subject] = result
    for (key, subject), runs in repeated.items():
        chosen = median_process(runs, ROUNDS[key][1])
        for extra in ("sql_floor", "locked"):  # measured by the first process only (W2)
            if extra in runs[0]:
                chosen.setdefault(extra, runs[0][extra])
        results[key][subject] = chosen
    return results


def median_process(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The result of the process whose median ``metric`` is the median of all processes' (the
    lower middle one of an even count), with every process's median beside it; processes that
    failed are left out, unless all did."""
    ok = sorted((r for r in runs if metric in r), key=lambda r: r[metric]["median"])
    if not ok:
        return runs[0]
    chosen = dict(ok[(len(ok) - 1) // 2])
    chosen["process_medians"] = [r[metric]["median"] for r in runs if metric in r]
    chosen["worker_s"] = sum(r.get("worker_s", 0.0) for r in runs)
    return chosen
