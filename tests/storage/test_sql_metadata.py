"""Metadata templates are answered in the database too: rows without the wanted text stay there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleche.call import DigestedCall, QueryCall
from fleche.digest import digest
from fleche.storage.sql_schema import metadata_fragments

from ..backends import HARNESSES


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def calls(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    yield harness.call_storage()
    harness.close()


def tagged(x: int, **tags: Any) -> DigestedCall:
    metadata = {"fleche": {"created": 1.0}, "tags": tags}
    return DigestedCall("f", {"x": digest(x)}, metadata, "tests", None, None, digest(x))


def decoded(calls: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys of the rows the storage reads back from the database (and decodes) from now on."""
    seen: list[str] = []
    real = calls._decode

    def spy(key: str, record: str, checksum: int) -> Any:
        seen.append(key)
        return real(key, record, checksum)

    monkeypatch.setattr(calls, "_decode", spy)
    return seen


def test_fragments_are_the_json_text_of_each_string() -> None:
    template = {"tags": {"stage": "fit", "lr": 0.1, "cfg": {"name": 'a"b'}}, "git": None}
    assert list(metadata_fragments(template)) == ['"stage":"fit"']  # 'a"b' is escaped: re-check
    assert list(metadata_fragments({"tags": {"pct": "50%_off"}})) == ['"pct":"50%_off"']


def test_metadata_strings_filter_rows_in_the_database(calls, monkeypatch) -> None:
    keys = {}
    for x in range(30):
        stage = ("fit", "eval", "Fit")[x % 3]
        keys[x] = calls.save(tagged(x, stage=stage, pct="50%_off" if x < 5 else "50x_off", n=x))
    seen = decoded(calls, monkeypatch)
    found = dict(calls.query(QueryCall("f", metadata={"tags": {"stage": "fit"}})))
    assert set(found) == {keys[x] for x in range(0, 30, 3)}
    assert len(seen) <= 20  # "Fit" may pass a case-insensitive collation, "eval" never does
    seen.clear()
    found = dict(calls.query(QueryCall(metadata={"tags": {"pct": "50%_off"}})))
    assert set(found) == {keys[x] for x in range(5)}  # % and _ are text, not wildcards
    assert len(seen) == 5
    seen.clear()
    found = dict(calls.query(QueryCall("f", {"x": 7}, metadata={"tags": {"stage": "fit"}})))
    assert found == {}  # x=7 is tagged "Fit"
    assert len(seen) <= 1
    # numbers are not filtered as text (1 and 1.0 match); the exact re-check still applies
    assert list(dict(calls.query(QueryCall(metadata={"tags": {"n": 4.0}})))) == [keys[4]]


def test_the_escape_character_is_text_too(calls, monkeypatch) -> None:
    wanted = calls.save(tagged(1, path="a/b%"))
    calls.save(tagged(2, path="a/bx"))
    calls.save(tagged(3, path="a//b%"))
    seen = decoded(calls, monkeypatch)
    assert list(dict(calls.query(QueryCall(metadata={"tags": {"path": "a/b%"}})))) == [wanted]
    assert seen == [wanted]
