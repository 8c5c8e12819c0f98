"""Value frames written with their checksum computed on a helper thread (``_files.write_frame``).

A large unsigned frame is hashed while its bytes are written and its header goes in last; the file
must be byte for byte the frame ``Codec.dumps`` gives, load back, and fail its checksum if the
header were left unwritten. Signed and small frames keep the plain path.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from fleche.errors import IntegrityError, SaveError
from fleche.storage import _files, serialize
from fleche.storage._files import FileOps, read_file, write_frame
from fleche.storage.serialize import Codec

KEY = "0123456789abcdef0123456789abcdef"
SECRET = "ab" * 16


def big_array() -> np.ndarray:
    return np.arange(3 * 1024 * 1024, dtype=np.float64)  # 24 MiB: over the threshold


def helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fleche-checksum"]


def test_a_large_frame_written_while_hashing_is_the_frame_dumps_gives(tmp_path) -> None:
    codec, value = Codec(), big_array()
    frame = codec.frame(KEY, value)
    assert frame.nbytes >= _files._HASH_WHILE_WRITING and not frame.signed
    path = str(tmp_path / "v")
    write_frame(path, frame)
    data = read_file(path)
    assert bytes(data) == b"".join(codec.dumps(KEY, value))
    assert np.array_equal(codec.loads(KEY, data), value)
    assert helper_threads() == []


def test_the_header_is_written_after_the_body(tmp_path) -> None:
    """The last file operation of the threaded path is the completed header at offset 0."""
    codec, value = Codec(), big_array()
    calls: list[tuple[str, int]] = []

    class Spy(FileOps):
        def write(self, fd: int, data: bytes | memoryview) -> None:
            calls.append(("write", memoryview(data).nbytes))
            super().write(fd, data)

        def write_at(self, fd: int, data: bytes, offset: int) -> None:
            calls.append(("write_at", offset))
            super().write_at(fd, data, offset)

    write_frame(str(tmp_path / "v"), codec.frame(KEY, value), ops=Spy())
    assert calls[-1] == ("write_at", 0)
    assert [name for name, _ in calls[:-1]] == ["write"] * (len(calls) - 1)


def test_a_frame_whose_header_was_never_completed_fails_its_checksum(tmp_path) -> None:
    """What a crash between the body and the header would leave (were it renamed into place)."""
    codec, value = Codec(), big_array()
    frame = codec.frame(KEY, value)
    path = str(tmp_path / "v")
    _files.write_atomic(path, [frame.head, *frame.body])
    with pytest.raises(IntegrityError, match="checksum"):
        codec.loads(KEY, read_file(path))


@pytest.mark.parametrize("case", ["signed", "small"])
def test_signed_and_small_frames_take_the_plain_path(case, tmp_path) -> None:
    codec = Codec(secret_key=SECRET) if case == "signed" else Codec()
    value = big_array() if case == "signed" else np.arange(10)
    used: list[str] = []

    class Spy(FileOps):
        def write_at(self, fd: int, data: bytes, offset: int) -> None:
            used.append("write_at")
            super().write_at(fd, data, offset)

    path = str(tmp_path / "v")
    write_frame(path, codec.frame(KEY, value), ops=Spy())
    assert used == []
    assert np.array_equal(codec.loads(KEY, read_file(path)), value)


def test_a_signed_frame_refuses_a_background_checksum() -> None:
    frame = Codec(secret_key=SECRET).frame(KEY, big_array())
    with pytest.raises(ValueError, match="signed"):
        frame.checksum_in_background()


def test_a_failed_write_leaves_no_file_and_no_thread(tmp_path) -> None:
    class Full(FileOps):
        def write(self, fd: int, data: bytes | memoryview) -> None:
            raise OSError(28, os.strerror(28))

    path = str(tmp_path / "v")
    with pytest.raises(SaveError):
        write_frame(path, Codec().frame(KEY, big_array()), ops=Full())
    assert os.listdir(tmp_path) == []
    assert helper_threads() == []


def test_a_checksum_that_fails_on_its_thread_is_a_save_error(tmp_path, monkeypatch) -> None:
    def broken(*args: object) -> int:
        raise MemoryError("no room to hash")

    monkeypatch.setattr(serialize, "_checksum", broken)
    path = str(tmp_path / "v")
    with pytest.raises(SaveError, match="no room to hash"):
        write_frame(path, Codec().frame(KEY, big_array()))
    assert os.listdir(tmp_path) == []


class Recording(FileOps):
    def __init__(self) -> None:
        self.reserved: list[int] = []

    def preallocate(self, fd: int, size: int) -> None:
        self.reserved.append(size)
        super().preallocate(fd, size)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_large_frame_reserves_its_exact_size_first(tmp_path, signed) -> None:
    codec, value = Codec(SECRET if signed else None), big_array()
    frame, ops = codec.frame(KEY, value), Recording()
    path = str(tmp_path / "v")
    write_frame(path, frame, ops=ops)
    assert ops.reserved == [frame.nbytes] == [os.path.getsize(path)]  # no slack left behind
    assert codec.loads(KEY, read_file(path)).tolist() == value.tolist()


def test_a_small_frame_is_written_without_reserving(tmp_path) -> None:
    ops = Recording()
    write_frame(str(tmp_path / "v"), Codec().frame(KEY, b"x" * 1000), ops=ops)
    assert ops.reserved == []


def test_without_fallocate_a_large_frame_is_still_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_files, "_fallocate", lambda: None)  # not Linux, or no such call
    codec, value = Codec(), big_array()
    path = str(tmp_path / "v")
    write_frame(path, codec.frame(KEY, value))
    assert codec.loads(KEY, read_file(path)).tolist() == value.tolist()
