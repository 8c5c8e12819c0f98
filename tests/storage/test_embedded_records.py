"""The embedded default's call rows: one checksummed ``record`` blob, with the function's name,
module and version copied into indexed columns. Whatever is altered in a row, through any column
and with any type, the next call is a warned miss that recomputes, never a crash or a stale result.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import fleche
from fleche.config import resolve_cache
from fleche.errors import CorruptEntryWarning

runs: list[int] = []


@fleche.fleche
def square(x: int) -> int:
    runs.append(x)
    return x * x


def _set(root: Path, key: str, column: str, value: Any) -> None:
    with sqlite3.connect(root / "fleche.db") as conn:
        changed = conn.execute(
            f"UPDATE calls SET {column} = ? WHERE key = ?", (value, bytes.fromhex(key))
        ).rowcount
    assert changed == 1


ALTERATIONS = {
    "record as text": ("record", "not a record"),
    "record truncated": ("record", b"\x01\x00"),
    "record empty": ("record", b""),
    "result as an integer": ("result", 7),
    "result of another call": ("result", bytes(16)),
    "result removed": ("result", None),
    "checksum as text": ("checksum", "x"),
    "name changed": ("name", "cube"),
    "module changed": ("module", "elsewhere"),
    "version given": ("version", "3"),
}


@pytest.mark.parametrize(("column", "value"), list(ALTERATIONS.values()), ids=list(ALTERATIONS))
def test_an_altered_call_row_is_a_warned_miss(tmp_path: Path, column: str, value: Any) -> None:
    cache = resolve_cache(str(tmp_path))
    with fleche.cache(cache):
        assert square(4) == 16
        key = square.digest(4)
        _set(tmp_path, key, column, value)
        runs.clear()
        if column in ("name", "module", "version"):
            # a hit reads only the checksummed blob, whose result is right; loading the record
            # compares the copies with it, and the row is dropped
            assert square(4) == 16 and runs == []
            with pytest.warns(CorruptEntryWarning, match="indexed columns differ"):
                with pytest.raises(KeyError):
                    cache._load_record(key)
            assert square(4) == 16 and runs == [4]  # recomputed
        else:
            with pytest.warns(CorruptEntryWarning):
                assert square(4) == 16
            assert runs == [4]  # recomputed
        runs.clear()
        assert square(4) == 16 and runs == []  # a clean hit again
        assert cache._load_record(key).name.endswith("square")
