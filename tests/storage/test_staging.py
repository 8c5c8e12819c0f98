"""A large result written while it is digested (``storage._staging``), on the file and embedded
caches: the bytes go to disk once, the stored file is the one the plain path writes, nothing is
left behind when the staged file is not wanted or its write fails, and only unsigned,
uncompressed values of ``STAGE_FROM`` bytes or more (above the inline threshold) are staged.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fleche
from fleche import wrapper
from fleche.config import cache_from_url
from fleche.digest import digest
from fleche.errors import DigestError, UnstorableResultWarning
from fleche.storage import _staging
from fleche.storage._files import FileOps, key_path, read_file
from fleche.storage.serialize import STAGED, Codec

SCHEMES = ["file", "embedded"]
SECRET = "cd" * 16


def big(first: float = 0.0) -> np.ndarray:
    array = np.arange(_staging.STAGE_FROM // 8 + 4096, dtype=np.float64)  # just over the size
    array[0] = first
    return array


@fleche.fleche
def compute(i: int) -> np.ndarray:
    """A new large result for each ``i``."""
    return big(i)


class Spy(FileOps):
    """Counts the bytes each temp file received; fails where told to."""

    def __init__(self, fail_staged: bool = False, fail_all: bool = False) -> None:
        self.temps: list[str] = []
        self.written: dict[int, int] = {}
        self.fsyncs = self.dir_fsyncs = 0
        self.fail_staged, self.fail_all = fail_staged, fail_all
        self.lock = threading.Lock()

    def open_temp(self, path: str, mode: int | None) -> tuple[int, str]:
        if self.fail_all or (self.fail_staged and os.path.basename(path) == "staged"):
            raise OSError(28, os.strerror(28))
        fd, temp = super().open_temp(path, mode)
        with self.lock:
            self.temps.append(temp)
            self.written[fd] = 0
        return fd, temp

    def write(self, fd: int, data: bytes | memoryview) -> None:
        super().write(fd, data)
        with self.lock:
            self.written[fd] = self.written.get(fd, 0) + memoryview(data).nbytes

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        super().fsync(fd)

    def fsync_dir(self, directory: str) -> None:
        self.dir_fsyncs += 1
        super().fsync_dir(directory)

    @property
    def staged(self) -> list[str]:
        return [t for t in self.temps if os.path.basename(t).startswith(".staged.")]


def open_cache(scheme: str, root: Path, query: str = "") -> Any:
    cache = cache_from_url(f"{scheme}://{root}{query}")
    cache.values.ops = spy = Spy()
    return cache, spy


def leftovers(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


def stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fleche-stage"]


def value_path(cache: Any, key: str) -> str:
    directory = getattr(cache.values, "_files", None) or cache.values._dir
    return key_path(directory, key)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_large_result_is_written_once_while_it_is_digested(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path)

    with fleche.cache(cache):
        returned = compute(3)
        key = compute.digest(3)
    result_key = cache.load(key).record.result
    frame = Codec().frame(result_key, returned)
    assert len(spy.staged) == 1, "the result went through a staged temp file"
    big_writes = [size for size in spy.written.values() if size >= _staging.STAGE_FROM]
    assert big_writes == [frame.nbytes]  # the bytes went to disk once
    data = read_file(value_path(cache, result_key))
    assert bytes(data) == b"".join(frame.parts())  # the very file the plain path writes
    assert np.array_equal(cache.load(key).result, big(3))
    assert leftovers(tmp_path) == [] and stage_threads() == []
    assert getattr(STAGED, "write", None) is None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_result_stored_already_is_not_written_again(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path)

    @fleche.fleche
    def same(i: int) -> np.ndarray:
        return big()  # one value for every call

    with fleche.cache(cache):
        same(1)
        same(2)  # staged, then dropped: the value is there
    assert len(spy.staged) == 2
    assert leftovers(tmp_path) == [] and stage_threads() == []
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20]
    assert len(files) == 1  # one value file
    with fleche.cache(cache):
        assert np.array_equal(same.load(2), big())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_staged_file_nobody_takes_is_removed(scheme, tmp_path, monkeypatch) -> None:
    cache, spy = open_cache(scheme, tmp_path)

    def refuse(value: Any) -> str:
        raise DigestError("no digest today")

    monkeypatch.setattr(wrapper, "digest", refuse)

    with fleche.cache(cache), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(compute(1), big(1))
    assert any(issubclass(w.category, UnstorableResultWarning) for w in caught)
    assert len(spy.staged) == 1  # it was being written...
    assert leftovers(tmp_path) == [] and stage_threads() == []  # ...and is gone
    assert list(cache.value_keys()) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_failed_staged_write_falls_back_to_the_plain_write(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path)
    spy.fail_staged = True

    with fleche.cache(cache):
        compute(4)
        assert np.array_equal(compute.load(4), big(4))
    assert spy.staged == [] and len(spy.temps) >= 1  # written the plain way
    assert leftovers(tmp_path) == [] and stage_threads() == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_when_no_write_succeeds_the_result_is_returned_unstored(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path)
    spy.fail_all = True

    with fleche.cache(cache), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(compute(5), big(5))
        assert not compute.contains(5)
    assert any(issubclass(w.category, UnstorableResultWarning) for w in caught)
    assert leftovers(tmp_path) == [] and stage_threads() == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_durable_cache_fsyncs_the_staged_file_and_its_directory(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path, "?durable=1")

    with fleche.cache(cache):
        compute(6)
        assert np.array_equal(compute.load(6), big(6))
    assert len(spy.staged) == 1
    assert spy.fsyncs >= 1 and spy.dir_fsyncs >= 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_isolated_result_stages_the_copy_it_stores(scheme, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path)

    @fleche.fleche(isolate=True)
    def compute(i: int) -> np.ndarray:
        return big(i)

    with fleche.cache(cache):
        returned = compute(7)
        returned[:] = -1  # the caller's copy, not the stored one
        assert np.array_equal(compute.load(7), big(7))
    assert len(spy.staged) == 1


@pytest.mark.parametrize(
    ("scheme", "query", "value"),
    [
        ("file", f"?secret_key={SECRET}", big()),  # a signature waits for the checksum
        ("embedded", "?compress=zlib", big()),  # compressing twice would cost more than it saves
        ("file", "", np.arange(1000)),  # small: digested in microseconds
        ("embedded", f"?threshold={_staging.STAGE_FROM * 2}", big()),  # stored inline
    ],
    ids=["signed", "compressed", "small", "inline"],
)
def test_values_that_gain_nothing_are_not_staged(scheme, query, value, tmp_path) -> None:
    cache, spy = open_cache(scheme, tmp_path, query)

    @fleche.fleche
    def compute(i: int) -> np.ndarray:
        return value

    with fleche.cache(cache):
        compute(8)
        assert np.array_equal(compute.load(8), value)
    assert spy.staged == []


def test_only_the_staged_object_under_its_own_codec_reuses_the_frame(tmp_path) -> None:
    codec, value = Codec(), big()
    with _staging.stage(str(tmp_path), codec, value, lambda: digest(value), mode=None,
                        ops=FileOps()) as key:  # fmt: skip
        assert key() == digest(value)  # computed on the helper thread
        staged = STAGED.write
        assert codec.frame("k" * 32, value).body is staged.frame.body
        assert codec.frame("k" * 32, value.copy()).body is not staged.frame.body  # equal, not it
        assert Codec().frame("k" * 32, value).body is not staged.frame.body
    assert getattr(STAGED, "write", None) is None
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gc_removes_a_staged_file_a_dead_writer_left(scheme, tmp_path) -> None:
    """A kill -9 during a staged write leaves ``values/.staged.<pid>.<n>.tmp``; gc sweeps it."""
    cache, _ = open_cache(scheme, tmp_path)
    (tmp_path / "values").mkdir(exist_ok=True)
    dead = tmp_path / "values" / ".staged.99999.1.tmp"
    dead.write_bytes(b"half a value")
    past = os.stat(dead).st_mtime - 3600
    os.utime(dead, (past, past))
    cache.gc(grace=0)
    assert not dead.exists()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_large_dataframe_is_staged_and_loads_equal(scheme, tmp_path) -> None:
    import pandas as pd

    cache, spy = open_cache(scheme, tmp_path)
    rows = _staging.STAGE_FROM // (8 * 4) + 1000
    frame = pd.DataFrame({f"c{i}": np.arange(rows, dtype=np.float64) + i for i in range(4)})
    assert _staging.size_of(frame) >= _staging.STAGE_FROM

    @fleche.fleche
    def table(i: int) -> pd.DataFrame:
        return frame

    with fleche.cache(cache):
        table(1)
        pd.testing.assert_frame_equal(table.load(1), frame)
    assert len(spy.staged) == 1
    assert leftovers(tmp_path) == [] and stage_threads() == []


def test_sizes_are_read_only_from_what_says_them() -> None:
    class Claims:
        nbytes = "a lot"  # not an int: not trusted

    assert _staging.size_of(np.zeros(10)) == 80
    assert _staging.size_of(Claims()) is None
    assert _staging.size_of({"a": np.zeros(10**7)}) is None  # containers are not sized
