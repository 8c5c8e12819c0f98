"""A cache shared by a team on PostgreSQL: what one member computed, the others load.

Run it with ``python examples/team_cache.py``. It uses ``FLECHE_EXAMPLE_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); when that server cannot be reached (or
psycopg is not installed), it falls back to an SQLite file in a temporary directory, which shares
the same way between processes of one machine, and says which one it used.

Three "team members" are three processes pointed at the same URL: ana computes a few results, then
ben and chloe ask for the same ones at the same time and for one new one together. The new one is
computed once (the other waits for it, under the cache's lock), and every call records who
computed it. The example works in tables of its own (``prefix=``) and drops them at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleche import Environment, cache, fleche, meta, tags
from fleche.config import cache_from_url

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@fleche(version=1)
def align(sample: str, reference: str = "hg38") -> dict:
    """A slow, deterministic stand-in for aligning one sample."""
    time.sleep(0.5)
    score = sum(map(ord, sample + reference)) % 97
    return {"sample": sample, "score": score, "computed_by": os.environ.get("TEAM_MEMBER")}


def member(name: str, url: str, samples: list[str]) -> None:
    """One team member's process: everything it needs is the cache URL."""
    os.environ["TEAM_MEMBER"] = name
    cache(url)
    meta(Environment())  # records python, platform and host with every call computed here
    with tags(member=name):
        for sample in samples:
            start = time.perf_counter()
            result = align(sample)
            took = time.perf_counter() - start
            how = "computed" if result["computed_by"] == name else f"by {result['computed_by']}"
            print(
                f"  {name:<6} align({sample!r}) score={result['score']:<3} {how:<12} {took:5.2f} s"
            )


def reachable(url: str) -> str | None:
    """None when a cache at ``url`` opens and answers, else why not."""
    try:
        cache_from_url(url).contains("0" * 32)
    except Exception as e:  # no driver, no server, no permission: all mean "use the fallback"
        return f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
    return None


def drop_tables(url: str, prefix: str) -> None:
    """Remove this example's tables (a team would of course keep them)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.split("?", 1)[0])
    with engine.begin() as connection:
        names = [n for n in sa.inspect(connection).get_table_names() if n.startswith(prefix)]
        for name in names:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def run_member(name: str, url: str, *samples: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "member", name, url, *samples],
        stdout=subprocess.PIPE,
        text=True,
    )


def main() -> None:
    prefix = f"fleche_example_{os.getpid()}"
    server = os.environ.get("FLECHE_EXAMPLE_POSTGRES_URL", DEFAULT_POSTGRES)
    url = f"{server}{'&' if '?' in server else '?'}prefix={prefix}&connect_timeout=3"
    problem = reachable(url)
    scratch = tempfile.TemporaryDirectory()
    if problem is None:
        print(f"using PostgreSQL: {server}")
    else:
        url = f"sqlite:///{Path(scratch.name) / 'team.db'}"
        print(f"PostgreSQL is not reachable ({problem})")
        print(f"using SQLite instead: {url}")
    try:
        print("ana computes two samples:")
        ana = run_member("ana", url, "S1", "S2")
        print(ana.communicate()[0], end="")
        print("ben and chloe, at the same time, ask for S1, S2 and the new S3:")
        others = [run_member(name, url, "S1", "S2", "S3") for name in ("ben", "chloe")]
        for process in others:
            print(process.communicate()[0], end="")

        with cache(url):
            calls = align.query()
            print(f"stored calls: {calls.count()}")
            for call in calls.sorted(key=lambda c: c.arguments["sample"]):
                who = call.metadata["tags"]["member"]
                host = call.metadata["environment"]["host"]
                print(f"  {call.arguments['sample']}: computed by {who} on {host}")
            mine = align.query(metadata={"tags": {"member": "ana"}}).count()
            print(f"calls computed by ana: {mine}")
    finally:
        if problem is None:
            drop_tables(server, prefix)
        scratch.cleanup()


if __name__ == "__main__":
    if sys.argv[1:2] == ["member"]:
        member(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main()
