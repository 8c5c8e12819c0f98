"""The functions the benchmarks cache: module-level, so every library can name and pickle them."""

from __future__ import annotations

import os
import time
from typing import Any

ARRAY: Any = None  # the large result W4 returns, built once per process (see ``big_result``)


def small(a: int, b: str) -> dict[str, Any]:
    """W1, W2, W5, W8: two plain arguments, a small dict back."""
    return {"a": a, "b": b, "twice": 2 * a}


def group(i: int) -> str:
    """The ``b`` argument W5 and W8 store with ``a=i``: 100 groups, for a query by one argument."""
    return f"g{i % 100}"


def array_argument(x: Any) -> dict[str, Any]:
    """W3: a large array in, a small result out (the hit cost is digesting the argument)."""
    return {"size": int(x.size)}


def big_result(i: int) -> Any:
    """W4: a large array out; element 0 differs per call so each result is a new value."""
    ARRAY[0] = float(i)
    return ARRAY


def fresh_big_result(i: int, n: int) -> Any:
    """Memory benchmark: a new array of ``n`` float64 per call (nothing else kept alive)."""
    import numpy as np

    return np.full(n, float(i))


def slow(k: int) -> int:
    """W6: a slow body that records each run in the file named by ``BENCH_COUNTER``."""
    fd = os.open(os.environ["BENCH_COUNTER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {k}\n".encode())  # one small O_APPEND write: atomic
    finally:
        os.close(fd)
    time.sleep(float(os.environ.get("BENCH_SLOW_SECONDS", "0.05")))
    return k * k
