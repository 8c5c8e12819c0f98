"""Quick start: a slow function computed once, then served from the cache, even in another process.

Run it with ``python examples/quickstart.py``. It first uses the in-memory cache, then a persistent
cache in a scratch directory, which a second Python process reads without computing anything.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from fleche import cache, fleche

computed = []  # the arguments the body really ran for, to tell a computation from a cache hit


@fleche
def slow_square(x: int) -> int:
    """Pretend to be an expensive computation."""
    computed.append(x)
    time.sleep(0.5)
    return x * x


def timed(label: str, x: int) -> None:
    before = len(computed)
    start = time.perf_counter()
    result = slow_square(x)
    elapsed = time.perf_counter() - start
    source = "computed" if len(computed) > before else "from cache"
    print(
        f"{label + ':':<18} slow_square({x}) = {result:<4} {source:<10} in {elapsed * 1e3:8.2f} ms"
    )


def in_memory() -> None:
    print("-- in memory (lives as long as this process)")
    with cache("memory"):
        timed("first call", 12)
        timed("second call", 12)
        timed("new argument", 13)
        print(f"stored calls of slow_square: {slow_square.query().count()}")


def persistent(directory: str) -> None:
    print(f"-- persistent, in {directory} (survives the process)")
    with cache(directory):  # a path: the embedded default storage in that directory
        timed("first call", 12)
        timed("second call", 12)
    # a fresh interpreter: nothing in memory, the result comes from the directory
    subprocess.run([sys.executable, __file__, "--read", directory], check=True)


def second_process(directory: str) -> None:
    with cache(directory):
        timed("second process", 12)
        print(f"second process sees {slow_square.query().count()} stored call(s)")


def main() -> None:
    if sys.argv[1:2] == ["--read"]:
        second_process(sys.argv[2])
        return
    in_memory()
    with tempfile.TemporaryDirectory(prefix="fleche-quickstart-") as directory:
        persistent(directory)


if __name__ == "__main__":
    main()
