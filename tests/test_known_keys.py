"""A decorated function remembers the lookup keys of recent calls with small scalar arguments
(``wrapper._probe``), so a hit does not digest them again. A remembered key must be the key the
arguments digest to: values that compare equal but digest apart are never taken for one another,
and nothing large is kept alive."""

from __future__ import annotations

from typing import Any

import pytest

from fleche import cache, fleche
from fleche.call import Call
from fleche.wrapper import KNOWN_KEYS


def _kind(x: Any, y: Any = None) -> str:
    return f"{type(x).__name__} {type(y).__name__}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (1, True),  # equal and of the same hash, digested apart
        (0, False),
        (1, 1.0),
        (0.0, -0.0),
        ("1", b"1"),
        ((1,), (True,)),
        (frozenset({1}), frozenset({True})),
    ],
    ids=repr,
)
def test_equal_values_that_digest_apart_keep_their_own_keys(first: Any, second: Any) -> None:
    kind = fleche(_kind)
    with cache("memory://"):
        assert kind(first) == _kind(first)
        assert kind(second) == _kind(second)  # not the first call's result
        assert kind(first) == _kind(first)
        assert kind.digest(first) != kind.digest(second)


@pytest.mark.parametrize("args", [(3, "x"), (-(2**63), b"\x00"), (2**63 - 1, None), ("é" * 256, 0)])
def test_a_remembered_key_is_the_key_the_arguments_digest_to(args: tuple[Any, ...]) -> None:
    kind = fleche(_kind)
    expected = Call.from_call(_kind, *args).lookup_key()
    assert kind.digest(*args) == expected
    assert kind._known  # remembered
    assert kind.digest(*args) == expected  # from memory
    with cache("memory://") as store:
        kind(*args)
        assert store.contains(expected)


@pytest.mark.parametrize(
    "argument",
    ["x" * 257, b"x" * 257, 2**63, -(2**63) - 1, 1.5, True, [1], (1,), {"a": 1}],
    ids=lambda v: repr(v)[:12],
)
def test_large_and_other_arguments_are_not_remembered(argument: Any) -> None:
    kind = fleche(_kind)
    kind.digest(argument)
    assert kind._known == {}


def test_remembered_keys_are_bounded() -> None:
    square = fleche(lambda x: x * x)
    for i in range(KNOWN_KEYS + 10):
        square.digest(i)
        assert len(square._known) <= KNOWN_KEYS
    assert square.digest(5) == Call.from_call(square.__wrapped__, 5).lookup_key()


def test_each_function_remembers_its_own_keys() -> None:
    def one(x: int) -> int:
        return x

    def two(x: int) -> int:
        return -x

    first, second = fleche(one), fleche(two)
    with cache("memory://"):
        assert (first(3), second(3)) == (3, -3)
        assert first.digest(3) != second.digest(3)
