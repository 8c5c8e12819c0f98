"""Key management on the skeleton: validation, expand, shrink, and the memory/void storages."""

from __future__ import annotations

import pickle

import pytest

from fleche import AmbiguousDigestError, InvalidKeyError, digest
from fleche.storage import CallMemory, CallVoid, ValueMemory, ValueVoid


def keys_with_shared_prefix() -> list[str]:
    return ["abcdef" + "0" * 26, "abcdef" + "1" * 26, "abcd00" + "2" * 26, "f" * 32]


def test_expand_and_shrink() -> None:
    storage = ValueMemory()
    for key in keys_with_shared_prefix():
        storage.put(key, key)
    assert storage.expand("abcdef0") == "abcdef" + "0" * 26
    assert storage.expand("f") == "f" * 32
    with pytest.raises(AmbiguousDigestError) as info:
        storage.expand("abcd")
    assert len(info.value.candidates) == 3
    with pytest.raises(KeyError):
        storage.expand("0")
    assert storage.shrink("abcdef" + "0" * 26) == "abcdef0"
    assert storage.shrink("abcd00" + "2" * 26) == "abcd0"
    assert storage.shrink("f" * 32, "abcdef" + "1" * 26) == ["f", "abcdef1"]


def test_keys_are_validated() -> None:
    storage = ValueMemory()
    for bad in ["../etc/passwd", "ABC", "", "g" * 32, "a" * 33, "a/b", "a\0b", 12]:
        with pytest.raises(InvalidKeyError):
            storage.put(1, bad)
    with pytest.raises(InvalidKeyError):
        storage.expand("xyz")
    assert "not-a-key" not in storage


def test_values_save_load_and_overwrite() -> None:
    storage = ValueMemory()
    key = storage.save([1, 2])
    assert key == digest([1, 2])
    assert storage.load(key) == [1, 2]
    assert storage.contains(key)
    assert list(storage.list()) == [key]
    storage.evict(key)
    with pytest.raises(KeyError):
        storage.load(key)


def test_memory_copy_option_returns_copies() -> None:
    storage = ValueMemory(copy=True)
    key = storage.save([1])
    storage.load(key).append(2)
    assert storage.load(key) == [1]


def test_memory_storage_pickles_and_compares() -> None:
    storage = CallMemory()
    storage.put("x", "a" * 32)
    clone = pickle.loads(pickle.dumps(storage))
    assert clone == storage
    assert clone.get("a" * 32) == "x"


def test_void_storage_keeps_nothing() -> None:
    for storage in (ValueVoid(), CallVoid()):
        storage.put(1, "a" * 32)
        assert not storage.contains("a" * 32)
        with pytest.raises(KeyError):
            storage.get("a" * 32)
        assert list(storage.list()) == []
