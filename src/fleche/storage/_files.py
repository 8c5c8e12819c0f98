"""File helpers of the filesystem and embedded storages: atomic writes through one seam, whole-file
reads, fanned-out paths, per-key lock files, and network-filesystem detection (SPEC sections 5, 6).

Every byte these storages put on disk goes through :func:`write_atomic`, whose steps are the methods
of one :class:`FileOps` object; tests swap in one that fails at step N, so each failure point is
exercised. Files and directories are created with the process umask (a group can share a cache);
an explicit ``mode`` overrides it.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..digest import Digest
from ..errors import ConfigError, LockTimeoutError, SaveError
from .base import pause_batches
from .serialize import STAGED, Frame, FrameChecker

try:
    import fcntl
except ImportError:  # Windows: filelock's lock, which keeps its files, is used instead
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "OPS",
    "FileOps",
    "KeyLock",
    "dir_mode",
    "filesystem_type",
    "is_network_filesystem",
    "key_lock",
    "key_path",
    "list_keys",
    "make_dirs",
    "parse_mode",
    "read_file",
    "write_atomic",
    "write_frame",
]

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")
_SMALL_READ = 1 << 16  # files up to this size are read with one os.read (bytes)
_HUGE_READ = 4 << 20  # files from this size on are read into memory backed by huge pages
_HASH_WHILE_WRITING = 8 << 20  # frames from this size on are hashed on a thread as they are written
_READ_PIECE = 8 << 20  # and read in pieces of this size, each hashed while the next is read
_counter = itertools.count()  # temp-file names: pid + counter, unique without a random draw


def parse_mode(raw: str | int | None) -> int | None:
    """A permission mode from a URL option (``0o660``, ``660``) or an int; None keeps the umask."""
    if raw is None or isinstance(raw, int):
        return raw
    text = raw.strip().lower().removeprefix("0o")
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or (mode & 0o600) != 0o600:
        raise ConfigError(f"mode={raw!r}: expected octal permissions that let the owner read/write")
    return mode


def dir_mode(mode: int) -> int:
    """The directory mode that goes with a file mode: search (x) wherever read is granted."""
    return mode | ((mode & 0o444) >> 2)


def make_dirs(path: str, mode: int | None) -> None:
    """``os.makedirs`` that honours the umask, or sets ``dir_mode(mode)`` on what it creates."""
    if mode is None:
        os.makedirs(path, exist_ok=True)
        return
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.isdir(parent):
        make_dirs(parent, mode)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    os.chmod(path, dir_mode(mode))  # mkdir's mode is masked by the umask; chmod is not


def key_path(root: str, key: str) -> str:
    """``root/ab/abcdef...``: one directory per two leading hex characters keeps listings short."""
    return f"{root}/{key[:2]}/{key}"


# --- writing ------------------------------------------------------------------------------------
class FileOps:
    """The steps of an atomic write: the one seam through which these storages write files.

    Tests subclass it to raise ``ENOSPC``/``EIO`` at any step; a failed write removes its temp file,
    so the old entry (or none) stays in place.
    """

    def open_temp(self, path: str, mode: int | None) -> tuple[int, str]:
        """A new temp file beside ``path`` (same directory, so the rename is atomic)."""
        directory, name = os.path.split(path)
        temp = f"{directory}/.{name}.{os.getpid()}.{next(_counter)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temp, flags, 0o666)  # 0o666 & ~umask, unlike mkstemp's 0600
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                os.unlink(temp)
                raise
        return fd, temp

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` (``os.write`` may write less than asked)."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def write_at(self, fd: int, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (a header completed after the body was written)."""
        view = memoryview(data)
        while view:
            if hasattr(os, "pwrite"):
                written = os.pwrite(fd, view, offset)
            else:  # Windows has no pwrite: seek, then write
                os.lseek(fd, offset, os.SEEK_SET)
                written = os.write(fd, view)
            view, offset = view[written:], offset + written

    def preallocate(self, fd: int, size: int) -> None:
        """Reserve ``size`` bytes of disk for a large file before it is written, as ``np.save``
        does: on ext4 a 100 MB write then took 16 ms instead of 22 (W4). Best effort: where
        the call or the filesystem lacks it nothing happens, and the write itself reports a
        full disk."""
        fallocate = _fallocate()
        if fallocate is not None:
            fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, size)  # its errors are the write's to report

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def fsync_dir(self, directory: str) -> None:
        """Make a rename or an unlink in ``directory`` durable (POSIX; a no-op where unsupported)."""
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:  # Windows cannot open directories
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


OPS = FileOps()
PREALLOCATE_FROM = 1 << 20  # bytes: smaller files are written without reserving their space first
_FALLOC_FL_KEEP_SIZE = 1  # reserve blocks without changing the file's size (Linux)


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``fallocate(2)`` through ctypes (the os module has only ``posix_fallocate``,
    which glibc emulates by writing every block where the filesystem lacks it)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    function.restype = ctypes.c_int
    return function


def open_temp(path: str, mode: int | None, ops: FileOps = OPS) -> tuple[int, str]:
    """``ops.open_temp`` beside ``path``, creating its directory the first time."""
    try:
        return ops.open_temp(path, mode)
    except FileNotFoundError:  # the first entry under this directory
        make_dirs(os.path.dirname(path), mode)
        return ops.open_temp(path, mode)


def write_atomic(
    path: str,
    parts: Iterable[bytes | memoryview],
    *,
    durable: bool = False,
    mode: int | None = None,
    ops: FileOps = OPS,
    header: Callable[[], bytes] | None = None,
    size: int | None = None,
) -> None:
    """Write ``parts`` in order to a temp file, then rename it over ``path``.

    A reader sees the old file or the whole new one, never a part. With ``durable`` the file and
    its directory are fsynced. ``header``, when given, is called once every part is written, and
    what it returns is written over the start of the file (a checksum known only then). ``size``
    (the bytes of all parts), when it is ``PREALLOCATE_FROM`` or more, is reserved on disk first.
    Raises ``SaveError`` (an ``OSError`` keeping the errno) on failure, leaving no temp file; a
    failure of the final directory fsync leaves the complete new file.
    """
    try:
        fd, temp = open_temp(path, mode, ops)
        try:
            try:
                if size is not None and size >= PREALLOCATE_FROM:
                    ops.preallocate(fd, size)
                for part in parts:
                    ops.write(fd, part)
                if header is not None:
                    ops.write_at(fd, header(), 0)
                if durable:
                    ops.fsync(fd)
            finally:
                ops.close(fd)
            ops.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        if durable:
            ops.fsync_dir(os.path.dirname(path))
    except OSError as e:
        raise SaveError(e.errno, f"cannot write {path}: {e.strerror or e}") from e


def write_frame(
    path: str,
    frame: Frame,
    *,
    durable: bool = False,
    mode: int | None = None,
    ops: FileOps = OPS,
) -> None:
    """:func:`write_atomic` of a value frame. A large unsigned frame is checksummed on a helper
    thread while its bytes are written, and its header goes in last: hashing and writing take
    the time of the slower of the two, not of both (a 100 MB array: 6 ms of xxh3, 25 of write).
    A frame already being written to a temp file (``_staging``) is completed and renamed instead."""
    staged = getattr(STAGED, "write", None)
    if (
        staged is not None
        and staged.frame.body is frame.body
        and not staged.done
        and staged.finish(path, frame, durable)
    ):
        return
    if frame.signed or frame.nbytes < _HASH_WHILE_WRITING:
        write_atomic(path, frame.parts(), durable=durable, mode=mode, ops=ops, size=frame.nbytes)
        return
    checksum = frame.checksum_in_background()
    try:
        parts = [frame.head, *frame.body]  # the head's checksum is still zero here
        write_atomic(path, parts, durable=durable, mode=mode, ops=ops, header=checksum.head,
                     size=frame.nbytes)  # fmt: skip
    finally:
        checksum.join()


def remove_abandoned_temps(directory: str, min_age: float) -> int:
    """Delete the temp files of writes that died (kill -9, power loss) under ``directory``.

    A temp file is abandoned when nothing wrote to it for ``min_age`` seconds: a living writer
    keeps its mtime fresh until the rename. Returns how many were removed.
    """
    removed = 0
    cutoff = time.time() - min_age
    for folder, _, names in os.walk(directory):
        for name in names:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            path = os.path.join(folder, name)
            try:
                if os.stat(path).st_mtime <= cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
    return removed


def remove(path: str, *, durable: bool = False, ops: FileOps = OPS) -> None:
    """Delete ``path`` (``FileNotFoundError`` when absent); with ``durable`` fsync its directory."""
    os.unlink(path)
    if durable:
        ops.fsync_dir(os.path.dirname(path))


# --- reading ------------------------------------------------------------------------------------
def read_file(path: str, checker: FrameChecker | None = None) -> bytes | bytearray | memoryview:
    """The whole file; large files are read with ``readinto`` into one preallocated buffer, so
    values deserialised from it (numpy arrays) are views of that buffer, not copies. A file of
    ``_HASH_WHILE_WRITING`` bytes or more is fed to ``checker``, when given, piece by piece on a
    helper thread as it is read, so its checksum is ready with its last byte."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size <= _SMALL_READ:
            return os.read(fd, size)
        view = _writable_memory(size)
        hashing = _Hashing(checker) if checker is not None and size >= _HASH_WHILE_WRITING else None
        step = _READ_PIECE if hashing is not None else size
        got = 0
        try:
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while got < size and (n := f.readinto(view[got : got + step])):
                    if hashing is not None:
                        hashing.feed(view[got : got + n])
                    got += n
        finally:
            if hashing is not None:
                hashing.close()
        return view if got == size else view[:got]  # shorter: it shrank while read (a miss)
    finally:
        os.close(fd)


class _Hashing:
    """Pieces of a file handed to a helper thread that feeds them to a ``FrameChecker``
    (xxhash releases the GIL), while the caller reads the next ones."""

    def __init__(self, checker: FrameChecker) -> None:
        self.checker = checker
        self.pieces: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="fleche-verify", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (piece := self.pieces.get()) is not None:
                self.checker.feed(piece)
        except BaseException:  # loads computes the checksum itself
            self.checker.spoil()
            while self.pieces.get() is not None:  # drain, so close() returns
                pass

    def feed(self, piece: memoryview) -> None:
        self.pieces.put(piece)

    def close(self) -> None:
        self.pieces.put(None)
        self.thread.join()


def _writable_memory(size: int) -> memoryview:
    """``size`` bytes to read a large file into. From ``_HUGE_READ`` bytes on, private anonymous
    memory that asks for transparent huge pages where the kernel has them: a ``bytearray`` is
    zero-filled one 4 KiB page fault at a time first, which in a virtual machine cost more than
    the read itself (about 80 ms for 100 MB, where the read and checksum take 25)."""
    import mmap  # here: only large reads need it

    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if size < _HUGE_READ or advice is None:
        return memoryview(bytearray(size))
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        memory.madvise(advice)
    except OSError:  # no transparent huge pages here: plain pages, still not zero-filled twice
        pass
    return memoryview(memory)  # keeps the mapping alive as long as any view of it


def list_keys(root: str, prefix: str = "") -> Iterator[Digest]:
    """Keys stored as ``root/ab/<key>`` files, sorted; only the fan-out directories that can hold
    keys starting with ``prefix`` are read. Temp files and strays are skipped."""
    if len(prefix) >= 2:
        directories = [prefix[:2]]
    else:
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return
        directories = sorted(n for n in names if len(n) == 2 and n.startswith(prefix))
    for directory in directories:
        try:
            names = os.listdir(f"{root}/{directory}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in sorted(names):
            if len(name) == 32 and name.startswith(prefix) and _HEX.issuperset(name):
                yield Digest(name)


# --- cross-process locks ------------------------------------------------------------------------
_held: dict[int, str] = {}  # fd -> path of the lock files this process holds (closed after fork)


class KeyLock:
    """An exclusive lock on one key shared by every process: ``flock`` on a lock file.

    The file exists only while the lock is held: the holder unlinks it before unlocking, and a
    waiter that wins the ``flock`` on a file already unlinked (``st_nlink == 0``) starts over, so
    a directory of locks never grows with the number of keys. A holder that dies releases its lock
    with its file descriptor (the stale file is reused by the next holder).
    """

    __slots__ = ("fd", "mode", "path", "pid", "timeout")
    pauses_batches = True  # it calls ``pause_batches`` before it waits (see ``locking``)

    def __init__(self, path: str, timeout: float, mode: int | None = None) -> None:
        self.path, self.timeout, self.mode = path, timeout, mode
        self.fd: int | None = None
        self.pid = 0

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except FileNotFoundError:
            make_dirs(os.path.dirname(self.path), self.mode)
            fd = os.open(self.path, flags, 0o666)
        if self.mode is not None:
            try:
                os.fchmod(fd, self.mode)
            except PermissionError:  # another user's lock file: it can still be locked
                pass
        return fd

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it, without waiting; True when taken."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if os.fstat(fd).st_nlink:
                self.fd, self.pid = fd, os.getpid()
                _held[fd] = self.path
                return True
            os.close(fd)  # won a lock file its holder had just removed: take the new one

    def __enter__(self) -> None:
        wait_for(self.try_enter, self.timeout, f"the lock file {self.path}")

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        _held.pop(fd, None)
        try:
            if self.pid == os.getpid():  # a forked child must never release its parent's lock
                try:
                    os.unlink(self.path)  # still held: no waiter can lock a name we remove
                except FileNotFoundError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_lock_files: dict[str, tuple[int, int]] = {}  # path -> (pid, fd) of the shared lock files
_lock_files_mutex = threading.Lock()


def _shared_lock_fd(path: str, mode: int | None) -> int:
    """This process's descriptor on ``path``, opened once and never closed: closing any
    descriptor of a file drops every POSIX lock the process holds on it. A forked child opens
    its own (record locks are not inherited; the parent's descriptor is left alone)."""
    pid = os.getpid()
    found = _lock_files.get(path)  # the usual case, read without the mutex (one dict look-up)
    if found is not None and found[0] == pid:
        return found[1]
    with _lock_files_mutex:
        found = _lock_files.get(path)
        if found is not None and found[0] == pid:
            return found[1]
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            make_dirs(os.path.dirname(path), mode)
            fd = os.open(path, flags, 0o666)
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except PermissionError:
                pass
        _lock_files[path] = (pid, fd)
        return fd


class RangeLock:
    """An exclusive lock on one key shared by every process: a POSIX record lock on one byte of
    a single lock file, at an offset taken from the key (60 bits of it).

    Nothing is created or removed per key, so taking it costs two ``fcntl`` calls, not a file
    creation and removal. Record locks belong to the process: threads of one process are kept
    apart by the thread-level lock taken first (``PerKeyLockMixin``). A holder that dies releases
    its locks with its process.
    """

    __slots__ = ("fd", "mode", "offset", "path", "pid", "timeout")
    pauses_batches = True  # it calls ``pause_batches`` before it waits (see ``locking``)

    def __init__(self, path: str, key: str, timeout: float, mode: int | None = None) -> None:
        self.path, self.timeout, self.mode = path, timeout, mode
        self.offset = int(key[:15], 16)
        self.fd: int | None = None
        self.pid = 0

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it, without waiting; True when taken."""
        fd = _shared_lock_fd(self.path, self.mode)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            return False
        self.fd, self.pid = fd, os.getpid()
        return True

    def __enter__(self) -> None:
        if not self.try_enter():  # the usual case takes it at once: no deadline, no message
            wait_for(self.try_enter, self.timeout, f"the lock on {self.offset:x} in {self.path}")

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, None
        if fd is not None and self.pid == os.getpid():
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, self.offset)


def wait_for(try_enter: Callable[[], bool], timeout: float, what: str) -> None:
    """Retry ``try_enter`` with backoff (0.5 ms doubling to 50 ms) until it succeeds, or raise
    ``LockTimeoutError`` after ``timeout`` seconds. Before the first wait, the batches open in
    this thread commit, so no batch holds the store's write lock while it waits (SPEC 4)."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while not try_enter():
        if pause == 0.0005:
            pause_batches()
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeoutError(f"gave up waiting {timeout:g}s for {what}")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


def range_lock(path: str, key: str, timeout: float, mode: int | None = None) -> Any:
    """A :class:`RangeLock` on ``key`` in ``path``; without ``fcntl`` a :func:`key_lock`."""
    if fcntl is not None:
        return RangeLock(path, key, timeout, mode)
    return key_lock(f"{os.path.dirname(path)}/{key}", timeout, mode)


def key_lock(path: str, timeout: float, mode: int | None = None) -> Any:
    """A :class:`KeyLock` on ``path``; on Windows (no ``flock``) a ``filelock.FileLock``."""
    if fcntl is not None:
        return KeyLock(path, timeout, mode)
    import filelock

    make_dirs(os.path.dirname(path), mode)
    return filelock.FileLock(path, timeout=timeout)


def _close_inherited_locks() -> None:
    """In a forked child: close the parent's lock files (unlocking them would free the parent's)."""
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


# --- network filesystems ------------------------------------------------------------------------
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afs", "ncpfs", "9p", "fuse.sshfs"}
    | {"ceph", "glusterfs", "fuse.glusterfs", "lustre", "gpfs", "beegfs", "fuse.rclone"}
)


def _unescape(field: str) -> str:
    """/proc/mounts writes spaces, tabs, newlines and backslashes as octal escapes (``\\040``)."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def filesystem_type(path: str, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` from ``/proc/mounts`` (Linux), else None.

    ``mounts`` is that file's text (tests pass their own); the longest mount point containing
    ``path`` wins.
    """
    if mounts is None:
        try:
            with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1]).rstrip("/") or "/"
        inside = target == point or target.startswith(point + "/") or point == "/"
        if inside and len(point) > best:
            best, found = len(point), fields[2]
    return found


def is_network_filesystem(fstype: str | None) -> bool:
    """True for NFS, SMB/CIFS and the other network filesystems whose locking SQLite distrusts."""
    return fstype is not None and (
        fstype in NETWORK_FILESYSTEMS or fstype.split(".")[0] in NETWORK_FILESYSTEMS
    )
