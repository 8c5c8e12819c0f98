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
