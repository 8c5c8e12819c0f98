"""Sizes and repeat counts of each run mode: smoke (seconds, for the tests), quick, full."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Mode:
    """How big and how often. Every figure is the median of ``repeats`` runs after a warm-up."""

    name: str
    repeats: int  # timed runs per figure
    keys: int  # W1: distinct keys cycled per run
    compared_processes: int  # W1, W2: processes a compared subject runs in (the median counts)
    misses: int  # W2: new calls per run
    array_mb: int  # W3, W4: size of the array (MiB)
    big_repeats: int  # W3, W4: timed runs (each moves array_mb)
    reported_big_repeats: int  # W4: timed runs of the subjects no target judges (reported only)
    scale: tuple[int, ...]  # W5, W8: stored calls at which hits are timed
    subject_scale: dict[str, tuple[int, ...]]  # W5, W8: the subjects filled to other sizes
    probes: int  # W5: stored keys hit per run
    slow_keys: int  # W6: keys both processes ask for
    slow_seconds: float  # W6: time one body takes
    startup_runs: int  # W7: fresh processes per import time
    first_call_runs: int  # W7: fresh processes per first-call figure
    scale_peers: tuple[str, ...]  # W5: the peers filled to the largest size in this mode
    digest_mb: int  # memory: size of the array digested
    fill_budget: float  # W5, W8: seconds one subject may spend filling before larger sizes are left
    query_budget: float  # W8: seconds of runs per figure (at least three runs)
    timeout: float  # seconds one worker may take before it is killed and reported

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MODES = {
    "smoke": Mode(
        name="smoke",
        repeats=2,
        keys=20,
        compared_processes=1,
        misses=20,
        array_mb=1,
        big_repeats=3,
        reported_big_repeats=2,
        scale=(50, 200),
        subject_scale={},
        probes=20,
        slow_keys=3,
        slow_seconds=0.02,
        startup_runs=2,
        first_call_runs=1,
        scale_peers=("lru_cache", "cachetools", "joblib", "diskcache", "cachier"),
        digest_mb=4,
        fill_budget=20,
        query_budget=0.1,
        timeout=60,
    ),
    "quick": Mode(
        name="quick",
        repeats=5,
        keys=1000,
        compared_processes=3,
        misses=150,
        array_mb=100,
        # five, not three: a W4 round moves 400 MiB through the disk, and on a VM one round in
        # three could be slowed by the host (one slow store then decided a median of three)
        big_repeats=5,
        # the subjects W4's target does not judge (reported only): with five rounds they took
        # 78 s of a 336 s run on a slow machine (a round through PostgreSQL: about 3 s)
        reported_big_repeats=3,
        scale=(1000, 10_000),
        # the default backend to the size its targets name (about 30 s); --full takes every
        # backend there (30 s of fill each, 80 s on files: too much for this mode's 5 minutes)
        subject_scale={"fleche-embedded": (1000, 10_000, 100_000)},
        probes=1000,
        slow_keys=40,
        slow_seconds=0.03,
        startup_runs=3,
        first_call_runs=1,
        # joblib and cachier take 15 s and 45 s to store 10,000 calls here: --full only
        scale_peers=("lru_cache", "cachetools", "diskcache"),
        digest_mb=1024,
        fill_budget=60,
        query_budget=0.3,
        timeout=180,
    ),
    "full": Mode(
        name="full",
        repeats=11,
        keys=1000,
        compared_processes=5,
        misses=1000,
        array_mb=100,
        big_repeats=9,
        reported_big_repeats=9,
        # the W5 sizes (1,000,000 in full); the targets are judged at 100,000
        scale=(1000, 10_000, 100_000, 1_000_000),
        subject_scale={},
        probes=1000,
        slow_keys=40,
        slow_seconds=0.05,
        startup_runs=11,
        first_call_runs=5,
        scale_peers=("lru_cache", "cachetools", "joblib", "diskcache", "cachier"),
        digest_mb=1024,
        fill_budget=1800,
        query_budget=1.0,
        timeout=3600,
    ),
}
