"""``file://``'s locks across processes: a record lock on one byte per key of one lock file per
area (``locks/values.lock``, ``locks/calls.lock``), so no file is created or removed per key,
and a key one process holds is held for every other process, while other keys stay free."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import fleche
from fleche import LockTimeoutError
from fleche.config import cache_from_url
from fleche.storage import Intent
from fleche.storage.filesystem import CallFiles

K1, K2 = "1" * 32, "2" * 32


def test_misses_create_no_lock_file_per_key(tmp_path: Path) -> None:
    cache = cache_from_url(f"file://{tmp_path}")

    @fleche.fleche
    def double(x: int) -> int:
        return 2 * x

    with fleche.cache(cache):
        assert [double(x) for x in range(20)] == [2 * x for x in range(20)]
    locks = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "locks").rglob("*"))
    assert locks == ["locks/calls.lock", "locks/values.lock"]


def _hold(root: str, key: str, held: object, release: object) -> None:
    storage = CallFiles(root)
    with storage._operation_context(key, intent=Intent.COMPUTE):
        held.set()  # type: ignore[attr-defined]
        release.wait(30)  # type: ignore[attr-defined]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_key_held_by_another_process_is_held_here_and_others_are_free(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    child = context.Process(target=_hold, args=(str(tmp_path), K1, held, release))
    child.start()
    try:
        assert held.wait(30), "the child did not take its lock"
        storage = CallFiles(tmp_path, lock_timeout=0.3)
        with pytest.raises(LockTimeoutError):
            with storage._operation_context(K1, intent=Intent.COMPUTE):
                pass
        with storage._operation_context(K2, intent=Intent.COMPUTE):
            pass  # another key: free
        release.set()
        child.join(30)
        assert child.exitcode == 0
        with storage._operation_context(K1, intent=Intent.COMPUTE):
            pass  # freed with the child's hold
    finally:
        release.set()
        child.join(30)
