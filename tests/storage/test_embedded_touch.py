"""Saving a value the embedded store already holds: its row is kept and its ``written`` time is
refreshed only when older than ``TOUCH_AFTER`` (``gc`` spares values written within its grace,
so a value saved again must look fresh; a younger one is left alone, with no page to write).
Small values take one upsert; large ones (files) a look and, when new, a file write."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleche.storage.embedded import TOUCH_AFTER, ValueEmbedded

SMALL, LARGE = "a small value", b"x" * (64 * 1024)  # inline row / a file (over 32 KiB)


def _age(storage: ValueEmbedded, key: str) -> float:
    return storage.stored_age(key)


def _set_written(storage: ValueEmbedded, key: str, when: float) -> None:
    conn = storage._db.connection()
    conn.execute("UPDATE vals SET written = ? WHERE key = ?", (when, bytes.fromhex(key)))


def _row(storage: ValueEmbedded, key: str) -> tuple:
    conn = storage._db.connection()
    return conn.execute(
        "SELECT data, size FROM vals WHERE key = ?", (bytes.fromhex(key),)
    ).fetchone()


@pytest.mark.parametrize("value", [SMALL, LARGE], ids=["inline", "file"])
def test_a_value_saved_again_long_after_is_touched(value, tmp_path: Path) -> None:
    storage = ValueEmbedded(tmp_path)
    key = storage.save(value)
    before = _row(storage, key)
    _set_written(storage, key, time.time() - 10 * TOUCH_AFTER)
    assert _age(storage, key) > 9 * TOUCH_AFTER
    assert storage.save(value) == key
    assert _age(storage, key) < TOUCH_AFTER / 2  # fresh again: gc's grace counts from now
    assert _row(storage, key) == before  # the stored frame itself was not rewritten
    assert storage.load(key) == value


@pytest.mark.parametrize("value", [SMALL, LARGE], ids=["inline", "file"])
def test_a_value_saved_again_soon_after_keeps_its_time(value, tmp_path: Path) -> None:
    storage = ValueEmbedded(tmp_path)
    key = storage.save(value)
    written = time.time() - TOUCH_AFTER / 2
    _set_written(storage, key, written)
    storage.save(value)
    assert _age(storage, key) >= TOUCH_AFTER / 2 - 1


def test_a_written_time_in_the_future_is_corrected(tmp_path: Path) -> None:
    """A clock that jumped back must not keep a value 'fresh' for ever."""
    storage = ValueEmbedded(tmp_path)
    key = storage.save(SMALL)
    _set_written(storage, key, time.time() + 10 * TOUCH_AFTER)
    storage.save(SMALL)
    assert 0 <= _age(storage, key) < TOUCH_AFTER / 2


class Pickled:
    """A large value that counts how often it is pickled."""

    count = 0

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> tuple:
        type(self).count += 1
        return (Pickled, (self.payload,))


def test_a_new_large_value_is_serialised_once(tmp_path: Path) -> None:
    storage = ValueEmbedded(tmp_path)
    value, key = Pickled(b"y" * (1 << 20)), "ab" * 16  # a file: over the 32 KiB threshold
    Pickled.count = 0
    storage.save(value, key)
    assert Pickled.count == 1
    assert storage.load(key).payload == value.payload
    assert _row(storage, key)[0] is None  # stored as a file, not inline
