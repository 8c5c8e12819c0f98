"""Corruption: bit flips, truncation and deletion of stored files, rows and Redis keys.

Count: 12 mutations per backend in CI (each of {record, value} x {flip, truncate, delete} on a
small and on a large value: 64 KiB, a file of its own in the embedded default), 240 under stress,
at random offsets. Pass rule: the next call is a miss that recomputes the right value, never a
wrong value and never an exception; a flipped or truncated entry is reported with a
``CorruptEntryWarning``, as is a deleted value whose record remains where the store can tell
(the embedded default's value files); a deleted record is a plain miss (nothing is left to check).
The call after that is a hit on the repaired entry, without a warning.
"""

from __future__ import annotations

import random
import warnings

import pytest

import fleche
from fleche import fleche as cached
from fleche.digest import digest
from fleche.errors import CorruptEntryWarning, FlecheWarning

from .common import count, record
from .raw import flip, record_unit, truncate, value_unit

pytestmark = pytest.mark.timeout(1200)  # full counts (nox -s stress) outlast the default 300 s

TARGETS = ("record", "value")
MUTATIONS = ("flip", "truncate", "delete")
runs: list[int] = []


def value_of(i: int) -> bytes:
    """Entry ``i``: 200 bytes, or 64 KiB (over the embedded default's 32 KiB inline threshold)."""
    size = 64 * 1024 if (i // 6) % 2 else 200
    return bytes([i % 251]) * size + i.to_bytes(4, "big")


@cached
def entry(i: int) -> bytes:
    runs.append(i)
    return value_of(i)


def must_warn(kind: str, target: str, mutation: str, i: int) -> bool:
    if mutation != "delete":
        return True
    return kind == "embedded" and target == "value" and len(value_of(i)) > 32 * 1024


def test_every_mutation_is_a_warned_miss_never_a_wrong_value(persistent) -> None:
    kind, harness, url = persistent
    rng = random.Random(f"corruption-{kind}")
    trials = count(ci=12, full=240)
    tallies = {"mutations": 0, "warned": 0, "misses": 0, "wrong": 0, "healed": 0}
    store = fleche.config.resolve_cache(url)
    with fleche.cache(store):
        for i in range(trials):
            target, mutation = TARGETS[i % 2], MUTATIONS[(i // 2) % 3]
            assert entry(i) == value_of(i)
            key = entry.digest(i)
            unit = (
                record_unit(kind, harness, store, key)
                if target == "record"
                else value_unit(kind, harness, store, digest(value_of(i)))
            )
            if mutation == "delete":
                unit.delete()
            else:
                mutate = flip if mutation == "flip" else truncate
                unit.write(mutate(unit.read(), rng))
            tallies["mutations"] += 1
            before = len(runs)
            if must_warn(kind, target, mutation, i):
                with pytest.warns(CorruptEntryWarning):
                    value = entry(i)
                tallies["warned"] += 1
            else:
                value = entry(i)
            tallies["misses"] += int(len(runs) == before + 1)
            tallies["wrong"] += int(value != value_of(i))
            assert value == value_of(i), (target, mutation, i)
            assert len(runs) == before + 1, f"{target} {mutation} of entry {i} was not a miss"
            with warnings.catch_warnings():
                warnings.simplefilter("error", FlecheWarning)
                assert entry(i) == value_of(i)
            assert len(runs) == before + 1, f"entry {i} was not repaired"
            tallies["healed"] += 1
    record("corruption", kind, tallies)
    assert tallies["wrong"] == 0 and tallies["misses"] == trials == tallies["healed"]
