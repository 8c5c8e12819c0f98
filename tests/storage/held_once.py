"""Shared by the SQL and Redis tests: what storing and then loading a large array allocates."""

from __future__ import annotations

import tracemalloc
from typing import Any


def save_and_load_traced(storage: Any, array: Any) -> tuple[int, int, Any]:
    """Peak bytes allocated while ``storage`` saves ``array``, then while it loads it back, and
    the loaded value (seen by tracemalloc: Python's and numpy's allocations)."""
    tracemalloc.start()
    try:
        key = storage.save(array)
        stored = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        loaded = storage.load(key)
        loaded_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return stored, loaded_peak, loaded
