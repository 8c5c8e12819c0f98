"""A large result written while its content key is still being computed (issue 7, W4).

A miss must digest its result before the value's file can be named: for a 100 MB array an xxh3
pass of 6 ms, a quarter of ``np.save``'s whole time, spent before the first byte was written.
:func:`stage` frames the value at once and writes it to a temp file in the storage's value
directory, while a helper thread computes its key and then the frame's checksum under that key.
The storage's later ``frame`` of the same object (``Codec.frame``) returns that frame, and
``write_frame`` of it completes the staged file instead of writing the bytes again: the header
with its checksum is written over the start of the file, and the file is renamed into place,
fsynced first when the storage is durable.

A staged file nobody takes (the value was stored already, the result was not to be cached, the
digest failed) is removed when the block ends; one a crash leaves behind is a ``.tmp`` file that
``gc`` sweeps. Writes go through the storage's ``FileOps`` like every other; a staged write that
fails is dropped and the value is written the usual way, which reports the error."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ..digest import Digest
from ..errors import SaveError
from ._files import FileOps, make_dirs, open_temp
from .serialize import STAGED, Codec, Frame

__all__ = ["STAGE_FROM", "StagedWrite", "stage"]

# bytes (a value's ``nbytes``): smaller results are digested in well under a millisecond, less
# than a helper thread and an extra temp file cost
STAGE_FROM = 8 << 20


class StagedWrite:
    """One value's frame written to a temp file in ``directory`` by the calling thread, while a
    helper thread computes its key (``key_of()``) and then the frame's checksum under it.

    The writing stays on the caller's thread, as ``np.save``'s does: on the VM this was measured
    on, a helper thread's 100 MiB write took 112-283 ms in most rounds instead of 22, where
    ``np.save`` on the caller's thread did not (slow fresh memory on the other core, we read).
    """

    def __init__(self, directory: str, codec: Codec, value: Any, frame: Frame,
                 key_of: Callable[[], Digest], *, mode: int | None, ops: FileOps) -> None:  # fmt: skip
        self.directory, self.codec, self.value, self.frame = directory, codec, value, frame
        self.mode, self.ops = mode, ops
        self.fd: int | None = None
        self.temp: str | None = None
        self.error: BaseException | None = None
        self.done = False  # renamed into place
        self._key: Digest | None = None
        self._head: bytes | None = None  # the header completed under ``_key``
        self._key_error: BaseException | None = None
        self._thread = threading.Thread(target=self._hash, args=(key_of,), name="fleche-stage",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        self._write()

    def _hash(self, key_of: Callable[[], Digest]) -> None:
        try:
            self._key = key = key_of()
            frame = self.frame
            self._head = Frame(key, frame.head, frame.body, None).checksummed_head()
        except BaseException as e:  # handed to the caller by key()
            self._key_error = e

    def _write(self) -> None:
        ops, frame = self.ops, self.frame
        try:
            self.fd, self.temp = open_temp(f"{self.directory}/staged", self.mode, ops)
            ops.preallocate(self.fd, frame.nbytes)
            for part in (frame.head, *frame.body):  # the head's checksum is still zero here
                ops.write(self.fd, part)
        except Exception as e:  # the value is written the usual way, which reports it
            self.error = e

    def key(self) -> Digest:
        """The value's key, once the helper has computed it (its error raised here)."""
        self._thread.join()
        if self._key_error is not None:
            raise self._key_error
        assert self._key is not None
        return self._key

    def finish(self, path: str, frame: Frame, durable: bool) -> bool:
        """Complete the staged file as ``frame`` (the same body, under its key) and rename it
        to ``path``. False, leaving nothing behind, when the staged write failed."""
        self._thread.join()
        if self.error is not None or self.fd is None or self.temp is None:
            self.discard()
            return False
        head = self._head if frame.key == self._key and self._head else frame.checksummed_head()
        ops, fd, temp = self.ops, self.fd, self.temp
        try:
            try:
                ops.write_at(fd, head, 0)
                if durable:
                    ops.fsync(fd)
            finally:
                self.fd = None
                ops.close(fd)
            try:
                ops.replace(temp, path)
            except FileNotFoundError:  # the first entry under this fan-out directory
                make_dirs(os.path.dirname(path), self.mode)
                ops.replace(temp, path)
            self.done = True
            if durable:
                ops.fsync_dir(os.path.dirname(path))
        except OSError as e:
            if not self.done:
                self.discard()
            raise SaveError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
        return True

    def discard(self) -> None:
        """Wait for the helper, then remove the temp file unless it was renamed into place."""
        self._thread.join()
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass
        if self.temp is not None and not self.done:
            try:
                os.unlink(self.temp)
            except OSError:
                pass
            self.temp = None


def stageable(codec: Codec, value: Any, at_least: int) -> bool:
    """True for a value worth staging: of ``STAGE_FROM`` and ``at_least`` bytes or more (see
    :func:`size_of`) under a codec that neither signs (the signature covers the checksum, so it
    waits for the key) nor compresses."""
    if codec.signed or codec.compress is not None or getattr(STAGED, "write", None) is not None:
        return False
    size = size_of(value)
    return size is not None and size >= max(STAGE_FROM, at_least)


def size_of(value: Any) -> int | None:
    """The bytes of a large value as it tells them, cheaply: ``nbytes`` (numpy arrays, pandas
    Series, and others), or a pandas DataFrame's ``memory_usage`` (100 MiB stored in 35-36 ms
    before a DataFrame was staged, 25 after); None for anything else."""
    nbytes = getattr(value, "nbytes", None)
    if type(nbytes) is int:
        return nbytes
    kind = type(value)
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        return int(value.memory_usage(index=True, deep=False).sum())
    return None


def stage(directory: str, codec: Codec, value: Any, key_of: Callable[[], Digest], *,
          mode: int | None, ops: FileOps, at_least: int = 0
          ) -> AbstractContextManager[Callable[[], Digest]]:  # fmt: skip
    """A block whose target gives ``value``'s key: for a :func:`stageable` value, computed by a
    helper thread while the value is written to a temp file in ``directory`` (see the module
    docstring); for any other, ``key_of`` itself (in a ``nullcontext``: a miss's small result
    costs no generator)."""
    if not stageable(codec, value, at_least):
        return nullcontext(key_of)
    return _staged(directory, codec, value, key_of, mode=mode, ops=ops, at_least=at_least)


@contextmanager
def _staged(directory: str, codec: Codec, value: Any, key_of: Callable[[], Digest], *,
            mode: int | None, ops: FileOps, at_least: int) -> Iterator[Callable[[], Digest]]:  # fmt: skip
    try:
        frame = codec.frame("", value)  # the key only enters the checksum, computed later
    except Exception:  # the usual path serialises it again and reports the error
        yield key_of
        return
    if frame.nbytes < at_least:  # it would be stored inline after all
        yield key_of
        return
    staged = StagedWrite(directory, codec, value, frame, key_of, mode=mode, ops=ops)
    STAGED.write = staged
    try:
        yield staged.key
    finally:
        STAGED.write = None
        staged.discard()
