"""A miss on the embedded default is written by the storages' joint writer (the small values in one
upsert, then the record, in the key's one transaction): it must store exactly what the generic
path stores, keep its rules (arguments that cannot be stored are kept by digest only; a result
that cannot be stored is reported and leaves nothing behind) and never bypass a cache that
overrides how values or records are stored."""

from __future__ import annotations

import errno
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

import fleche
from fleche import Cache
from fleche.errors import UnstorableResultWarning
from fleche.storage._files import FileOps
from fleche.storage.embedded import CallEmbedded, ValueEmbedded

from .writer_cases import check_an_unstorable_argument_is_kept_by_digest, mixed


class Generic(Cache):
    """A cache that stores through ``_store_value``/``_store_record``, one call at a time."""

    def __init__(self, root: Path) -> None:
        super().__init__(ValueEmbedded(root), CallEmbedded(root))
        self.stored: list[str] = []

    def _store_value(self, key: Any, value: Any) -> None:
        self.stored.append(key)
        super()._store_value(key, value)


def _joint(root: Path) -> Cache:
    return Cache(ValueEmbedded(root), CallEmbedded(root))


def _rows(root: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(root / "fleche.db") as conn:
        return {
            "vals": conn.execute("SELECT key, data, size FROM vals ORDER BY key").fetchall(),
            "calls": conn.execute(
                "SELECT key, name, module, version, result FROM calls ORDER BY key"
            ).fetchall(),
            "args": conn.execute("SELECT * FROM args ORDER BY param, value, call").fetchall(),
        }


@fleche.fleche
def big(n: int) -> bytes:
    return bytes([n % 256]) * (64 * 1024)  # over the 32 KiB threshold: a value file


def test_only_a_plain_cache_takes_the_joint_path(tmp_path: Path) -> None:
    assert _joint(tmp_path / "a")._write_call is not None
    assert Generic(tmp_path / "b")._write_call is None


def test_the_joint_writer_stores_what_the_generic_path_stores(tmp_path: Path) -> None:
    calls = [(1, "x", b""), (2, "x", b"y" * 50_000), (1, "x", b"")]
    joint, generic = _joint(tmp_path / "joint"), Generic(tmp_path / "generic")
    for store in (joint, generic):
        with fleche.cache(store):
            for args in calls:
                assert mixed(*args) == {"n": args[0], "text": args[1], "size": len(args[2])}
            assert big(3) == b"\3" * 65536
    assert generic.stored  # the generic path really ran there
    assert _rows(tmp_path / "joint") == _rows(tmp_path / "generic")
    files = [sorted(p.name for p in (tmp_path / d / "values").rglob("*") if p.is_file())
             for d in ("joint", "generic")]  # fmt: skip
    assert files[0] == files[1] and len(files[0]) == 2  # the 50 kB argument and the big result
    with fleche.cache(_joint(tmp_path / "joint")):  # a new process's view: every hit reads back
        assert mixed(2, "x", b"y" * 50_000)["size"] == 50_000
        assert big(3) == b"\3" * 65536
        assert mixed.query(n=2).only().arguments["blob"] == b"y" * 50_000


def test_every_key_and_frame_lands_as_a_blob(tmp_path: Path) -> None:
    """Keys, frames and records are bound as bytearray (sqlite3 adapts bytes first): whichever
    path wrote them, SQLite must hold BLOBs, never text, for the hit path to find them."""
    joint, generic = _joint(tmp_path / "joint"), Generic(tmp_path / "generic")
    for store in (joint, generic):
        with fleche.cache(store):
            mixed(1, "x", b"")
            store.values.save("a value saved on its own")
    for name in ("joint", "generic"):
        with sqlite3.connect(tmp_path / name / "fleche.db") as conn:
            types = conn.execute(
                "SELECT DISTINCT typeof(key), typeof(data) FROM vals"
                " UNION SELECT DISTINCT typeof(key), typeof(result) FROM calls"
                " UNION SELECT DISTINCT typeof(record), typeof(record) FROM calls"
                " UNION SELECT DISTINCT typeof(value), typeof(call) FROM args"
            ).fetchall()
        assert types == [("blob", "blob")], name
    with fleche.cache(_joint(tmp_path / "joint")):  # and read back through the hit path
        assert mixed.contains(1, "x", b"") and mixed(1, "x", b"")["n"] == 1


def test_an_argument_that_cannot_be_stored_is_kept_by_digest(tmp_path: Path) -> None:
    store = _joint(tmp_path)
    check_an_unstorable_argument_is_kept_by_digest(store)


def test_a_result_that_cannot_be_stored_leaves_nothing(tmp_path: Path) -> None:
    @fleche.fleche
    def lock(n: int) -> Any:
        return threading.Lock()

    store = _joint(tmp_path)
    with fleche.cache(store), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hasattr(lock(12345), "acquire")
    assert any(w.category is UnstorableResultWarning for w in caught)
    assert _rows(tmp_path) == {"vals": [], "calls": [], "args": []}


class FailingWrites(FileOps):
    def write(self, fd: int, data: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_value_file_rolls_the_whole_call_back(tmp_path: Path) -> None:
    store = _joint(tmp_path)
    with fleche.cache(store):
        assert mixed(7, "kept", b"") == {"n": 7, "text": "kept", "size": 0}
        before = _rows(tmp_path)
        store.values.ops = FailingWrites()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert big(9) == b"\t" * 65536  # computed and returned, not stored
        assert any(w.category is UnstorableResultWarning for w in caught)
        assert _rows(tmp_path) == before  # neither its argument nor its record
        assert not list((tmp_path / "values").rglob("*.tmp"))
        store.values.ops = FileOps()
        assert big(9) == b"\t" * 65536
        assert big.contains(9) and mixed.contains(7, "kept", b"")
