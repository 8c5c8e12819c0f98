"""kill -9 loop: a child writing entries is killed at a random moment, again and again.

Count: 2 cycles per backend in CI, 500 under ``nox -s stress``; the child is forked from a fork
server that preloaded fleche (``common.start_writer``) and killed 20-400 ms after it opened its
cache, often in the middle of a 20 MB write. Pass rule: after every kill, every sampled stored entry
(8 per cycle) loads and equals what was written; zero wrong values, zero corrupt entries detected,
zero records without their result.
"""

from __future__ import annotations

import random
import time
import warnings

import pytest

from fleche.config import resolve_cache
from fleche.errors import FlecheWarning

from .common import count, expected, record, same, start_writer

pytestmark = pytest.mark.timeout(3600)  # full counts (nox -s stress) outlast the default 300 s

SAMPLE = 8


def verify(url: str, rng: random.Random) -> dict[str, int]:
    """Load a sample of what is stored and compare it with what was written."""
    store = resolve_cache(url)
    tallies = {"checked": 0, "wrong": 0, "corrupt": 0, "missing_result": 0}
    keys = list(store.list())
    for key in rng.sample(keys, min(SAMPLE, len(keys))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FlecheWarning)
            try:
                call = store.load(key)
                i = call.arguments["i"]
                value = call.result
            except KeyError:
                tallies["missing_result"] += 1
                continue
        tallies["corrupt"] += len(caught)
        tallies["checked"] += 1
        tallies["wrong"] += int(not same(value, expected(i)))
    return tallies


def test_kill9_never_leaves_a_torn_or_wrong_entry(persistent) -> None:
    kind, _, url = persistent
    rng = random.Random(9)
    cycles = count(ci=2, full=500)
    totals = {"cycles": 0, "checked": 0, "wrong": 0, "corrupt": 0, "missing_result": 0}
    for cycle in range(cycles):
        child = start_writer(url, cycle)
        time.sleep(rng.uniform(0.02, 0.4))
        child.kill()
        child.join(30)
        assert child.exitcode == -9, child.exitcode
        for name, value in verify(url, rng).items():
            totals[name] += value
        totals["cycles"] += 1
    record("kill9", kind, totals)
    assert totals["wrong"] == 0, totals
    assert totals["corrupt"] == 0, totals
    assert totals["missing_result"] == 0, totals
    assert totals["checked"] > 0, totals  # the child did store entries
