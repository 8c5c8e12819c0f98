"""What the joint-writer tests of every backend share: functions whose misses store values of
each kind, and a value that can be digested but not serialised."""

from __future__ import annotations

from typing import Any

import pytest

import fleche
from fleche.errors import UnstorableResultWarning


class Unpicklable:
    """Digested by a hook, refused by pickle and cloudpickle."""

    def __digest__(self) -> str:
        return "always the same"

    def __reduce__(self) -> Any:
        raise TypeError("not picklable")


@fleche.fleche
def mixed(n: int, text: str, blob: bytes) -> dict[str, Any]:
    return {"n": n, "text": text, "size": len(blob)}


@fleche.fleche
def takes(thing: Any, n: int) -> int:
    return n


@fleche.fleche
def gives(n: int) -> Any:
    return Unpicklable()


def check_an_unstorable_argument_is_kept_by_digest(store: Any) -> None:
    """A miss whose argument cannot be serialised stores the rest; its record names the
    argument by digest, and the next call hits."""
    with fleche.cache(store):
        assert takes(Unpicklable(), 4) == 4
        digests = takes.query().only().record.arguments
        assert store.load_value(digests["n"]) == 4
        with pytest.raises(KeyError):
            store.load_value(digests["thing"])
        assert takes(Unpicklable(), 4) == 4 and store.hits == 1


def check_an_unstorable_result_leaves_nothing(store: Any) -> None:
    """A miss whose result can be digested but not serialised is reported and writes nothing,
    not even its argument."""
    with fleche.cache(store), pytest.warns(UnstorableResultWarning):
        assert isinstance(gives(1), Unpicklable)
    assert len(store.values) == 0 and len(store.calls) == 0
