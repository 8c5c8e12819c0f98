"""Opening an embedded cache written in layout 1 upgrades it to the current layout.

``data/embedded-v1`` is a cache written by fleche at layout 1 (commit 7fb528b, by a script whose
functions lived in a module named ``mkv1``): five calls of ``area(width, height, unit="m")`` and
``blob(n)`` (version 2), one of whose results is a value file. The keys and values below are what
that fleche stored; they are pinned on purpose, as the point is to read them back unchanged.
"""

from __future__ import annotations

import shutil
import sqlite3
import warnings
from pathlib import Path

import pytest

from fleche.call import QueryCall
from fleche.config import resolve_cache
from fleche.errors import ConfigError, CorruptEntryWarning
from fleche.storage.embedded import LAYOUT_VERSION

FIXTURE = Path(__file__).parent / "data" / "embedded-v1"

# key: (function, version, argument values, result) as fleche at layout 1 stored them
STORED = {
    "41fad01aab788de87d65cbc75ae92065": ("area", None, {"width": 2, "height": 3.5, "unit": "m"},
                                         {"area": 7.0, "unit": "m"}),
    "75570c11d1978cdd63d956dca694d1a1": ("area", None, {"width": 4, "height": 1.0, "unit": "cm"},
                                         {"area": 4.0, "unit": "cm"}),
    "9772f1d7b0f91ef956a51d0b520c36ad": ("area", None, {"width": 7, "height": 7.0, "unit": "m"},
                                         {"area": 49.0, "unit": "m"}),
    "f07c6ea5d8631e43a68c30252ad7a0d5": ("blob", 2, {"n": 10}, bytes([10] * 10)),
    "569a5baeadfb7ac2f60393a13c16f7c8": ("blob", 2, {"n": 40000}, bytes([40000 % 256] * 40000)),
}  # fmt: skip


@pytest.fixture
def old_cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    shutil.copytree(FIXTURE, root)
    return root


def _layout(root: Path) -> str:
    with sqlite3.connect(root / "fleche.db") as conn:
        return str(conn.execute("SELECT value FROM meta WHERE name = 'layout'").fetchone()[0])


def test_the_fixture_is_in_layout_1(old_cache: Path) -> None:
    assert _layout(old_cache) == "1" != LAYOUT_VERSION


def test_every_record_and_value_reads_back_after_the_upgrade(old_cache: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no record of the fixture is corrupt: no warning
        cache = resolve_cache(str(old_cache))
    assert _layout(old_cache) == LAYOUT_VERSION
    assert sorted(cache.list()) == sorted(STORED)
    for key, (name, version, arguments, result) in STORED.items():
        record = cache._load_record(key)
        assert (record.name, record.module, record.version) == (name, "mkv1", version)
        assert {p: cache.load_value(d) for p, d in record.arguments.items()} == arguments
        assert isinstance(record.metadata["fleche"]["created"], float)
        assert cache._lookup(key) == result  # the hit path reads the new rows too


def test_queries_by_function_and_argument_use_the_new_rows(old_cache: Path) -> None:
    cache = resolve_cache(str(old_cache))
    assert cache.query(QueryCall(name="area", module="mkv1")).count() == 3
    assert cache.query(QueryCall(name="area", arguments={"unit": "m"})).count() == 2
    assert cache.query(QueryCall(name="blob", version=2, arguments={"n": 10})).count() == 1
    cache.evict("9772f1d7b0f91ef956a51d0b520c36ad")  # eviction drops its argument rows too
    assert cache.query(QueryCall(name="area", arguments={"unit": "m"})).count() == 1


def test_the_upgrade_runs_once(old_cache: Path) -> None:
    resolve_cache(str(old_cache))
    with sqlite3.connect(old_cache / "fleche.db") as conn:
        before = conn.execute("SELECT key, record, checksum FROM calls ORDER BY key").fetchall()
    shutil.copytree(old_cache, old_cache.parent / "again")
    again = resolve_cache(str(old_cache.parent / "again"))
    with sqlite3.connect(old_cache.parent / "again" / "fleche.db") as conn:
        after = conn.execute("SELECT key, record, checksum FROM calls ORDER BY key").fetchall()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert after == before and len(after) == len(STORED)
    assert "calls_layout_1" not in tables and "calls_by_function" in tables
    assert again._lookup("f07c6ea5d8631e43a68c30252ad7a0d5") == bytes([10] * 10)


def test_a_corrupt_layout_1_record_is_dropped_with_a_warning(old_cache: Path) -> None:
    corrupt = "75570c11d1978cdd63d956dca694d1a1"
    with sqlite3.connect(old_cache / "fleche.db") as conn:
        conn.execute(
            "UPDATE calls SET extra = replace(extra, 'fleche', 'flecho') WHERE key = ?",
            (bytes.fromhex(corrupt),),
        )
    with pytest.warns(CorruptEntryWarning, match="1 corrupt call record"):
        cache = resolve_cache(str(old_cache))
    assert sorted(cache.list()) == sorted(set(STORED) - {corrupt})
    with pytest.raises(KeyError):
        cache._lookup(corrupt)  # a plain miss now: computed again by the next call
    assert cache._lookup("41fad01aab788de87d65cbc75ae92065") == {"area": 7.0, "unit": "m"}


def test_a_failed_upgrade_leaves_layout_1_untouched(old_cache: Path, monkeypatch) -> None:
    from fleche.storage import embedded_upgrade

    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(embedded_upgrade, "_layout_1_call", broken)
    with pytest.raises(ConfigError, match="disk I/O error"):
        resolve_cache(str(old_cache))
    assert _layout(old_cache) == "1"
    with sqlite3.connect(old_cache / "fleche.db") as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == len(STORED)
        assert "extra" in {row[1] for row in conn.execute("PRAGMA table_info(calls)")}


def test_a_newer_layout_is_refused(old_cache: Path) -> None:
    with sqlite3.connect(old_cache / "fleche.db") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'layout'")
    with pytest.raises(ConfigError, match="layout version 99"):
        resolve_cache(str(old_cache))


def test_processes_opening_a_layout_1_cache_at_once_upgrade_it_once(old_cache: Path) -> None:
    import subprocess
    import sys

    reader = (
        "import sys; from fleche.config import resolve_cache; c = resolve_cache(sys.argv[1]); "
        "print(sum(c._lookup(k) is not None for k in c.list()))"
    )
    command = [sys.executable, "-c", reader, str(old_cache)]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs
    assert [out.strip() for out, _ in outputs] == [str(len(STORED))] * 4
    assert _layout(old_cache) == LAYOUT_VERSION


def test_a_layout_1_cache_of_another_digest_scheme_names_the_scheme(old_cache: Path) -> None:
    with sqlite3.connect(old_cache / "fleche.db") as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE name = 'digest_scheme'")
    with pytest.raises(ConfigError, match="digest scheme 0"):
        resolve_cache(str(old_cache))
    assert _layout(old_cache) == "1"  # not upgraded: nothing this fleche could read
