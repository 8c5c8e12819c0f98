"""A miss on a memory cache is written by the storages' joint writer (its values and record put
straight into the dicts, under the key's one WRITE context): it must store what the generic
path stores, keep its rules (with ``copy``, an argument that cannot be copied is kept by digest
only, a result that cannot be is reported and leaves nothing behind) and never bypass a cache
or storage that changes how values or records are stored."""

from __future__ import annotations

from typing import Any

import fleche
from fleche import Cache
from fleche.storage.memory import CallMemory, ValueMemory

from .writer_cases import (
    check_an_unstorable_argument_is_kept_by_digest,
    check_an_unstorable_result_leaves_nothing,
    mixed,
)


class Generic(Cache):
    """A cache that stores through ``_store_value``/``_store_record``, one call at a time."""

    def __init__(self, copy: bool = False) -> None:
        super().__init__(ValueMemory(copy=copy), CallMemory(copy=copy))
        self.stored: list[str] = []

    def _store_value(self, key: Any, value: Any) -> None:
        self.stored.append(key)
        super()._store_value(key, value)


class CountingValues(ValueMemory):
    """Values whose writes are counted: a storage that changes how values are stored."""

    puts = 0

    def _put(self, key: Any, value: Any) -> None:
        CountingValues.puts += 1
        super()._put(key, value)


def test_only_plain_memory_storages_take_the_joint_path() -> None:
    assert Cache(ValueMemory(), CallMemory())._write_call is not None
    assert Generic()._write_call is None
    assert Cache(CountingValues(), CallMemory())._write_call is None
    CountingValues.puts = 0
    with fleche.cache(Cache(CountingValues(), CallMemory())):
        mixed(1, "x", b"")
    assert CountingValues.puts == 4  # three arguments and the result, through its own _put


def test_the_joint_writer_stores_what_the_generic_path_stores() -> None:
    calls = [(1, "x", b""), (2, "x", b"y" * 5_000), (1, "x", b"")]
    for copy in (False, True):
        joint, generic = Cache(ValueMemory(copy=copy), CallMemory(copy=copy)), Generic(copy)
        for store in (joint, generic):
            with fleche.cache(store):
                for args in calls:
                    assert mixed(*args) == {"n": args[0], "text": args[1], "size": len(args[2])}
        assert generic.stored  # the generic path really ran there
        assert joint.values._data == generic.values._data
        assert joint.calls._data.keys() == generic.calls._data.keys()
        for key, record in joint.calls._data.items():
            other = generic.calls._data[key]
            assert (record.name, record.arguments, record.result) == (
                other.name, other.arguments, other.result,
            )  # fmt: skip
        with fleche.cache(joint):
            assert mixed.query(n=2).only().arguments["blob"] == b"y" * 5_000
            assert (
                mixed(2, "x", b"y" * 5_000)["size"] == 5_000 and joint.hits == 2
            )  # the third call above, and this one


def test_values_are_kept_live_or_copied_as_the_storage_says() -> None:
    result: list[int] = []

    @fleche.fleche
    def gives(n: int) -> list[int]:
        result.append(n)
        return result

    live, copied = (
        Cache(ValueMemory(), CallMemory()),
        Cache(ValueMemory(copy=True), CallMemory(copy=True)),
    )
    with fleche.cache(live):
        assert gives(1) is result
        assert (
            live.load_value(gives.digest(1) and live._load_record(gives.digest(1)).result) is result
        )
    with fleche.cache(copied):
        assert gives(2) is result
        stored = copied.load_value(copied._load_record(gives.digest(2)).result)
        assert stored == [1, 2] and stored is not result


def test_an_argument_that_cannot_be_copied_is_kept_by_digest() -> None:
    check_an_unstorable_argument_is_kept_by_digest(
        Cache(ValueMemory(copy=True), CallMemory(copy=True))
    )


def test_a_result_that_cannot_be_copied_leaves_nothing() -> None:
    check_an_unstorable_result_leaves_nothing(Cache(ValueMemory(copy=True), CallMemory(copy=True)))
