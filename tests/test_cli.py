"""The ``fleche`` command: in process on the memory cache, and as a subprocess on persistent caches."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleche import cache, fleche
from fleche.cli import EXIT_AMBIGUOUS, EXIT_NOT_FOUND, EXIT_OK, main

from .backends import HARNESSES


@fleche
def area(width, height=1):
    return width * height


def fill() -> list[str]:
    return [area.digest(w, h) for w in range(1, 4) for h in (1, 2) if area(w, h) is not None]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_query_show_expand_shrink_in_process(capsys) -> None:
    keys = fill()
    code, out, _ = run(capsys, "ls")
    assert code == EXIT_OK
    assert len(out.splitlines()) == 6
    assert all(len(line.split()[0]) >= 7 for line in out.splitlines())
    code, out, _ = run(capsys, "query", "area", "width=2")
    assert code == EXIT_OK
    assert len(out.splitlines()) == 2
    code, out, _ = run(capsys, "show", keys[0][:10])
    assert code == EXIT_OK
    assert "width = 1" in out
    assert "result    1" in out
    code, out, _ = run(capsys, "expand", keys[0][:10])
    assert out.strip() == keys[0]
    code, out, _ = run(capsys, "shrink", keys[0])
    assert keys[0].startswith(out.strip())
    assert len(out.strip()) >= 7


def test_json_output(capsys) -> None:
    keys = fill()
    code, out, _ = run(capsys, "ls", "--json")
    rows = json.loads(out)
    assert code == EXIT_OK
    assert {r["key"] for r in rows} == set(keys)
    code, out, _ = run(capsys, "stats", "--json")
    assert json.loads(out)["entries"] == 6


def test_errors_are_one_line_with_exit_codes(capsys) -> None:
    fill()
    code, _, err = run(capsys, "show", "0000000")
    assert code == EXIT_NOT_FOUND
    assert err.startswith("fleche: not found") and err.count("\n") == 1
    code, _, err = run(capsys, "expand", "")
    assert code != EXIT_OK and "Traceback" not in err
    record = cache().load(fill()[0]).record
    for suffix in ("1", "2"):  # two stored keys sharing the prefix "abc"
        cache().calls.put(record, "abc" + suffix * 29)
    code, _, err = run(capsys, "expand", "abc")
    assert code == EXIT_AMBIGUOUS
    assert "ambiguous" in err


def test_evict_explain_gc_verify_clear(capsys) -> None:
    keys = fill()
    code, out, _ = run(capsys, "explain", "area", "width=1", "height=3")
    assert code == EXIT_NOT_FOUND
    assert "differs in height" in out
    code, out, _ = run(capsys, "explain", "area", "width=1", "height=1")
    assert code == EXIT_OK
    assert "stored" in out
    code, out, _ = run(capsys, "evict", keys[0])
    assert code == EXIT_OK
    assert not cache().contains(keys[0])
    code, out, _ = run(capsys, "verify")
    assert code == EXIT_OK
    assert "0 corrupt" in out
    code, out, _ = run(capsys, "clear", "--yes")
    assert code == EXIT_OK
    assert list(cache().list()) == []


PERSISTENT = sorted(name for name in HARNESSES if name != "memory")


@pytest.mark.parametrize("kind", PERSISTENT)
def test_cli_subprocess_on_persistent_caches(kind, tmp_path, request) -> None:
    harness = HARNESSES[kind](tmp_path)
    harness.check_available()
    request.addfinalizer(harness.close)
    store = harness.cache()
    url = store.url
    assert url, f"{kind} caches must have a URL"
    with cache(store):
        keys = fill()

    def fleche_cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleche", *argv, "--cache", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = fleche_cli("ls", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    assert {r["key"] for r in json.loads(done.stdout)} == set(keys)
    done = fleche_cli("query", "area", "height=2")
    assert len(done.stdout.splitlines()) == 3
    done = fleche_cli("show", keys[1][:12])
    assert "height = 2" in done.stdout
    target = tmp_path / "copy-target"
    done = subprocess.run(
        [sys.executable, "-m", "fleche", "copy", url, f"file://{target}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode == EXIT_OK:
        assert "copied 6 of 6" in done.stdout
    done = fleche_cli("evict", keys[0][:12])
    assert done.returncode == EXIT_OK
    assert fleche_cli("show", keys[0]).returncode == EXIT_NOT_FOUND
    done = fleche_cli("clear")
    assert done.returncode != EXIT_OK  # refuses without --yes when not interactive
    assert fleche_cli("clear", "--yes").returncode == EXIT_OK
    assert json.loads(fleche_cli("ls", "--json").stdout) == []
