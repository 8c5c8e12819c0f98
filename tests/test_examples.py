"""Every script in examples/ runs to completion, and the examples page shows each one's output.

Run this file as a script (``python -m tests.test_examples --write-docs``) to run every example and
write its output into the pages of ``docs/``, between the ``output`` markers that name it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.backends import service_unavailable

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DOCS = ROOT / "docs"
PAGE = DOCS / "examples.md"
# a PostgreSQL URL no server answers (connection refused at once): team_cache.py falls back to SQLite
UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody@127.0.0.1:9/none"
_OUTPUT = re.compile(
    r"(<!-- output: (?P<name>[\w.]+) -->\n```text\n)(?P<body>.*?)(```\n<!-- end output -->)", re.S
)


def run(script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, **env},
    )


def example(name: str) -> Path:
    return EXAMPLES[[p.name for p in EXAMPLES].index(name)]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    done = run(script, tmp_path, FLECHE_EXAMPLE_POSTGRES_URL=UNREACHABLE_POSTGRES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_every_example_has_a_section_with_its_output_in_the_docs() -> None:
    page = PAGE.read_text(encoding="utf-8")
    outputs = {m["name"]: m["body"] for m in _OUTPUT.finditer(page)}
    for script in EXAMPLES:
        assert f'--8<-- "{script.name}"' in page, f"{script.name} has no section in {PAGE.name}"
        assert outputs.get(script.name, "").strip(), f"{script.name} has no output in {PAGE.name}"


def test_every_output_shown_in_the_docs_is_of_an_existing_example() -> None:
    names = {p.name for p in EXAMPLES}
    for page in DOCS.rglob("*.md"):
        for match in _OUTPUT.finditer(page.read_text(encoding="utf-8")):
            assert match["name"] in names, f"{page.name} shows the output of {match['name']}"
            assert match["body"].strip(), f"{page.name} shows no output for {match['name']}"


def test_the_command_line_page_shows_the_tour_as_it_runs() -> None:
    """Each shell session of cli.md is part of the recorded output of cli_tour.py."""
    tour = next(m["body"] for m in _OUTPUT.finditer(PAGE.read_text(encoding="utf-8"))
                if m["name"] == "cli_tour.py")  # fmt: skip
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    sessions = re.findall(r"```console\n(\$ fleche .*?)```", page, re.S)
    assert len(sessions) >= 10
    for session in sessions:
        assert _masked(session) in _masked(tour), (
            f"cli.md shows output the tour does not:\n{session}"
        )


def _masked(text: str) -> str:
    """Timestamps differ on every run."""
    return re.sub(r"\d{10}\.\d+", "T", text)


def test_quickstart_serves_the_second_call_and_the_second_process_from_the_cache(
    tmp_path: Path,
) -> None:
    out = run(example("quickstart.py"), tmp_path).stdout
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    assert "computed" in lines["first call"]
    assert "from cache" in lines["second call"]
    assert "computed" in lines["new argument"]
    assert "from cache" in lines["second process"]  # read from the persistent directory
    assert "second process sees 1 stored call(s)" in out


def check_team_output(out: str) -> None:
    """ben and chloe load ana's two results; the new one is computed by exactly one of them."""
    lines = [line.split() for line in out.splitlines()]
    for who in ("ben", "chloe"):
        for sample in ("'S1'", "'S2'"):
            assert [who, f"align({sample})"] in [line[:2] for line in lines], out
            line = next(line for line in lines if line[:2] == [who, f"align({sample})"])
            assert line[3:5] == ["by", "ana"], out
    s3 = [line for line in lines if line[1:2] == ["align('S3')"]]
    assert sorted(line[0] for line in s3) == ["ben", "chloe"], out
    assert sum(line[3] == "computed" for line in s3) == 1, out
    assert "stored calls: 3" in out
    assert "calls computed by ana: 2" in out


def test_team_cache_falls_back_to_sqlite_in_a_temporary_directory(tmp_path: Path) -> None:
    done = run(example("team_cache.py"), tmp_path, FLECHE_EXAMPLE_POSTGRES_URL=UNREACHABLE_POSTGRES)
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL is not reachable" in done.stdout
    used = re.search(r"using SQLite instead: sqlite:///(\S+)", done.stdout)
    assert used is not None, done.stdout
    database = Path(used[1])
    assert database.parent.parent == Path(tempfile.gettempdir())
    assert not database.parent.exists()  # the scratch directory is removed at the end
    assert not list(tmp_path.iterdir())  # nothing written to the working directory
    check_team_output(done.stdout)


def test_team_cache_on_postgresql(tmp_path: Path) -> None:
    url = os.environ.get("FLECHE_TEST_POSTGRES_URL")
    if not url:
        service_unavailable("PostgreSQL", "FLECHE_TEST_POSTGRES_URL is not set")
    done = run(example("team_cache.py"), tmp_path, FLECHE_EXAMPLE_POSTGRES_URL=str(url))
    assert done.returncode == 0, done.stderr
    if "using PostgreSQL" not in done.stdout:
        service_unavailable("PostgreSQL", done.stdout.splitlines()[0])
    check_team_output(done.stdout)


def write_docs() -> None:
    """Run every example (in a scratch directory) and write its output into the pages that show it."""
    outputs = {}
    for script in EXAMPLES:
        with tempfile.TemporaryDirectory() as scratch:
            done = run(script, Path(scratch))
        if done.returncode:
            raise SystemExit(f"{script.name} failed:\n{done.stderr}")
        outputs[script.name] = done.stdout
        print(f"ran {script.name}")

    def replace(match: re.Match[str]) -> str:
        return match[1] + outputs[match["name"]].rstrip() + "\n" + match[4]

    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        if _OUTPUT.search(text):
            page.write_text(_OUTPUT.sub(replace, text), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        raise SystemExit("usage: python -m tests.test_examples --write-docs")
    write_docs()
