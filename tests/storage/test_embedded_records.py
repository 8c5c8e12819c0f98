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


def _record(metadata: dict, code_digest: str | None, version: Any = None) -> Any:
    from fleche.call import DigestedCall
    from fleche.digest import digest

    return DigestedCall(
        "f", {"x": digest(1), "y": digest("two")}, metadata, "m", version, code_digest, digest(3)
    )


VARIANTS = {
    "created float, code digest": ({"fleche": {"created": 1.5, "host": "h"}}, "ab" * 16),
    "created int": ({"fleche": {"created": 2}}, "ab" * 16),
    "created string": ({"fleche": {"created": "yesterday"}}, None),
    "no fleche metadata": ({"user": [1, 2]}, None),
    "fleche not a dict": ({"fleche": 5}, None),
    "code digest not a digest": ({}, "not-hex"),
    "code digest short": ({}, "abcd"),
    "version given": ({"fleche": {"created": 0.0}}, "cd" * 16),
}


@pytest.mark.parametrize(("metadata", "code"), list(VARIANTS.values()), ids=list(VARIANTS))
def test_records_round_trip_whatever_their_metadata_and_code_digest(
    tmp_path: Path, metadata: dict, code: str | None
) -> None:
    from fleche.storage.embedded import CallEmbedded

    calls = CallEmbedded(tmp_path)
    record = _record(metadata, code, version={"v": 1} if "cd" in (code or "") else None)
    key = "0123456789abcdef" * 2
    calls.save(record, key)
    loaded = calls.load(key)
    assert loaded == record
    assert loaded.metadata == metadata and loaded.code_digest == code
    fleche = metadata.get("fleche")
    if isinstance(fleche, dict) and "created" in fleche:  # 2 stays an int, 1.5 a float
        assert type(loaded.metadata["fleche"]["created"]) is type(fleche["created"])


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_the_record_text_is_what_json_dumps_gives_with_the_same_options() -> None:
    """The record's JSON comes from the C encoder made directly; it must write what
    ``json.dumps`` with the same options writes (a set and a tuple as lists, anything else as its
    repr), and refuse a cycle as it does."""
    import json

    from fleche.storage.embedded import _jsonable, _record_json

    parts = ["f", None, '{"v":1}', ["x", "ü"], {"tags": {"b"}, "shape": (1, 2), "o": _Opaque(),
             "nested": {"é": [1.5, None, True]}}, None]  # fmt: skip
    assert _record_json(parts) == json.dumps(parts, separators=(",", ":"), default=_jsonable)
    assert json.loads(_record_json(parts))[4] == {
        "tags": ["b"], "shape": [1, 2], "o": "<opaque>", "nested": {"é": [1.5, None, True]},
    }  # fmt: skip
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="Circular reference"):
        json.dumps(cyclic, separators=(",", ":"), default=_jsonable)
    with pytest.raises(ValueError, match="Circular reference"):
        _record_json(["f", {"loop": cyclic}])
    assert _record_json(parts) == json.dumps(parts, separators=(",", ":"), default=_jsonable)


def test_the_record_text_is_the_same_without_the_c_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python whose C encoder is missing or takes other arguments gets the same text from
    ``JSONEncoder`` (the C encoder is a private API, checked once at import)."""
    from fleche.storage import embedded

    parts = ["f", "m", None, ["x"], {"fleche": {"host": "h"}, "s": {1}}, "ab" * 16]
    fast = embedded._record_json(parts)
    assert embedded._C_ENCODER  # on the Pythons the suite runs on
    monkeypatch.setattr(embedded, "_C_ENCODER", False)
    assert embedded._record_json(parts) == fast
    monkeypatch.setattr(embedded, "c_make_encoder", None)
    assert embedded._c_encoder_usable() is False


def test_threads_writing_records_with_shared_metadata_never_see_a_false_cycle() -> None:
    """Metadata shared by the records of several threads (a dict every call returns) is written
    by each thread on its own: the encoder's record of the containers it is inside is not shared,
    so one thread never takes another's for a cycle, even switching threads mid-record."""
    import sys
    import threading

    from fleche.storage.embedded import _record_json

    shared = {"run": {"host": "h", "tags": [{"k": _Opaque()} for _ in range(20)]}}
    expected = _record_json(["f", shared])
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(300):
                assert _record_json(["f", shared]) == expected
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"x": "ab" * 8},  # a short digest
        {"x": "ab" * 15 + "a", "y": "ab" * 16 + "a"},  # 31 + 33 characters: 64 in all
        {"x": "zz" * 16},  # not hex
        {"x": 5},  # not a string
    ],
    ids=["short", "lengths that add up", "not hex", "not a string"],
)
def test_a_record_whose_arguments_are_not_full_digests_is_refused(
    tmp_path: Path, arguments: dict[str, Any]
) -> None:
    from fleche.call import DigestedCall
    from fleche.digest import digest
    from fleche.errors import SaveError
    from fleche.storage.embedded import CallEmbedded

    calls = CallEmbedded(tmp_path)
    record = DigestedCall("f", arguments, {}, "m", None, None, digest(3))
    with pytest.raises(SaveError, match="full digests"):
        calls.save(record, "0123456789abcdef" * 2)
    assert list(calls.list()) == []
