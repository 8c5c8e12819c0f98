"""Raw floors on this machine: hashing, copying, saving and loading the same large buffer."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from .modes import Mode
from .timing import MIB, seconds


def floors(mode: Mode, workdir: Path) -> dict[str, Any]:
    """xxh3-128 and SHA-256 over a buffer, ``arr.copy()``, ``np.save`` and ``np.load``."""
    import numpy as np
    import xxhash

    arr = np.random.default_rng(0).random(mode.array_mb * MIB // 8)
    nbytes = arr.nbytes
    found: dict[str, Any] = {"bytes": nbytes}
    found["xxh3_128_s"] = seconds(lambda: xxhash.xxh3_128(arr.data).digest(), mode.big_repeats)
    found["sha256_s"] = seconds(lambda: hashlib.sha256(arr.data).digest(), mode.big_repeats)
    found["copy_s"] = seconds(arr.copy, mode.big_repeats)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "a.npy"
        found["np_save_s"] = seconds(lambda: np.save(path, arr), mode.big_repeats)
        found["np_load_s"] = seconds(lambda: np.load(path), mode.big_repeats)
    for name in ("xxh3_128", "sha256", "copy", "np_save", "np_load"):
        found[name + "_gbps"] = nbytes / found[name + "_s"]["median"] / 1e9
    return found
