"""Every script in examples/ runs to completion and prints what its docs show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_quickstart_serves_the_second_call_and_the_second_process_from_the_cache(
    tmp_path: Path,
) -> None:
    script = EXAMPLES[[p.name for p in EXAMPLES].index("quickstart.py")]
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    assert "computed" in lines["first call"]
    assert "from cache" in lines["second call"]
    assert "computed" in lines["new argument"]
    assert "from cache" in lines["second process"]  # read from the persistent directory
    assert "second process sees 1 stored call(s)" in out
