"""Shared pieces of the fault-injection suite: counts, deterministic values, child processes.

``FLECHE_STRESS=full`` (``nox -s stress``) runs every test at its full count; the default (CI) runs
a small count. Each test states its count and its pass rule, and records its tallies in
``tests/reliability/results/<test>.json`` so docs/reliability.md can quote the last full run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("FLECHE_STRESS", "") == "full"
RESULTS = Path(__file__).with_name("results")

POOL = 40  # entries are drawn from a bounded pool so the store stays small
BIG_EVERY = 10  # every tenth entry is a 20 MB array
BIG_BYTES = 20 * 1024 * 1024


def count(ci: int, full: int) -> int:
    """The number of repetitions: small in CI, large under ``nox -s stress``."""
    return full if FULL else ci


def expected(i: int) -> Any:
    """The value entry ``i`` must always hold: small dicts, and 20 MB arrays every tenth entry."""
    if i % BIG_EVERY == 0:
        array = np.arange(BIG_BYTES // 8, dtype=np.float64)
        array += i
        return array
    return {"i": i, "payload": bytes([i % 256]) * (100 + i), "text": f"entry {i}"}


def same(a: Any, b: Any) -> bool:
    """Equality that understands arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool((a == b).all())
        )
    return bool(a == b)


def spawn(*args: str) -> subprocess.Popen[str]:
    """A child process running ``tests.reliability.child`` with ``args``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


_forkserver: list[Any] = []


def start_writer(url: str, seed: int, timeout: float = 60) -> Any:
    """A writer process (``child.write_ready``) that has opened its cache, forked from a fork
    server that preloaded fleche, numpy and the drivers: a kill -9 cycle does not pay for a new
    interpreter and its imports. The child opens its own connections after the fork."""
    if not _forkserver:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tests.reliability.child", *_DRIVERS])
        _forkserver.append(context)
    context = _forkserver[0]
    ready = context.Event()
    from . import child

    process = context.Process(target=child.write_ready, args=(url, seed, ready), daemon=True)
    process.start()
    if not ready.wait(timeout):
        process.kill()
        raise AssertionError(f"writer never became ready (exit code {process.exitcode})")
    return process


_DRIVERS = ["sqlalchemy", "psycopg", "pymysql", "redis", "sqlite3", "cloudpickle"]


def wait_ready(child: subprocess.Popen[str], timeout: float = 60) -> None:
    """Block until the child printed ``ready`` (it opened its cache).

    Reads the pipe's bytes one at a time, never through ``child.stdout``'s buffer: a buffered
    ``readline`` may read ahead the child's next line, which ``communicate`` would then not see.
    """
    deadline = time.monotonic() + timeout
    assert child.stdout is not None
    fd, line = child.stdout.fileno(), b""
    while time.monotonic() < deadline:
        byte = os.read(fd, 1)
        if byte == b"\n":
            if line.strip() == b"ready":
                return
            line = b""
        elif byte:
            line += byte
        else:  # end of file: the child exited
            child.wait(10)
            raise AssertionError(
                f"child exited early: {child.stderr.read() if child.stderr else ''}"
            )
    raise AssertionError("child never became ready")


def record(test: str, backend: str, tallies: dict[str, Any]) -> None:
    """Append this run's tallies (used for the scorecard in docs/reliability.md)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{test}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[backend] = {**tallies, "mode": "full" if FULL else "ci", "when": time.time()}
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
