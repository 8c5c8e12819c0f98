"""The storage conformance suite: the same tests for every storage (SPEC section 5).

Use it from a test module that defines a ``harness`` fixture returning a
:class:`fleche.testing.Harness`::

    from fleche.testing.conformance import StorageConformance

    class TestMyBackend(StorageConformance):
        pass

The suite checks the store through its API and through raw access that bypasses it.
"""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ..call import NO_RESULT, DigestedCall, QueryCall
from ..digest import Digest, digest
from ..errors import AmbiguousDigestError, InvalidKeyError

__all__ = ["EDGE_VALUES", "StorageConformance"]

EDGE_VALUES: list[Any] = [
    b"",
    None,
    0,
    "",
    False,
    -1,
    1.5,
    "naïve ☃ 日本 \x00",
    b"\x00\xff" * 100,
    [1, [2, [3, {"k": (4, None)}]]],
    {"a": {"b": {"c": [b"", ""]}}},
    {1, 2, 3},
    (),
    [],
    {},
]


def _prefixed(prefix: str, n: int) -> list[Digest]:
    return [Digest(prefix + format(i, "x").rjust(32 - len(prefix), "0")) for i in range(n)]


def _record(name: str = "f", x: Any = 1, result: Any = 2, **metadata: Any) -> DigestedCall:
    return DigestedCall(
        name,
        {"x": digest(x)},
        {"tags": metadata} if metadata else {},
        "tests",
        None,
        None,
        digest(result),
    )


class StorageConformance:
    """Every storage passes these; a subclass (or conftest) provides the ``harness`` fixture."""

    # --- values -----------------------------------------------------------------------------------
    def test_value_round_trip(self, harness: Any) -> None:
        storage = harness.value_storage()
        key = storage.save({"a": [1, 2]})
        assert key == digest({"a": [1, 2]})
        assert storage.contains(key)
        assert storage.load(key) == {"a": [1, 2]}
        assert key in set(storage.list())
        assert key in harness.raw_keys(storage)

    @pytest.mark.parametrize("index", range(len(EDGE_VALUES)))
    def test_edge_values(self, harness: Any, index: int) -> None:
        storage = harness.value_storage()
        value = EDGE_VALUES[index]
        key = storage.save(value)
        loaded = storage.load(key)
        assert loaded == value
        assert type(loaded) is type(value)

    def test_large_value(self, harness: Any) -> None:
        storage = harness.value_storage()
        value = os.urandom(1 << 20) * 50  # 50 MiB
        key = storage.save(value)
        assert storage.load(key) == value

    def test_missing_keys(self, harness: Any) -> None:
        storage = harness.value_storage()
        missing = "0" * 32
        assert not storage.contains(missing)
        with pytest.raises(KeyError):
            storage.load(missing)
        with pytest.raises(KeyError):
            storage.evict(missing)

    def test_evict_removes_from_store(self, harness: Any) -> None:
        storage = harness.value_storage()
        keep, gone = storage.save("keep"), storage.save("gone")
        storage.evict(gone)
        assert not storage.contains(gone)
        assert gone not in harness.raw_keys(storage)
        assert keep in harness.raw_keys(storage)
        assert set(storage.list()) == {keep}

    def test_overwrite_replaces(self, harness: Any) -> None:
        storage = harness.value_storage()
        key = "ab" * 16
        storage.put("first", key)
        storage.put("second", key)
        assert storage.get(key) == "second"
        assert list(storage.list()) == [key]

    def test_invalid_keys_refused(self, harness: Any) -> None:
        storage = harness.value_storage()
        for bad in ["../../etc/passwd", "a/b", "a\0b", "ABCDEF" + "0" * 26, "g" * 32, "", "a" * 33]:
            with pytest.raises(InvalidKeyError):
                storage.put(1, bad)
            with pytest.raises(InvalidKeyError):
                storage.get(bad)
        assert harness.raw_keys(storage) == set()

    def test_expand_and_shrink(self, harness: Any) -> None:
        storage = harness.value_storage()
        keys = _prefixed("abcdef0123", 3) + _prefixed("f", 1) + _prefixed("abcdef01240", 1)
        for key in keys:
            storage.put(key, key)
        assert storage.expand(keys[3][:3]) == keys[3]
        assert storage.expand(keys[4][:11]) == keys[4]
        assert storage.expand(keys[0]) == keys[0]
        with pytest.raises(AmbiguousDigestError) as info:
            storage.expand("abcdef012")
        assert set(info.value.candidates) == set(keys[:3]) | {keys[4]}
        with pytest.raises(KeyError):
            storage.expand("0")
        assert storage.shrink(keys[3]) == "f"
        assert storage.shrink(keys[4]) == "abcdef0124"
        assert storage.shrink(keys[0], keys[1]) == [
            storage.shrink(keys[0]),
            storage.shrink(keys[1]),
        ]
        for key in keys:
            short = storage.shrink(key)
            assert storage.expand(short) == key
            if len(short) > 1:  # one character less must be ambiguous, or shrink was not minimal
                with pytest.raises(AmbiguousDigestError):
                    storage.expand(short[:-1])

    def test_pickle_and_equality(self, harness: Any) -> None:
        storage = harness.value_storage()
        key = storage.save("persisted")
        clone = pickle.loads(pickle.dumps(storage))
        assert clone == storage
        assert clone.load(key) == "persisted"

    def test_threads_hammering_same_and_different_keys(self, harness: Any) -> None:
        storage = harness.value_storage()
        shared = "5" * 32
        errors: list[BaseException] = []
        written = {f"value-{t}" for t in range(8)}

        def work(t: int) -> None:
            try:
                for i in range(25):
                    storage.put(f"value-{t}", shared)
                    assert storage.get(shared) in written
                    own = storage.save((t, i))
                    assert storage.load(own) == (t, i)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert storage.get(shared) in written
        assert len(set(storage.list())) == 1 + 8 * 25

    def test_model_based(self, harness: Any) -> None:
        run_state_machine_as_test(
            lambda: _StorageMachine(harness),  # type: ignore[arg-type]
            settings=settings(
                max_examples=15,
                stateful_step_count=15,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )

    # --- call records -------------------------------------------------------------------------
    def test_call_record_round_trip(self, harness: Any) -> None:
        storage = harness.call_storage()
        record = _record(project="alpha", nested={"deep": [1, 2]})
        key = storage.save(record)
        assert key == record.lookup_key()
        loaded = storage.load(key)
        assert loaded == record
        assert isinstance(loaded.result, Digest)
        assert key in harness.raw_keys(storage)

    def test_call_record_without_result(self, harness: Any) -> None:
        storage = harness.call_storage()
        record = _record()
        record.result = NO_RESULT
        key = storage.save(record, "c" * 32)
        assert storage.load(key).result is NO_RESULT

    def test_call_record_overwrite(self, harness: Any) -> None:
        storage = harness.call_storage()
        key = "d" * 32
        storage.save(_record(result=1), key)
        storage.save(_record(result=2), key)
        assert storage.load(key).result == digest(2)
        assert list(storage.list()) == [key]

    def test_call_query(self, harness: Any) -> None:
        storage = harness.call_storage()
        for x in range(5):
            storage.save(_record("f", x, x * 2, parity=x % 2))
        storage.save(_record("g", 1, 1))
        found = dict(storage.query(QueryCall("f")))
        assert len(found) == 5
        assert len(dict(storage.query(QueryCall("f", {"x": 3})))) == 1
        assert len(dict(storage.query(QueryCall("f", {"x": None})))) == 5
        assert len(dict(storage.query(QueryCall(arguments={"x": 1})))) == 2
        assert len(dict(storage.query(QueryCall("f", metadata={"tags": {"parity": 1}})))) == 2
        assert len(dict(storage.query(QueryCall("f", {"y": None})))) == 0
        assert dict(storage.query(QueryCall("h"))) == {}

    def test_call_evict_and_expand(self, harness: Any) -> None:
        storage = harness.call_storage()
        key = storage.save(_record())
        assert storage.expand(key[:6]) == key
        storage.evict(key)
        assert not storage.contains(key)
        assert key not in harness.raw_keys(storage)

    # --- the cache built from both ------------------------------------------------------------
    def test_cache_save_load(self, harness: Any) -> None:
        from ..call import Call

        cache = harness.cache()
        key = cache.save(Call("f", {"x": [1, 2]}, {"tags": {"a": 1}}, "tests", result={"r": None}))
        stored = cache.load(key)
        assert stored.result == {"r": None}
        assert dict(stored.arguments) == {"x": [1, 2]}
        assert stored.metadata["tags"] == {"a": 1}
        assert cache.expand(key[:8]) == key
        cache.evict(key)
        assert not cache.contains(key)
        assert cache.gc(grace=0) == 2  # the argument and the result are unreferenced now


class _StorageMachine(RuleBasedStateMachine):
    """Drives a storage and a plain dict side by side; they must always agree."""

    keys = Bundle("keys")

    def __init__(self, harness: Any) -> None:
        super().__init__()
        self.storage = harness.value_storage()
        self.model: dict[str, Any] = {}

    @initialize(target=keys, key=st.sampled_from(["0" * 32, "0" * 31 + "1", "f" * 32]))
    def first_key(self, key: str) -> str:
        return key

    @rule(target=keys, key=st.text("0123456789abcdef", min_size=32, max_size=32))
    def new_key(self, key: str) -> str:
        return key

    @rule(key=keys, value=st.one_of(st.none(), st.integers(), st.binary(max_size=64), st.text()))
    def put(self, key: str, value: Any) -> None:
        self.storage.put(value, key)
        self.model[key] = value

    @rule(key=keys)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.storage.get(key) == self.model[key]
        else:
            with pytest.raises(KeyError):
                self.storage.get(key)

    @rule(key=keys)
    def evict(self, key: str) -> None:
        if key in self.model:
            self.storage.evict(key)
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                self.storage.evict(key)

    @rule(key=keys, length=st.integers(1, 32))
    def expand(self, key: str, length: int) -> None:
        prefix = key[:length]
        matching = sorted(k for k in self.model if k.startswith(prefix))
        if not matching:
            with pytest.raises(KeyError):
                self.storage.expand(prefix)
        elif len(matching) > 1:
            with pytest.raises(AmbiguousDigestError):
                self.storage.expand(prefix)
        else:
            assert self.storage.expand(prefix) == matching[0]

    @invariant()
    def same_keys(self) -> None:
        assert set(self.storage.list()) == set(self.model)
