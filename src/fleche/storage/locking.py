"""Lock mixins that hook only into ``_operation_context`` (SPEC sections 4 and 5).

Rules, so that nesting never deadlocks: locks are exact per key; a lock is reentrant for the thread or
asyncio task holding it (a WRITE inside a COMPUTE on the same key reuses it); other keys take their own
locks; waiting has a timeout that raises ``LockTimeoutError``. ``SerializingMixin`` ignores COMPUTE
(it serialises storage operations, never user code). Before waiting for a key another owner holds,
the batches open in this thread commit what they hold (``base.pause_batches``), so a batch never
waits for a key while it keeps its store's write lock.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import LockTimeoutError
from .base import Intent, OperationContext, batches_open, check_key, pause_batches

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LockTable",
    "ManyValuesMixin",
    "PerKeyLockMixin",
    "SerializingMixin",
    "current_owner",
    "release_all",
]

DEFAULT_LOCK_TIMEOUT = float(os.environ.get("FLECHE_LOCK_TIMEOUT", "600"))
"""Seconds to wait for a key's lock before ``LockTimeoutError`` (``FLECHE_LOCK_TIMEOUT``)."""


def current_owner() -> object:
    """The running asyncio task, else the current thread: who a reentrant lock belongs to."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # no event loop can be running before asyncio is imported
        return threading.get_ident()
    loop = asyncio._get_running_loop()
    if loop is not None:
        task = asyncio.current_task(loop)
        if task is not None:
            return task
    return threading.get_ident()


def _asyncio() -> Any:
    import asyncio

    return asyncio


class _Entry:
    __slots__ = ("depth", "lock", "owner", "process_lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: object = None
        self.depth = 0
        self.users = 0
        self.process_lock: AbstractContextManager[Any] | None = None


class LockTable:
    """Reentrant, owner-aware locks, one per key, created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def _enter(self, key: str, owner: object) -> tuple[_Entry, bool]:
        """Register interest in ``key``; True when ``owner`` holds it now: a reentry, or a key
        nobody held, taken at once (the usual cases, in one hold of the mutex)."""
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                entry.lock.acquire()  # a new lock: free
                entry.owner, entry.depth, entry.users = owner, 1, 1
                return entry, True
            if entry.depth and entry.owner == owner:
                entry.depth += 1
                return entry, True
            entry.users += 1
            return entry, False

    def _forget(self, key: str, entry: _Entry) -> None:
        with self._mutex:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(key) is entry:
                del self._entries[key]

    def acquire(self, key: str, owner: object, timeout: float) -> _Entry:
        """Take ``key`` for ``owner`` (reentrant), waiting at most ``timeout`` seconds."""
        entry, held = self._enter(key, owner)
        if held:
            return entry
        if not entry.lock.acquire(blocking=False):
            pause_batches()  # held by another owner: commit before waiting (see the module)
            if not entry.lock.acquire(timeout=timeout):
                self._forget(key, entry)
                raise LockTimeoutError(f"gave up waiting {timeout:g}s for the lock on key {key}")
        entry.owner, entry.depth = owner, 1
        return entry

    def try_acquire(self, key: str, owner: object) -> _Entry | None:
        """Take ``key`` for ``owner`` if nobody else holds it, without waiting; else None."""
        entry, held = self._enter(key, owner)
        if held:
            return entry
        if not entry.lock.acquire(blocking=False):
            self._forget(key, entry)
            return None
        entry.owner, entry.depth = owner, 1
        return entry

    async def acquire_async(self, key: str, owner: object, timeout: float) -> _Entry:
        """As :meth:`acquire`, polling so that the event loop is never blocked."""
        entry, held = self._enter(key, owner)
        if held:
            return entry
        deadline, pause = time.monotonic() + timeout, 0.001
        while not entry.lock.acquire(blocking=False):
            if pause == 0.001:
                pause_batches()  # commit before waiting (see the module)
            if time.monotonic() >= deadline:
                self._forget(key, entry)
                raise LockTimeoutError(f"gave up waiting {timeout:g}s for the lock on key {key}")
            await _asyncio().sleep(pause)
            pause = min(pause * 2, 0.05)
        entry.owner, entry.depth = owner, 1
        return entry

    def release(self, key: str, entry: _Entry) -> None:
        """Undo one :meth:`acquire`; the last one frees the key."""
        entry.depth -= 1
        if entry.depth:
            return
        entry.owner = None
        entry.lock.release()
        self._forget(key, entry)

    def __len__(self) -> int:
        return len(self._entries)


class _Chain:
    """Enter ``first`` then ``second``; leave in reverse order."""

    __slots__ = ("first", "second")

    def __init__(self, first: AbstractContextManager[Any], second: AbstractContextManager[Any]):
        self.first, self.second = first, second

    def __enter__(self) -> None:
        self.first.__enter__()
        try:
            self.second.__enter__()
        except BaseException:
            self.first.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self.second.__exit__(*exc)
        finally:
            self.first.__exit__(*exc)


class SerializingMixin(OperationContext):
    """One reentrant lock around every storage operation; COMPUTE passes through untouched.

    Needs nothing from its host. Use for stores that must not be touched by two threads at once.
    """

    def _serial_lock(self) -> threading.RLock:
        lock = self.__dict__.get("_fleche_serial_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_fleche_serial_lock", threading.RLock())
        return lock

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        inner = super()._operation_context(key, intent=intent)
        if intent is Intent.COMPUTE:
            return inner
        return _Chain(self._serial_lock(), inner)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(getattr(super(), "__getstate__", lambda: self.__dict__)() or {})
        state.pop("_fleche_serial_lock", None)
        return state


def _take_process_lock(host: PerKeyLockMixin, key: str) -> AbstractContextManager[Any] | None:
    """Enter ``host``'s cross-process lock on ``key``. A lock that cannot say when it has to wait
    (no ``pauses_batches``) is taken after the open batches commit, never while they hold theirs."""
    lock = host._process_lock(key)
    if lock is not None:
        if not getattr(lock, "pauses_batches", False) and batches_open():
            pause_batches()
        lock.__enter__()
    return lock


class _KeyLockContext:
    __slots__ = ("entry", "host", "inner", "key", "table")

    def __init__(self, host: PerKeyLockMixin, key: str, inner: AbstractContextManager[Any]):
        self.host, self.key, self.inner = host, key, inner
        self.entry: _Entry | None = None

    def __enter__(self) -> None:
        host, key = self.host, self.key
        self.table = table = host._lock_table()  # the one the entry is released to
        entry = table.acquire(key, current_owner(), host.lock_timeout)
        self.entry = entry
        try:
            if entry.depth == 1:
                entry.process_lock = _take_process_lock(host, key)
            self.inner.__enter__()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        entry = self.entry
        assert entry is not None
        if entry.depth == 1 and entry.process_lock is not None:
            process_lock, entry.process_lock = entry.process_lock, None
            try:
                process_lock.__exit__(None, None, None)
            finally:
                self.table.release(self.key, entry)
        else:
            self.table.release(self.key, entry)

    def __exit__(self, *exc: Any) -> None:
        try:
            self.inner.__exit__(*exc)
        finally:
            self._release()


class _AsyncKeyLockContext(_KeyLockContext):
    """The async form: waits for the key without blocking the event loop."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        host, key = self.host, self.key
        self.table = table = host._lock_table()
        entry = await table.acquire_async(key, current_owner(), host.lock_timeout)
        self.entry = entry
        try:
            if entry.depth == 1:
                entry.process_lock = _take_process_lock(host, key)
            self.inner.__enter__()
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)


class _HeldKeys:
    """The WRITE locks of many keys, taken without waiting: entering gives the keys it holds
    (a key that another owner holds, here or in another process, is left out)."""

    __slots__ = ("entries", "host", "keys")

    def __init__(self, host: PerKeyLockMixin, keys: Iterable[str]) -> None:
        self.host, self.keys = host, list(dict.fromkeys(keys))
        self.entries: list[tuple[str, _Entry]] = []

    def __enter__(self) -> set[str]:
        table, owner = self.host._lock_table(), current_owner()
        first: list[str] = []  # taken here for the first time: the process lock is needed too
        for key in self.keys:
            entry = table.try_acquire(key, owner)
            if entry is not None:
                self.entries.append((key, entry))
                if entry.depth == 1:
                    first.append(key)
        try:
            taken = self.host._try_process_locks(first) if first else {}
        except BaseException:
            self._release()
            raise
        held = set()
        for key, entry in list(self.entries):
            if entry.depth == 1:
                if key not in taken:  # another process holds it
                    self.entries.remove((key, entry))
                    table.release(key, entry)
                    continue
                entry.process_lock = taken[key]
            held.add(key)
        return held

    def _release(self) -> None:
        table, entries = self.host._lock_table(), self.entries[::-1]
        self.entries = []
        locks = [e.process_lock for _, e in entries if e.depth == 1 and e.process_lock]
        try:
            if locks:
                self.host._release_process_locks(locks)
        finally:
            for key, entry in entries:
                if entry.depth == 1:
                    entry.process_lock = None
                table.release(key, entry)

    def __exit__(self, *exc: Any) -> None:
        self._release()


def release_all(locks: Iterable[Any]) -> None:
    """Exit every entered lock in ``locks``, even when one fails; then raise the first failure."""
    failed: BaseException | None = None
    for lock in locks:
        try:
            lock.__exit__(None, None, None)
        except BaseException as e:  # release the others, then tell
            failed = failed or e
    if failed is not None:
        raise failed


class ManyValuesMixin:
    """``_save_many`` for value stores that write many rows in one go (``_put_many``): the keys
    this thread can lock at once are written together; a key another owner is writing is saved
    on its own afterwards, waiting for it as a single save would."""

    def _save_many(self, items: list[tuple[Any, Any]]) -> None:
        host: Any = self
        with host._holding(key for key, _ in items) as held:
            host._put_many([(check_key(key), value) for key, value in items if key in held])
        for key, value in items:
            if key not in held:
                host.save(value, key)


class PerKeyLockMixin(OperationContext):
    """One lock per key for WRITE and COMPUTE, so different keys proceed in parallel.

    Reads take no lock: writes are atomic in every backend. Hosts that share a store with other
    processes return a cross-process lock from ``_process_lock(key)``; it is taken once per
    outermost hold of the key, after the thread-level lock.
    """

    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def _lock_table(self) -> LockTable:
        table = self.__dict__.get("_fleche_lock_table")
        if table is None:
            table = self.__dict__.setdefault("_fleche_lock_table", LockTable())
        return table

    def _process_lock(self, key: str) -> AbstractContextManager[Any] | None:
        return None

    def _holding(self, keys: Iterable[str]) -> AbstractContextManager[set[str]]:
        return _HeldKeys(self, keys)

    def _try_process_locks(self, keys: list[str]) -> dict[str, Any]:
        """The cross-process locks of ``keys`` taken without waiting: key -> its entered lock
        (None where none is needed); a busy key is left out. One by one through ``try_enter``
        by default (a lock without it counts as busy); servers take many in one round trip."""
        taken: dict[str, Any] = {}
        for key in keys:
            lock = self._process_lock(key)
            if lock is None:
                taken[key] = None
            elif getattr(lock, "try_enter", None) is not None and lock.try_enter():  # type: ignore[attr-defined]
                taken[key] = lock
        return taken

    def _release_process_locks(self, locks: list[Any]) -> None:
        """Release locks :meth:`_try_process_locks` took (all of them, even when one fails)."""
        release_all(locks)

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        inner = super()._operation_context(key, intent=intent)
        if intent is Intent.READ:
            return inner
        return _KeyLockContext(self, key, inner)

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        inner = super()._operation_context(key, intent=intent)
        if intent is Intent.READ:
            return super()._async_operation_context(key, intent=intent)
        return _AsyncKeyLockContext(self, key, inner)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_fleche_lock_table", None)
        state.pop("_fleche_serial_lock", None)
        return state
