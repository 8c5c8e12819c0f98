"""A tour of the ``fleche`` command: build a small cache, then inspect and manage it from the shell.

Run it with ``python examples/cli_tour.py``. It stores a few calls in ``./.fleche`` and runs each
subcommand of ``fleche`` on it (as ``python -m fleche``, which is the same program), printing the
command, its output and its exit code. The command-line page of the docs shows this output.
"""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys

from fleche import cache, fleche, tags


@fleche
def simulate(n: int, seed: int = 0) -> list[float]:
    return [(seed + i) / n for i in range(n)]


@fleche(version=2)
def summarize(values: list[float]) -> dict:
    return {"count": len(values), "mean": sum(values) / len(values)}


def build_cache() -> None:
    cache("./.fleche")
    with tags(sweep="demo"):
        for n in (2, 3, 4):
            summarize(simulate(n))
        simulate(4, seed=1)


def fleche_cli(*args: str, shown: str | None = None) -> int:
    """Run ``fleche ARGS`` and print it like a shell session; returns the exit code."""
    print(f"$ fleche {shown or shlex.join(args)}")
    done = subprocess.run(
        [sys.executable, "-m", "fleche", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "FLECHE_CACHE": "./.fleche", "COLUMNS": "100"},
        check=False,
    )
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print(output)
    print(f"[exit {done.returncode}]\n")
    return done.returncode


def main() -> None:
    build_cache()
    first = str(simulate.digest(4, seed=1))
    keys = sorted(cache().list())
    shared = next(a[0] for a, b in itertools.pairwise(keys) if a[0] == b[0])
    fleche_cli("--help")
    fleche_cli("ls")
    fleche_cli("ls", "summarize")
    fleche_cli("query", "simulate", "n=4")
    fleche_cli("show", first[:7])
    fleche_cli("explain", "simulate", "n=4", "seed=1")
    fleche_cli("explain", "simulate", "n=4", "seed=2")
    fleche_cli("expand", first[:7])
    fleche_cli("shrink", first)
    fleche_cli("stats")
    fleche_cli("ls", "summarize", "--json")
    fleche_cli("show", "0" * 32)
    fleche_cli("show", shared)
    fleche_cli("show", "zz")
    fleche_cli("evict", first[:7])
    fleche_cli("gc")
    fleche_cli("verify")
    fleche_cli("copy", ".fleche", "sqlite:///copy.db")
    fleche_cli("clear", "--cache", "sqlite:///copy.db")
    fleche_cli("clear", "--cache", "sqlite:///copy.db", "--yes")


if __name__ == "__main__":
    main()
