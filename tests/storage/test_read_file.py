"""Reading value files: small ones as bytes, large ones into one writable buffer (huge pages
where the kernel has them) that deserialised arrays share without a copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleche.storage import _files


@pytest.mark.parametrize("size", [0, 100, _files._SMALL_READ + 1, _files._HUGE_READ + 12345])
def test_read_file_returns_the_whole_file(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "value"
    path.write_bytes(data)
    read = _files.read_file(str(path))
    assert bytes(read) == data
    if size > _files._SMALL_READ:  # a buffer the loaded arrays can share, and write to
        view = memoryview(read)
        assert not view.readonly
        view[0] ^= 0xFF
        assert bytes(read[:1]) != data[:1]


def test_a_large_array_loads_writable_and_equal(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from fleche.storage.filesystem import ValueFiles

    storage = ValueFiles(tmp_path)
    array = np.arange(2_000_000, dtype=np.float64)  # 16 MB: past the huge-page threshold
    key = storage.save(array)
    loaded = storage.load(key)
    assert np.array_equal(loaded, array)
    loaded[0] = -1.0  # writable, and the stored entry is not touched by it
    assert storage.load(key)[0] == 0.0


# --- the checksum computed while a large value file is read -----------------------------------
KEY = "0123456789abcdef0123456789abcdef"


def big_frame_file(tmp_path: Path) -> tuple[object, Path, bytes]:
    np = pytest.importorskip("numpy")
    from fleche.storage.serialize import Codec

    value = np.arange(_files._HASH_WHILE_WRITING // 8 + 1000, dtype=np.float64)
    path = tmp_path / "value"
    data = b"".join(Codec().dumps(KEY, value))
    path.write_bytes(data)
    return value, path, data


@pytest.mark.parametrize("piece", [1, 7, 17, 20, 25, 26, 4096, 1 << 20])
def test_a_checker_fed_in_pieces_matches_the_frame_checksum(tmp_path: Path, piece: int) -> None:
    """Pieces that cut the header anywhere, even inside its checksum field."""
    from fleche.storage import serialize

    _, _, data = big_frame_file(tmp_path)
    data = data[: 3 * (1 << 20)]  # enough to cross the header and many pieces
    checker = serialize.FrameChecker(KEY)
    view = memoryview(data)
    for start in range(0, len(data), piece):
        checker.feed(view[start : start + piece])
    head = serialize._HEAD.size
    assert checker.nbytes == len(data)
    assert checker.intdigest() == serialize._checksum(KEY, view[: head - 8], [view[head:]])


def test_a_large_file_is_hashed_as_it_is_read(tmp_path: Path, monkeypatch) -> None:
    from fleche.storage import serialize

    value, path, data = big_frame_file(tmp_path)
    codec = serialize.Codec()
    checker = codec.checker(KEY)
    read = _files.read_file(str(path), checker)
    assert checker.nbytes == len(data)

    def no_second_pass(*args: object) -> int:
        raise AssertionError("the checksum was computed again")

    monkeypatch.setattr(serialize, "_checksum", no_second_pass)
    assert codec.loads(KEY, read, checker).tolist() == value.tolist()


def test_a_corrupt_large_file_fails_the_checksum_computed_while_read(tmp_path: Path) -> None:
    from fleche.errors import IntegrityError
    from fleche.storage.serialize import Codec

    _, path, data = big_frame_file(tmp_path)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    codec = Codec()
    checker = codec.checker(KEY)
    read = _files.read_file(str(path), checker)
    with pytest.raises(IntegrityError, match="checksum"):
        codec.loads(KEY, read, checker)


def test_a_checker_that_fails_on_its_thread_leaves_the_check_to_loads(tmp_path, monkeypatch):
    from fleche.errors import IntegrityError
    from fleche.storage import serialize

    value, path, data = big_frame_file(tmp_path)

    def broken(self: object, piece: memoryview) -> None:
        raise MemoryError("no room to hash")

    monkeypatch.setattr(serialize.FrameChecker, "feed", broken)
    codec = serialize.Codec()
    checker = codec.checker(KEY)
    read = _files.read_file(str(path), checker)
    assert checker.nbytes == -1  # spoiled
    assert codec.loads(KEY, read, checker).tolist() == value.tolist()  # checked by loads itself
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    path.write_bytes(bytes(flipped))
    checker = codec.checker(KEY)
    with pytest.raises(IntegrityError, match="checksum"):
        codec.loads(KEY, _files.read_file(str(path), checker), checker)


@pytest.mark.parametrize("scheme", ["file", "embedded"])
def test_a_corrupt_large_value_is_a_warned_miss_on_the_storages(tmp_path: Path, scheme) -> None:
    np = pytest.importorskip("numpy")
    from fleche.config import cache_from_url
    from fleche.errors import CorruptEntryWarning

    cache = cache_from_url(f"{scheme}://{tmp_path}")
    value = np.arange(_files._HASH_WHILE_WRITING // 8 + 1000, dtype=np.float64)
    key = cache.values.save(value)
    assert np.array_equal(cache.load_value(key), value)
    files = list((tmp_path / "values").rglob(str(key)))
    data = bytearray(files[0].read_bytes())
    data[len(data) // 3] ^= 0x01
    files[0].write_bytes(bytes(data))
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        cache.load_value(key)
