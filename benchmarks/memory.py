"""Memory: peak RSS added by digesting a large array and by storing and loading a large result.

Each measurement runs in a fresh worker process, so the peak (``timing.peak_rss``: the process's
own high-water mark, which ``ru_maxrss`` is not after an ``exec``) belongs to it alone.
"""

from __future__ import annotations

import gc
from typing import Any

from . import bodies
from .modes import Mode
from .subjects import Subject
from .timing import MIB, current_rss, peak_rss


def digest_rss(mode: Mode, layout: str) -> dict[str, Any]:
    """Peak RSS added by ``fleche.digest`` of a ``mode.digest_mb`` array (C order or a transposed
    view, which is streamed in chunks)."""
    import numpy as np

    from fleche import digest

    n = mode.digest_mb * MIB // 8
    arr = np.arange(n, dtype=np.float64)
    if layout == "F":
        arr = arr.reshape(1024, -1).T  # not C-contiguous: digested chunk by chunk
    digest(np.zeros(4))  # load the numpy hooks before the baseline
    before = current_rss()  # the array is resident: np.arange wrote every page
    digest(arr)
    added = max(0, peak_rss() - before)
    return {"bytes": arr.nbytes, "layout": layout, "added_rss": added, "added_mib": added / MIB}


def store_load_rss(subject: Subject, mode: Mode) -> dict[str, Any]:
    """Peak RSS added while a fresh ``mode.array_mb`` result is computed, stored, dropped and
    loaded back, as a multiple of its size (the array itself counts once)."""
    import numpy as np

    n = mode.array_mb * MIB // 8
    f = subject.decorate(bodies.fresh_big_result)
    f(0, 4)  # open connections and files, import what a store needs
    f(0, 4)
    gc.collect()
    before = current_rss()
    result = f(1, n)  # miss: compute and store
    del result
    gc.collect()
    after_store = peak_rss()
    result = f(1, n)  # hit: load
    assert isinstance(result, np.ndarray)
    assert result.shape == (n,)
    assert result[0] == 1.0
    after_load = peak_rss()
    size = n * 8
    after_store, after_load = max(after_store, before), max(after_load, before)
    return {
        "bytes": size,
        "store_peak": after_store - before,
        "peak": after_load - before,
        "peak_over_size": (after_load - before) / size,
    }
