"""Timing and memory probes shared by the workers: medians after a warm-up, RSS from the kernel."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

MIB = 1 << 20


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, min, max and the raw samples (the median is the figure quoted)."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def per_call(run: Callable[[], int], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Microseconds per call: ``run()`` makes some calls and returns how many; median of runs."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        calls = run()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return summary(samples)


def per_call_in_turn(runs: dict[str, Callable[[], int]], repeats: int, warmup: int = 1
                     ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """As :func:`per_call` for each of ``runs``, taken in turn round after round, so that a
    change in the machine's speed falls on all of them alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            calls = run()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: summary(values) for name, values in samples.items()}


def seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Seconds per ``run()``: median of ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return summary(samples)


def budgeted(run: Callable[[], Any], budget: float, at_least: int = 3, at_most: int = 200) -> dict:
    """Seconds per ``run()``, repeated until ``budget`` seconds are spent (bounded both ways)."""
    run()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < at_most and (len(samples) < at_least or time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return summary(samples)


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes.

    On Linux, the high-water mark of this process's own memory (``VmHWM``). ``ru_maxrss`` is
    not: the kernel folds the memory a process had before its ``exec`` into it, which for a
    child started by ``subprocess`` is its parent's, so a fresh process started by a worker
    holding 100,000 calls in memory reported that worker's 228 MiB as its own peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def current_rss() -> int:
    """Resident set size now, in bytes (Linux; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return peak_rss()
    return pages * resource.getpagesize()
