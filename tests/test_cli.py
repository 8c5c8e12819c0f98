"""The ``fleche`` command: in process on the memory cache, and as a subprocess on persistent caches."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleche import cache, digest, fleche
from fleche.cli import (
    EXIT_AMBIGUOUS,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    main,
)
from fleche.config import cache_from_url

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


def test_short_digests_grow_until_unique(capsys) -> None:
    fill()
    record = cache().load(fill()[0]).record
    twins = ["abcdef12" + "0" * 24, "abcdef13" + "0" * 24]
    for key in twins:
        cache()._store(key, record, [])
    code, out, _ = run(capsys, "ls")
    shorts = [line.split()[0] for line in out.splitlines()]
    assert code == EXIT_OK and len(shorts) == 8
    assert {"abcdef12", "abcdef13"} <= set(shorts)  # 8 characters: 7 would be ambiguous
    assert all(len(s) == 7 for s in shorts if not s.startswith("abcdef"))
    code, out, _ = run(capsys, "shrink", *twins)
    assert out.split() == ["abcdef12", "abcdef13"]
    code, _, err = run(capsys, "show", "abcdef1")
    assert code == EXIT_AMBIGUOUS
    assert twins[0] in err and twins[1] in err
    code, out, _ = run(capsys, "evict", "abcdef13")
    assert (code, out) == (EXIT_OK, "evicted abcdef13\n")


def test_gc_and_verify_in_process(capsys) -> None:
    keys = fill()
    code, out, _ = run(capsys, "gc")
    assert (code, out) == (EXIT_OK, "removed 0 unreferenced values\n")
    code, out, _ = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert code == EXIT_OK
    assert (report["checked_calls"], report["checked"]) == (6, 5)  # values 1, 2, 3, 4, 6
    assert report["corrupt"] == report["corrupt_calls"] == report["digest_mismatch"] == []
    assert len(keys) == 6


# --- as a subprocess, on every persistent cache -------------------------------------------------
PERSISTENT = sorted(name for name in HARNESSES if name != "memory")


class Stored:
    """A persistent cache of one kind holding the six calls of ``fill``, and a runner for it."""

    def __init__(self, store: Any, keys: list[str], tmp_path: Path) -> None:
        self.store, self.url, self.keys, self.tmp_path = store, store.url, keys, tmp_path
        self.harness: Any = None

    def __call__(self, *argv: str, cache_option: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--cache", self.url] if cache_option else []
        return subprocess.run(
            [sys.executable, "-m", "fleche", *argv, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=self.tmp_path,
        )

    def json(self, *argv: str) -> Any:
        done = self(*argv, "--json")
        assert done.returncode in (EXIT_OK, EXIT_NOT_FOUND, EXIT_CORRUPT), done.stderr
        return json.loads(done.stdout)


@pytest.fixture(params=PERSISTENT)
def stored(request, tmp_path) -> Iterator[Stored]:
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    store = harness.cache()
    assert store.url, f"{request.param} caches must have a URL"
    with cache(store):
        keys = fill()
    found = Stored(store, keys, tmp_path)
    found.harness = harness
    yield found
    harness.close()


def tty_run(argv: list[str], answer: str | None = None, cwd: Any = None) -> tuple[int, str, str]:
    """Run with stderr (and, given an ``answer``, stdin) on a terminal; returns code, out, tty."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv,
        stdin=slave if answer is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=cwd,
    )
    os.close(slave)
    if answer is not None:
        os.write(master, answer.encode())
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_subprocess_ls_query_show(stored) -> None:
    done = stored("ls")
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6
    for line in lines:
        short, signature = line.split(maxsplit=1)
        assert len(short) >= 7 and any(k.startswith(short) for k in stored.keys)
        assert signature == "tests.test_cli:area(width, height)"
    assert {r["key"] for r in stored.json("ls", "area")} == set(stored.keys)
    assert stored.json("ls", "nothing") == []
    done = stored("query", "area", "height=2")
    assert done.returncode == EXIT_OK
    assert len(done.stdout.splitlines()) == 3
    rows = stored.json("query", "tests.test_cli:area", "width=3", "height=2")
    assert [r["key"] for r in rows] == [area.digest(3, 2)]
    assert stored("query", "area", "width=9").stdout == "no stored call matches\n"
    done = stored("show", area.digest(3, 2)[:12])
    assert done.returncode == EXIT_OK
    assert "width = 3" in done.stdout and "height = 2" in done.stdout
    assert "result    6" in done.stdout
    assert "function  tests.test_cli:area" in done.stdout
    shown = stored.json("show", area.digest(3, 2)[:12])
    assert shown["result"] == "6" and shown["arguments"] == {"width": "3", "height": "2"}
    assert "created" in shown["metadata"]["fleche"]


def test_subprocess_explain_expand_shrink_stats(stored) -> None:
    done = stored("explain", "area", "width=1", "height=3")
    assert done.returncode == EXIT_NOT_FOUND
    assert done.stdout.splitlines()[0] == "not stored; nearest stored calls:"
    assert "differs in height" in done.stdout
    done = stored("explain", "area", "width=2", "height=2")
    assert done.returncode == EXIT_OK
    assert done.stdout == f"stored: {area.digest(2, 2)[:7]} (a call would hit)\n"
    assert stored("explain", "nothing", "x=1").stdout == "no stored call of nothing\n"
    key = stored.keys[2]
    assert stored("expand", key[:9], stored.keys[3][:9]).stdout.split() == stored.keys[2:4]
    assert stored("expand", "--values", digest(6)[:9]).stdout.strip() == digest(6)
    short = stored("shrink", key).stdout.strip()
    assert len(short) >= 7 and key.startswith(short)
    stats = stored.json("stats")
    assert (stats["entries"], stats["values"]) == (6, 5)
    assert stats["bytes"] is None or stats["bytes"] > 0
    done = stored("stats")
    assert "entries: 6" in done.stdout.splitlines()


def test_subprocess_evict_and_gc(stored) -> None:
    done = stored("evict", stored.keys[0][:10], stored.keys[1][:10])
    assert done.returncode == EXIT_OK
    assert done.stdout.split() == ["evicted", stored.keys[0][:7], "evicted", stored.keys[1][:7]]
    assert not stored.store.contains(stored.keys[0])
    assert stored("show", stored.keys[0]).returncode == EXIT_NOT_FOUND
    assert stored("evict", stored.keys[0]).returncode == EXIT_NOT_FOUND
    done = stored("gc")  # values written just now are within the grace period: kept
    assert (done.returncode, done.stdout) == (EXIT_OK, "removed 0 unreferenced values\n")
    assert stored.json("stats")["entries"] == 4


def test_subprocess_verify_reports_and_removes_corrupt_values(stored, monkeypatch) -> None:
    with monkeypatch.context() as signing:  # values signed with a key the checker does not have
        signing.setenv("FLECHE_SECRET_KEY", "ab" * 16)
        with cache(cache_from_url(stored.url)):
            area(10, 10)
    bad = sorted([digest(10), digest(100)])
    done = stored("verify")
    assert done.returncode == EXIT_CORRUPT, done.stderr
    first = done.stdout.splitlines()
    assert (
        first[0]
        == "checked 7 calls and 7 values: 2 corrupt (removed), 0 whose digest changed on reload"
    )
    assert sorted(line.split()[-1] for line in first[1:]) == bad
    assert "Traceback" not in done.stderr
    again = stored.json("verify")
    assert (again["checked"], again["corrupt"]) == (5, [])
    assert stored("verify").returncode == EXIT_OK
    assert stored.store.contains(area.digest(10, 10))  # the record stays; its call computes again


def test_subprocess_verify_keep_only_reports(stored, monkeypatch) -> None:
    with monkeypatch.context() as signing:
        signing.setenv("FLECHE_SECRET_KEY", "cd" * 16)
        with cache(cache_from_url(stored.url)):
            area(10, 10)
    for _ in range(2):  # kept: the second run finds them again
        report = stored.json("verify", "--keep")
        assert sorted(report["corrupt"]) == sorted([digest(10), digest(100)])
        assert report["removed"] is False
    assert stored("verify", "--keep").stdout.startswith(
        "checked 7 calls and 7 values: 2 corrupt (kept)"
    )


def test_subprocess_verify_finds_corrupt_call_records(tmp_path) -> None:
    store = HARNESSES["filesystem"](tmp_path).cache()
    with cache(store):
        keys = fill()
    path = Path(store.calls._path(keys[0]))
    path.write_bytes(path.read_bytes()[:-3] + b"!!!")
    done = Stored(store, keys, tmp_path)("verify")
    assert done.returncode == EXIT_CORRUPT
    assert f"corrupt call {keys[0]}" in done.stdout.splitlines()
    assert not store.contains(keys[0])


def test_subprocess_copy_with_a_progress_bar(stored) -> None:
    target = f"sqlite:///{stored.tmp_path}/copied.db"
    argv = [sys.executable, "-m", "fleche", "copy", stored.url, target]
    code, out, tty = tty_run(argv, cwd=stored.tmp_path)
    assert (code, out) == (EXIT_OK, "copied 6 of 6 calls\n")
    assert "copy [" in tty and "] 6/6" in tty  # the bar, drawn on the terminal
    assert "#" * 30 in tty
    copied = cache_from_url(target)
    assert sorted(copied.list()) == sorted(stored.keys)
    with cache(copied):
        assert area(3, 2) == 6 and copied.hits == 1
    code, out, _ = tty_run(argv, cwd=stored.tmp_path)
    assert out == "copied 0 of 6 calls\n"  # already there
    done = stored("copy", stored.url, target, "--overwrite", "--json", cache_option=False)
    assert json.loads(done.stdout) == {"copied": 6, "seen": 6}
    assert "copy [" not in done.stderr  # no bar when stderr is not a terminal


def test_subprocess_copy_into_every_kind(stored) -> None:
    between = f"file://{stored.tmp_path}/between"
    done = stored("copy", stored.url, between, cache_option=False)
    assert done.stdout == "copied 6 of 6 calls\n"
    target = stored.harness.cache()  # a fresh cache of the same kind: files into it
    done = stored("copy", between, target.url, cache_option=False)
    assert (done.returncode, done.stdout) == (EXIT_OK, "copied 6 of 6 calls\n")
    assert sorted(target.list()) == sorted(stored.keys)
    assert sorted(target.load(k).result for k in stored.keys) == [1, 2, 2, 3, 4, 6]


def test_subprocess_clear_asks_first(stored) -> None:
    done = stored("clear")
    assert done.returncode == EXIT_USAGE
    assert done.stderr == "fleche: clear needs --yes when not run interactively\n"
    argv = [sys.executable, "-m", "fleche", "clear", "--cache", stored.url]
    code, out, _ = tty_run(argv, answer="n\n", cwd=stored.tmp_path)
    assert code == EXIT_OK
    assert out.startswith(f"remove all 6 stored calls from {stored.url}? [y/N] ")
    assert out.endswith("nothing removed\n")
    assert sum(1 for _ in stored.store.list()) == 6
    code, out, _ = tty_run(argv, answer="y\n", cwd=stored.tmp_path)
    assert code == EXIT_OK and out.endswith("removed 6 calls and 5 values\n")
    assert list(stored.store.list()) == []
    with cache(stored.store):
        fill()
    done = stored("clear", "--yes")
    assert (done.returncode, done.stdout) == (EXIT_OK, "removed 6 calls and 5 values\n")
    assert stored.json("ls") == []
    assert list(stored.store.value_keys()) == []


def test_subprocess_errors_are_one_line(stored) -> None:
    for argv, code in [
        (["show", "0" * 32], EXIT_NOT_FOUND),
        (["show", "zz"], EXIT_ERROR),
        (["expand", "--values", "0" * 32], EXIT_NOT_FOUND),
        (["query", "area", "width"], EXIT_ERROR),
    ]:
        done = stored(*argv)
        assert done.returncode == code, (argv, done.stderr)
        assert done.stderr.startswith("fleche: ") and done.stderr.count("\n") == 1
        assert done.stdout == ""
    done = subprocess.run(
        [sys.executable, "-m", "fleche", "ls", "--cache", "no-such-name"],
        capture_output=True, text=True, timeout=60, check=False, cwd=stored.tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR
    assert done.stderr.count("\n") == 1 and "no-such-name" in done.stderr
    done = stored("frobnicate", cache_option=False)
    assert done.returncode == EXIT_USAGE


def test_subprocess_finds_the_cache_by_name_config_or_environment(tmp_path) -> None:
    store = HARNESSES["sqlite"](tmp_path).cache()
    with cache(store):
        keys = fill()
    (tmp_path / "fleche.toml").write_text(
        f'root = true\n[default]\ncache = "team"\n[team]\nurl = "{store.url}"\n'
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("FLECHE_CACHE", None)

    def ls(*argv: str, **extra: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-m", "fleche", "ls", "--json", *argv],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
            env={**env, **extra},
        )  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        return {row["key"] for row in json.loads(done.stdout)}

    assert ls("--cache", "team") == set(keys)  # a configured name
    assert ls() == set(keys)  # the configured default
    assert ls(FLECHE_CACHE="memory") == set()  # the environment overrides it
    assert ls("--cache", store.url, FLECHE_CACHE="memory") == set(keys)  # the option wins


def test_query_values_are_literals_digest_prefixes_or_text(capsys) -> None:
    fill()
    code, out, _ = run(capsys, "query", "area", f"width=:{digest(2)[:8]}")
    assert code == EXIT_OK and len(out.splitlines()) == 2  # a stored value by its digest prefix
    code, out, _ = run(capsys, "query", "area", "width=2", "height=1")
    assert out.split()[0] == area.digest(2, 1)[:7]
    code, out, _ = run(capsys, "query", "area", "width=two")  # not a literal: the text 'two'
    assert (code, out) == (EXIT_OK, "no stored call matches\n")
    code, _, err = run(capsys, "query", "area", f"width=:{'0' * 8}")
    assert code == EXIT_NOT_FOUND and err.startswith("fleche: not found")


def test_every_command_speaks_json(capsys) -> None:
    keys = fill()
    for argv, check in [
        (["ls"], lambda d: len(d) == 6),
        (["query", "area", "width=1"], lambda d: len(d) == 2),
        (["show", keys[0]], lambda d: d["key"] == keys[0]),
        (["explain", "area", "width=1", "height=1"], lambda d: d["stored"] is True),
        (["expand", keys[1][:9]], lambda d: d == [keys[1]]),
        (["shrink", keys[1]], lambda d: keys[1].startswith(d[0])),
        (["stats"], lambda d: d["entries"] == 6),
        (["verify"], lambda d: d["corrupt"] == []),
        (["gc"], lambda d: d == {"removed": 0}),
        (["evict", keys[2]], lambda d: d == [keys[2]]),
        (["clear", "--yes"], lambda d: d["calls"] == 5),
    ]:
        code, out, _ = run(capsys, *argv, "--json")
        assert code == EXIT_OK, argv
        assert check(json.loads(out)), (argv, out)


def test_exit_codes_are_documented_in_the_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleche", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == EXIT_OK
    epilog = " ".join(done.stdout.split("Exit codes:")[1].split())  # help wraps lines
    documented = dict(re.findall(r"(\d) ([a-z ]+?)[,.]", epilog))
    assert documented == {
        str(EXIT_OK): "ok",
        str(EXIT_ERROR): "error",
        str(EXIT_USAGE): "usage",
        str(EXIT_NOT_FOUND): "not found",
        str(EXIT_AMBIGUOUS): "ambiguous prefix",
        str(EXIT_CORRUPT): "corrupt",
    }


def test_subprocess_on_the_memory_cache(tmp_path) -> None:
    """A memory cache lives in one process: a fresh ``fleche`` process sees it empty."""

    def fleche_cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleche", *argv, "--cache", "memory://"],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )  # fmt: skip

    assert fleche_cli("ls").stdout == ""
    assert fleche_cli("query", "area", "width=1").stdout == "no stored call matches\n"
    assert fleche_cli("stats").stdout.splitlines()[:2] == ["entries: 0", "values: 0"]
    assert fleche_cli("gc").stdout == "removed 0 unreferenced values\n"
    done = fleche_cli("verify")
    assert done.stdout.startswith("checked 0 calls and 0 values: 0 corrupt")
    assert fleche_cli("clear", "--yes").stdout == "removed 0 calls and 0 values\n"
    done = fleche_cli("show", "abc")
    assert (done.returncode, done.stderr) == (EXIT_NOT_FOUND, "fleche: not found: abc\n")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test",
        "mysql+pymysql://root:hunter2@127.0.0.1:1/test",
        "redis://:hunter2@127.0.0.1:1/0",
    ],
    ids=["postgresql", "mysql", "redis"],
)
def test_an_unreachable_server_is_one_line_without_the_password(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleche", "ls", "--cache", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_ERROR
    assert done.stderr.startswith("fleche: the storage failed: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
