"""Workloads across fresh processes: W6 (two processes, same slow keys) and W7 (start-up).

The parent side runs inside a worker and starts children with :func:`benchmarks.worker.run_child`
(same subject, same store); the child side is what those children execute.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import bodies
from .modes import Mode
from .subjects import Subject

IMPORTS = {
    "fleche": "import fleche",
    "lru_cache": "import functools",
    "cachetools": "import cachetools",
    "joblib": "import joblib",
    "diskcache": "import diskcache",
    "cachier": "import cachier",
}


# --- W6 -------------------------------------------------------------------------------------------
def w6_parent(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Two processes ask for the same ``mode.slow_keys`` slow calls at once: count body runs."""
    from .worker import parse_result, start_child

    counter = subject.workdir / "w6-runs.log"
    go = subject.workdir / "w6-go"
    env = {"BENCH_COUNTER": str(counter), "BENCH_SLOW_SECONDS": str(mode.slow_seconds)}
    params = {"go": str(go), "keys": mode.slow_keys}
    children = [start_child("W6-child", subject, mode, params, env) for _ in range(2)]
    ready = [subject.workdir / f"w6-ready-{c.pid}" for c in children]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            break
        time.sleep(0.01)
    started = time.monotonic()
    go.touch()
    limit = max(10.0, 4 * mode.slow_keys * mode.slow_seconds + 5)  # ideal: 1x to 2x serial
    hang = False
    errors = []
    for child in children:
        try:
            out, err = child.communicate(timeout=max(1.0, started + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            hang = True
            child.kill()
            out, err = child.communicate()
        if not hang:
            done = parse_result(out, err, child.returncode)
            if "error" in done or "unavailable" in done:
                errors.append(done.get("error") or done["unavailable"])
    wall = time.monotonic() - started
    runs = counter.read_text().splitlines() if counter.exists() else []
    result: dict[str, Any] = {
        "keys": mode.slow_keys,
        "body_runs": len(runs),
        "hang": hang,
        "wall_s": wall,
        "serial_s": mode.slow_keys * mode.slow_seconds,
    }
    if errors:
        result["child_errors"] = errors
    return result


def w6_child(subject: Subject, go: str, keys: int) -> dict[str, Any]:
    """Wait for the go signal, then call the slow function on every key in order."""
    f = subject.decorate(bodies.slow)
    Path(subject.workdir / f"w6-ready-{os.getpid()}").touch()
    go_path = Path(go)
    deadline = time.monotonic() + 60
    while not go_path.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    for k in range(keys):
        assert f(k) == k * k
    return {"done": keys}


# --- W7 -------------------------------------------------------------------------------------------
def _wall(code: str) -> float:
    from .worker import _environment

    env = _environment()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def import_times(mode: Mode) -> dict[str, Any]:
    """Import time of each library in a fresh process: wall time minus ``python -c pass``."""
    names = list(IMPORTS)
    samples: dict[str, list[float]] = {name: [] for name in ["pass", *names]}
    _wall("pass")  # warm the interpreter's files into the page cache
    for code in IMPORTS.values():
        try:
            _wall(code)
        except subprocess.CalledProcessError:
            pass
    failed: dict[str, str] = {}
    for _ in range(mode.startup_runs):  # interleaved, so drifting load hits all alike
        samples["pass"].append(_wall("pass"))
        for name in names:
            if name in failed:
                continue
            try:
                samples[name].append(_wall(IMPORTS[name]))
            except subprocess.CalledProcessError as e:
                lines = (e.stderr or b"").decode().strip().splitlines()
                failed[name] = lines[-1] if lines else "import failed"
    base = statistics.median(samples["pass"])
    result: dict[str, Any] = {"python_pass_s": base}
    for name in names:
        if name in failed:
            result[name] = {"unavailable": failed[name]}
        else:
            wall = statistics.median(samples[name])
            result[name] = {"import_s": max(0.0, wall - base), "wall_s": wall}
    result["fleche"].update(_importtime("fleche"))
    return result


def _importtime(module: str) -> dict[str, Any]:
    """What ``python -X importtime`` says: modules loaded and the cumulative microseconds."""
    from .worker import _environment

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=False,
        env=_environment(),
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    total = 0
    for line in lines:
        fields = [f.strip() for f in line.split(":", 1)[1].split("|")]
        if len(fields) == 3 and fields[2] == module:
            total = int(fields[1])
    heavy = [
        line.split("|")[-1].strip()
        for line in lines
        if any(line.split("|")[-1].strip().startswith(m) for m in _HEAVY)
    ]
    return {
        "importtime_modules": max(0, len(lines) - 1),
        "importtime_cumulative_us": total,
        "heavy_modules": sorted({m.split(".")[0] for m in heavy}),
    }


_HEAVY = ("sqlalchemy", "numpy", "pandas", "cloudpickle", "psycopg", "redis", "pymysql")


def w7_parent(subject: Subject, mode: Mode) -> dict[str, Any]:
    """First decorated call in a fresh process: a miss on an empty store, then a hit from it."""
    from .worker import run_child

    misses, hits = [], []
    for r in range(mode.first_call_runs):
        miss = run_child("W7-child", subject, mode, {"a": r})
        misses.append(miss["first_call_s"])
        if subject.persistent:
            hit = run_child("W7-child", subject, mode, {"a": r})
            hits.append(hit["first_call_s"])
    result: dict[str, Any] = {"first_miss_s": statistics.median(misses)}
    if hits:
        result["first_hit_s"] = statistics.median(hits)
    return result


def w7_child(subject: Subject, a: int, started: float) -> dict[str, Any]:
    """Time from before the library's import (and opening its store) to the first result."""
    f = subject.decorate(bodies.small)
    f(a, "first")
    return {"first_call_s": time.perf_counter() - started}
