"""Filesystem storage (``file:///abs/dir``): one file per entry, fanned out by digest prefix.

Layout under the root: ``values/ab/<key>`` (value frames of ``serialize.Codec``: checksum, optional
HMAC signature, optional zlib), ``calls/ab/<key>`` (call records as checked JSON),
``locks/{values,calls}/<key>`` (lock files, present only while held) and ``fleche.json`` (the digest
scheme the entries were written with). Writes are atomic (temp file + rename, see ``_files``); a
torn or altered entry fails its checksum on load and is a warned, evicted miss.

URL options: ``durable=1`` (fsync files and directories), ``compress=zlib``, ``secret_key=HEX``
(else ``FLECHE_SECRET_KEY``), ``mode=0o660`` (file permissions; default: the umask) and
``lock_timeout=SECONDS``.
"""

from __future__ import annotations

import builtins
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ..caches import Cache
from ..call import DigestedCall
from ..digest import SCHEME_VERSION, Digest, digest
from ..errors import ConfigError, IntegrityError
from . import _files, _staging
from ._files import (
    OPS,
    FileOps,
    key_path,
    list_keys,
    make_dirs,
    read_file,
    write_atomic,
    write_frame,
)
from .base import CallMixin, Intent, StorageBackend, ValueMixin, check_key
from .locking import LockTable, PerKeyLockMixin
from .serialize import Codec, FrameChecker, dump_record, load_record

__all__ = [
    "CallFileBackend",
    "CallFiles",
    "CallPickleFile",
    "DirectoryOptions",
    "FileBackend",
    "FileKeyLockMixin",
    "SaveOnceMixin",
    "ValueFiles",
    "ValuePickleFile",
    "cache_from_url",
    "check_layout",
]

log = logging.getLogger(__name__)

LAYOUT_FILE = "fleche.json"
_COMMON = ("durable", "compress", "secret_key", "mode", "lock_timeout")
_EXTRA = {"file": (), "embedded": ("threshold",)}


@dataclass(frozen=True)
class DirectoryOptions:
    """What a ``file://`` or ``embedded://`` URL says: the root directory and the options."""

    root: str
    durable: bool = False
    compress: str | None = None
    secret_key: str | None = None
    mode: int | None = None
    lock_timeout: float | None = None
    threshold: int | None = None  # embedded:// only

    @classmethod
    def parse(cls, url: str, scheme: str) -> DirectoryOptions:
        """The options of ``url``; ``ConfigError`` for another scheme, no path or a bad option."""
        parts = urlsplit(url)
        if parts.scheme != scheme:
            raise ConfigError(f"not a {scheme}:// URL: {url!r}")
        path = parts.path if parts.netloc in ("", "localhost") else parts.netloc + parts.path
        if not path:
            raise ConfigError(f"{url!r} names no directory (expected {scheme}:///abs/dir)")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        known = _COMMON + _EXTRA[scheme]
        unknown = sorted(set(query) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(unknown)} in {url!r}; known: {', '.join(known)}"
            )
        return cls(
            root=str(Path(unquote(path)).expanduser().resolve()),
            durable=query.get("durable", "0").lower() in ("1", "true", "yes", "on"),
            compress=query.get("compress") or None,
            secret_key=query.get("secret_key") or None,
            mode=_files.parse_mode(query.get("mode")),
            lock_timeout=_number(query, "lock_timeout", float),
            threshold=_number(query, "threshold", int),
        )

    def url(self, scheme: str) -> str:
        """The normalised URL (options that differ from the defaults, in a fixed order)."""
        options: dict[str, str] = {}
        if self.durable:
            options["durable"] = "1"
        if self.compress:
            options["compress"] = self.compress
        if self.mode is not None:
            options["mode"] = oct(self.mode)
        if self.lock_timeout is not None:
            options["lock_timeout"] = f"{self.lock_timeout:g}"
        if self.threshold is not None:
            options["threshold"] = str(self.threshold)
        if self.secret_key:
            options["secret_key"] = self.secret_key
        query = "?" + urlencode(options, safe=":") if options else ""
        return f"{scheme}://{quote(self.root)}{query}"


def _number(query: dict[str, str], name: str, kind: type) -> Any:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"option {name}={raw!r}: expected a number >= 0")
    return value


def check_layout(root: str, mode: int | None, kind: str = "file") -> None:
    """Create ``root/fleche.json`` naming the digest scheme, or check the one found there.

    Raises ``ConfigError`` when the directory was written with another digest scheme. A root that
    cannot be written (a read-only share) is only read.
    """
    path = f"{root}/{LAYOUT_FILE}"
    try:
        layout = json.loads(bytes(read_file(path)))
    except FileNotFoundError:
        layout = {"fleche": kind, "digest_scheme": SCHEME_VERSION}
        try:
            make_dirs(root, mode)
            write_atomic(path, [json.dumps(layout).encode()], mode=mode)
        except OSError as e:
            log.debug("cannot record the layout of %s (read-only?): %s", root, e)
            return
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} is not a fleche layout file ({e})") from e
    found = layout.get("digest_scheme") if isinstance(layout, dict) else None
    if found != SCHEME_VERSION:
        raise ConfigError(
            f"the cache in {root} was written with digest scheme {found}, but this fleche uses "
            f"digest scheme {SCHEME_VERSION}; use another directory"
        )


# --- cross-process locks --------------------------------------------------------------------------
_tables: dict[str, LockTable] = {}
_tables_lock = threading.Lock()


def shared_lock_table(name: str) -> LockTable:
    """The process's one lock table for a lock directory, shared by every storage object on it,
    so two caches opened on one directory never take the same lock file twice in one process."""
    table = _tables.get(name)
    if table is None:
        with _tables_lock:
            table = _tables.setdefault(name, LockTable())
    return table


def _fresh_tables_after_fork() -> None:
    global _tables_lock
    _tables_lock = threading.Lock()
    _tables.clear()  # entries held by the parent's threads mean nothing here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_tables_after_fork)


class FileKeyLockMixin(PerKeyLockMixin):
    """Per-key locks that also exclude other processes: a record lock on one byte of the file
    ``<_lock_dir>.lock`` per key (``_files.RangeLock``), so taking one creates and removes no
    file (a lock file per key cost a file creation and a removal per write).

    Needs from its host: ``_lock_dir`` (a path), ``mode`` and ``lock_timeout``.
    """

    _lock_dir: str
    mode: int | None = None

    def _lock_table(self) -> LockTable:
        return shared_lock_table(self._lock_dir)

    def _process_lock(self, key: str) -> Any:
        return _files.range_lock(f"{self._lock_dir}.lock", key, self.lock_timeout, self.mode)


class SaveOnceMixin(ValueMixin):
    """Content-addressed saves: a value already stored is only marked as written now (so ``gc``
    counts it as young) rather than serialised and written again; a 100 MB argument passed to
    many calls is written once. Needs ``_touch(key) -> bool`` (False: not stored) from its host.
    ``put`` still overwrites."""

    def save(self, value: Any, key: str | None = None) -> Digest:
        key = digest(value) if key is None else check_key(key)
        with self._operation_context(key, intent=Intent.WRITE):
            if not self._touch(key):  # type: ignore[attr-defined]
                self._put(key, value)  # type: ignore[attr-defined]
        return key


# --- the backends ---------------------------------------------------------------------------------
class FileBackend(StorageBackend):
    """Value frames in ``root/values/ab/<key>`` files (see the module docstring for options)."""

    _area = "values"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durable: bool = False,
        compress: str | None = None,
        secret_key: str | None = None,
        mode: int | str | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        self.options = DirectoryOptions(
            str(Path(root).expanduser().resolve()),
            durable=durable,
            compress=compress,
            secret_key=secret_key,
            mode=_files.parse_mode(mode),
            lock_timeout=lock_timeout,
        )
        self.root, self.durable, self.mode = self.options.root, durable, self.options.mode
        if lock_timeout is not None:
            self.lock_timeout = lock_timeout
        self.codec = Codec(secret_key, compress)
        self.ops: FileOps = OPS  # the write seam (tests inject failures here)
        self._dir = f"{self.root}/{self._area}"
        self._lock_dir = f"{self.root}/locks/{self._area}"
        check_layout(self.root, self.mode)

    # --- encoding (the call backend overrides these) ----------------------------------------
    def _write(self, path: str, key: Digest, value: Any) -> None:
        frame = self.codec.frame(key, value)
        write_frame(path, frame, durable=self.durable, mode=self.mode, ops=self.ops)

    def _decode(self, key: Digest, data: bytes | bytearray | memoryview,
                checker: FrameChecker | None = None) -> Any:  # fmt: skip
        return self.codec.loads(key, data, checker)

    # --- primitives -------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return key_path(self._dir, key)

    def _put(self, key: Digest, value: Any) -> None:
        self._write(self._path(key), key, value)

    def _get(self, key: Digest) -> Any:
        checker = self._checker(key)
        try:
            data = read_file(self._path(key), checker)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            return self._decode(key, data, checker)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def _checker(self, key: Digest) -> FrameChecker | None:
        """The checksum a large value file's read computes as it goes (``Codec.checker``)."""
        return self.codec.checker(key)

    def _contains(self, key: Digest) -> bool:
        return os.path.exists(self._path(key))

    def _touch(self, key: Digest) -> bool:
        try:
            os.utime(self._path(key))
        except FileNotFoundError:
            return False
        return True

    def _evict(self, key: Digest) -> None:
        try:
            _files.remove(self._path(key), durable=self.durable, ops=self.ops)
        except FileNotFoundError:
            raise KeyError(key) from None

    def list(self) -> Iterator[Digest]:
        """Every stored key, sorted (one directory listing per fan-out directory)."""
        return list_keys(self._dir)

    def _candidates(self, prefix: str, limit: int) -> builtins.list[Digest]:
        # only the fan-out directories that can hold the prefix are listed
        return builtins.list(itertools.islice(list_keys(self._dir, prefix), limit))

    def stored_size(self, key: str) -> int:
        """Bytes of the entry's file; ``KeyError`` when absent."""
        try:
            return os.stat(self._path(key)).st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def stored_age(self, key: str) -> float:
        """Seconds since the entry's file was written; ``KeyError`` when absent."""
        try:
            return time.time() - os.stat(self._path(key)).st_mtime
        except FileNotFoundError:
            raise KeyError(key) from None

    def sweep_temps(self, min_age: float) -> int:
        """Remove temp files that dead writers left (``Cache.gc`` calls it)."""
        return _files.remove_abandoned_temps(self._dir, min_age)

    # --- identity: a storage is what its URL names ------------------------------------------
    def to_url(self) -> str:
        """The normalised ``file://`` URL (``cache(url)`` opens the same storage)."""
        return self.options.url("file")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.options == other.options and self.codec == other.codec

    def __hash__(self) -> int:
        return hash((type(self), self.options))

    def __reduce__(self) -> Any:
        # rebuilt from its options: no lock, descriptor or injected seam travels
        return _rebuild, (type(self), self.options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


def _rebuild(cls: type, options: DirectoryOptions) -> Any:
    kwargs = asdict(options)
    root = kwargs.pop("root")
    if kwargs.get("threshold") is None:
        kwargs.pop("threshold")
    return cls(root, **kwargs)


class CallFileBackend(FileBackend):
    """Call records as checked JSON in ``root/calls/ab/<key>`` files (never pickled)."""

    _area = "calls"

    def _write(self, path: str, key: Digest, value: Any) -> None:
        parts = [dump_record(key, value.to_record())]
        write_atomic(path, parts, durable=self.durable, mode=self.mode, ops=self.ops)

    def _decode(self, key: Digest, data: bytes | bytearray | memoryview,
                checker: FrameChecker | None = None) -> DigestedCall:  # fmt: skip
        return DigestedCall.from_record(load_record(key, bytes(data)))

    def _checker(self, key: Digest) -> None:
        return None  # records are JSON, checked by load_record


class ValueFiles(SaveOnceMixin, FileKeyLockMixin, FileBackend):
    """Values, one file each."""

    def stage(self, value: Any, key_of: Callable[[], Digest]
              ) -> AbstractContextManager[Callable[[], Digest]]:  # fmt: skip
        """A large value written while the caller digests it (see ``_staging``)."""
        return _staging.stage(self._dir, self.codec, value, key_of, mode=self.mode, ops=self.ops)


class CallFiles(CallMixin, FileKeyLockMixin, CallFileBackend):
    """Call records, one JSON file each."""


ValuePickleFile = ValueFiles  # the names of fleche 0.22.2
CallPickleFile = CallFiles


def cache_from_url(url: str) -> Cache:
    """A cache of values and call records under one directory: ``file:///abs/dir?options``.

    Raises ``ConfigError`` for a bad URL or a directory written with another digest scheme.
    """
    options = asdict(DirectoryOptions.parse(url, "file"))
    root = options.pop("root")
    options.pop("threshold")
    values = ValueFiles(root, **options)
    return Cache(values, CallFiles(root, **options), url=values.to_url())
