"""Every method of a query result (SPEC section 9), on every cache kind (memory, files, SQL, Redis)."""

from __future__ import annotations

from typing import Any

import pytest

import fleche.wrapper as wrapper_module
from fleche import D, cache, digest, fleche, tags
from fleche.call import QueryCall
from fleche.config import cache_from_url
from fleche.query import QueryIterator


@fleche
def pair(a, b=None):
    return [a, b]


@fleche
def other(a):
    return a


@pytest.fixture
def stored(any_cache, monkeypatch) -> Any:
    """Five calls of ``pair`` stored at times 1001..1005, tagged by stage, and one of ``other``."""
    clock = iter(range(1001, 2000))
    monkeypatch.setattr(wrapper_module, "now", lambda: float(next(clock)))
    with tags(stage="fit", cfg={"lr": 0.1, "depth": 3}):
        pair(1, "x")  # 1001
        pair(1, "y")  # 1002
    with tags(stage="eval", cfg={"lr": 0.1, "depth": 4}):
        pair(2, None)  # 1003
        pair(3, "x")  # 1004
    pair(4, [1, 2])  # 1005, untagged
    other(1)
    return any_cache


def args(result: QueryIterator) -> list[tuple[Any, Any]]:
    return [(c.arguments["a"], c.arguments["b"]) for c in result]


def test_count_any_len(stored) -> None:
    assert pair.query().count() == 5
    assert len(pair.query(1)) == 2
    assert pair.query(1).any()
    assert not pair.query(9).any()
    assert pair.query(9).count() == 0
    assert cache().query().count() == 6
    assert cache().query(QueryCall("other")).count() == 1


def test_only(stored) -> None:
    assert pair.query(b="y").only().result == [1, "y"]
    with pytest.raises(KeyError):
        pair.query(9).only()
    with pytest.raises(ValueError, match="2 stored calls"):
        pair.query(1).only()


def test_none_is_a_wildcard_and_d_none_a_literal(stored) -> None:
    assert pair.query(b=None).count() == 5
    assert pair.query(b=D(None)).only().arguments["a"] == 2
    assert pair.query(None, "x").count() == 2


def test_values_and_digests_match_alike(stored) -> None:
    assert pair.query(D(digest(1))).count() == 2
    assert pair.query(digest(1)).count() == 2  # a full Digest stands for its value
    assert pair.query(b=[1, 2]).only().arguments["a"] == 4
    assert pair.query(b=(1, 2)).count() == 0  # a tuple is not a list


def test_metadata_templates_match_nested_keys(stored) -> None:
    assert pair.query(metadata={"tags": {"stage": "fit"}}).count() == 2
    assert pair.query(metadata={"tags": {"cfg": {"lr": 0.1}}}).count() == 4
    assert args(pair.query(metadata={"tags": {"cfg": {"depth": 4}}}).sorted()) == [
        (2, None),
        (3, "x"),
    ]
    both = {"tags": {"stage": "eval", "cfg": {"depth": 4, "lr": 0.1}}}
    assert pair.query("x", metadata=both).count() == 0  # argument AND metadata
    assert pair.query(3, metadata=both).count() == 1
    assert pair.query(metadata={"tags": {"stage": "eval", "cfg": {"depth": 3}}}).count() == 0
    assert pair.query(metadata={"tags": {"missing": 1}}).count() == 0
    assert pair.query(metadata={"tags": {"stage": None}}).count() == 4  # present, any value


def test_take_and_skip(stored) -> None:
    ordered = pair.query().sorted()
    assert args(ordered.take(2)) == [(1, "x"), (1, "y")]
    assert args(ordered.skip(3)) == [(3, "x"), (4, [1, 2])]
    assert args(ordered.skip(1).take(2)) == [(1, "y"), (2, None)]
    assert args(ordered.take(3).skip(2)) == [(2, None)]
    assert ordered.skip(9).count() == 0
    assert pair.query().take(2).count() == 2


def test_filter_and_sorted(stored) -> None:
    odd = pair.query().filter(lambda c: c.arguments["a"] % 2 == 1)
    assert sorted(c.arguments["a"] for c in odd) == [1, 1, 3]
    assert [c.arguments["a"] for c in pair.query().sorted(lambda c: -c.arguments["a"])] == [
        4,
        3,
        2,
        1,
        1,
    ]
    newest_first = pair.query().sorted(reverse=True)
    assert [c.created for c in newest_first] == [1005.0, 1004.0, 1003.0, 1002.0, 1001.0]
    # a filter after a window applies to the window
    assert args(pair.query().sorted().take(2).filter(lambda c: c.arguments["b"] == "y")) == [
        (1, "y")
    ]


def test_latest_and_oldest(stored) -> None:
    assert pair.query().latest().arguments["a"] == 4
    assert pair.query().oldest().arguments["b"] == "x"
    assert pair.query(1).latest().result == [1, "y"]
    assert pair.query(b="x").oldest().arguments["a"] == 1
    with pytest.raises(KeyError):
        pair.query(9).latest()
    with pytest.raises(KeyError):
        pair.query(9).oldest()


def test_results(stored) -> None:
    assert sorted(map(repr, pair.query().results())) == sorted(
        map(repr, [[1, "x"], [1, "y"], [2, None], [3, "x"], [4, [1, 2]]])
    )
    assert pair.query(9).results() == []


def test_records_load_values_only_when_accessed(stored) -> None:
    loads: list[str] = []
    real = stored.load_value

    def counting(key: str) -> Any:
        loads.append(key)
        return real(key)

    stored.load_value = counting
    try:
        calls = list(pair.query())
        assert {c.name for c in calls} == {"pair"}
        assert all(c.created > 1000 for c in calls)
        assert loads == []
        first = pair.query(b="y").only()
        assert first.result == [1, "y"]
        assert loads == [digest([1, "y"])]
        assert first.arguments["a"] == 1
        assert loads == [digest([1, "y"]), digest(1)]
    finally:
        del stored.load_value


def test_evict(stored) -> None:
    assert pair.query(1).evict() == 2
    assert not pair.contains(1, "x")
    assert pair.query().count() == 3
    assert other.query().count() == 1
    assert pair.query(9).evict() == 0


def test_transfer(stored) -> None:
    target = cache_from_url("memory://")
    assert pair.query(1).transfer(target) == 2
    assert target.query().count() == 2
    assert pair.query(1).transfer(target) == 0  # already there
    assert pair.query(1).transfer(target, overwrite=True) == 2
    assert sorted(map(repr, target.query().results())) == ["[1, 'x']", "[1, 'y']"]
    with cache(target):
        assert pair(1, "y") == [1, "y"] and target.hits == 1
    assert pair.query(b="x").transfer(target, pop=True) == 1  # (1, "x") was there; (3, "x") moves
    assert pair.query().count() == 4
    assert not pair.contains(3, "x")
    assert target.query().count() == 3


def test_table(stored) -> None:
    table = pair.query().sorted().table()
    assert list(table["a"]) == [1, 1, 2, 3, 4]
    assert list(table["b"][:2]) == ["x", "y"]
    assert {"key", "function", "a", "b", "result", "created"} <= set(table.columns)
    assert list(table["created"]) == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0]
    assert set(table["function"]) == {"pair"}
    rows = pair.query(b="y").rows()
    assert rows[0]["result"] == [1, "y"] and rows[0]["key"] == pair.digest(1, "y")


def test_table_without_pandas(stored, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pandas" else real(name, *a)
    )
    table = pair.query(1).table()
    assert isinstance(table, list)
    assert sorted(row["b"] for row in table) == ["x", "y"]


def test_repr_html(stored) -> None:
    with tags(note="<b>"):
        pair("<script>", 0)
    page = pair.query().sorted()._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    assert page.count("<tr>") == 7  # header and six calls
    assert "<th>a</th>" in page and "<th>result</th>" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert pair.query(9)._repr_html_() == "<p>no stored calls match</p>"
