"""``gc`` removes the temp files of writers killed mid-write, and never a living writer's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fleche.caches import ABANDONED_TEMP_AGE
from fleche.call import Call
from fleche.config import cache_from_url


@pytest.mark.parametrize("scheme", ["file", "embedded"])
def test_gc_removes_old_temp_files_and_keeps_fresh_ones(scheme: str, tmp_path: Path) -> None:
    cache = cache_from_url(f"{scheme}://{tmp_path}")
    big = np.arange(200_000)  # large enough to be a file on the embedded storage too
    key = cache.save(Call("f", {"x": 1}, {}, "tests", result=big))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    value_dirs = {p.parent for p in files if len(p.parent.name) == 2}  # the fan-out directories
    assert value_dirs, "the value is stored in a fan-out directory"
    folder = sorted(value_dirs)[0]
    dead = folder / f".{'a' * 32}.99999.1.tmp"
    living = folder / f".{'b' * 32}.99999.2.tmp"
    dead.write_bytes(b"half a value")
    living.write_bytes(b"being written")
    past = time.time() - ABANDONED_TEMP_AGE - 5
    os.utime(dead, (past, past))

    cache.gc(grace=0)

    assert not dead.exists()
    assert living.exists()  # written to a moment ago: its writer may still rename it
    assert np.array_equal(cache.load(key).result, big)
