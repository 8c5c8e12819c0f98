"""Quick start: a slow function computed once, then served from the cache.

Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import time

from fleche import cache, fleche


@fleche
def slow_square(x: int) -> int:
    """Pretend to be an expensive computation."""
    time.sleep(0.5)
    return x * x


def timed(label: str, x: int) -> None:
    start = time.perf_counter()
    result = slow_square(x)
    elapsed = time.perf_counter() - start
    print(f"{label:<28} slow_square({x}) = {result:<4} in {elapsed * 1e3:8.2f} ms")


def main() -> None:
    with cache("memory"):
        timed("first call (computed):", 12)
        timed("second call (from cache):", 12)
        timed("another argument (computed):", 13)
        print(f"stored calls of slow_square: {slow_square.query().count()}")


if __name__ == "__main__":
    main()
