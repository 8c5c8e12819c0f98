"""A cache that keeps at most ``max_entries`` calls and ``max_bytes`` bytes (SPEC section 7).

The least recently used calls are evicted, with their values when no remaining call refers to
them. The limit holds across processes sharing one persistent cache because everything the policy
needs lives in the store itself: each call record carries ``metadata["fleche"]["accessed"]`` (when
it was last used, rewritten at most once per ``touch_interval`` per key and process) and
``metadata["fleche"]["bytes"]`` (the stored size of its values). After every save, and once the
saving thread holds no lock of this cache, one cache-wide lock is taken, the records are counted
and the oldest evicted. So the store never holds more than ``max_entries`` plus one call per thread
that has saved and not yet enforced (one per process for single-threaded workers).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from ._log import get_logger
from .caches import BaseCache, Cache, _Delegating, save_computed
from .call import NO_RESULT, Call, DigestedCall, QueryCall
from .digest import Digest
from .errors import ConfigError, LockTimeoutError, Rejected, StorageError
from .storage.base import Intent
from .storage.locking import current_owner

if TYPE_CHECKING:  # pickle is only named in annotations: importing fleche stays fast
    import pickle

__all__ = ["SizeLimitedCache", "estimate_size"]

log = get_logger(__name__)

# The key whose WRITE lock serialises enforcement, in every process sharing the store. A fixed
# digest: a call key equal to it (probability 2**-128) would only share its lock.
_LIMIT_KEY = Digest("f1ec4e00000000000000000000000000")
_SIZES_KEPT = 4096  # sizes of values stored but whose record is not yet written


class _Entry(NamedTuple):
    accessed: float
    key: Digest
    nbytes: int
    values: tuple[str, ...]


class SizeLimitedCache(_Delegating):
    """Keeps at most ``max_entries`` calls and ``max_bytes`` bytes of ``cache``, evicting the least
    recently used.

    ``touch_interval`` (seconds) bounds how often a hit rewrites a record's access time: the order
    is exact within a process and to that resolution across processes. Sizes come from the storage
    when it can tell (``stored_size``), else from a pickle of the value at save time. A value
    shared by several calls counts once per call, so the limit errs on the side of evicting.
    ``SizeLimitedCache(values=..., calls=..., max_size=n)`` is the form of fleche 0.22.2.

    >>> from fleche import Cache, cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> with cache(SizeLimitedCache(Cache.from_url("memory://"), max_entries=2)):
    ...     [cube(x) for x in range(4)]
    ...     sorted(call.arguments["x"] for call in cube.query())  # the two most recent
    [0, 1, 8, 27]
    [2, 3]
    """

    def __init__(
        self,
        cache: BaseCache | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        *,
        touch_interval: float = 1.0,
        values: Any = None,
        calls: Any = None,
        max_size: int | None = None,
    ) -> None:
        if cache is None:
            if values is None or calls is None:
                raise ConfigError("SizeLimitedCache needs a cache (or values= and calls=)")
            cache = Cache(values, calls)
        if max_size is not None:
            if max_entries is not None:
                raise ConfigError("give max_entries or max_size (its old name), not both")
            max_entries = max_size
        if max_entries is None and max_bytes is None:
            raise ConfigError("SizeLimitedCache needs max_entries, max_bytes or both")
        for name, limit in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ConfigError(f"{name} must be a whole number >= 0, not {limit!r}")
        super().__init__(cache)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.touch_interval = touch_interval
        self._local_state()

    def _local_state(self) -> None:
        self._mutex = threading.Lock()
        self._depth: dict[object, int] = {}  # owner -> how many contexts of this cache it holds
        self._pending: set[object] = set()  # owners that saved and have not yet enforced
        self._touched: dict[str, float] = {}  # key -> last access in this process
        self._persisted: dict[str, float] = {}  # key -> access time last written to its record
        self._sizes: dict[str, int] = {}  # value digest -> bytes, until its record is written
        # access times can only be written back into a plain cache's call storage
        self._persist_access = isinstance(self.inner, Cache)

    def __getstate__(self) -> dict[str, Any]:
        keep = ("inner", "max_entries", "max_bytes", "touch_interval")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local_state()

    def __repr__(self) -> str:
        limits = ", ".join(
            f"{name}={value}"
            for name, value in (("max_entries", self.max_entries), ("max_bytes", self.max_bytes))
            if value is not None
        )
        return f"SizeLimitedCache({self.inner!r}, {limits})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.inner == other.inner
            and (self.max_entries, self.max_bytes) == (other.max_entries, other.max_bytes)
        )

    __hash__ = object.__hash__

    @property
    def max_size(self) -> int | None:
        """``max_entries`` under its fleche 0.22.2 name."""
        return self.max_entries

    # --- reads: remember the access -----------------------------------------------------------
    def _lookup(self, key: Digest) -> Any:
        try:
            result = self.inner._lookup(key)
        except KeyError:
            self.misses += 1
            raise
        self.hits += 1
        self._touch(key)
        return result

    def _touch(self, key: Digest) -> None:
        now = time.time()
        self._touched[key] = now
        last = self._persisted.get(key)
        if not self._persist_access or (last is not None and now - last < self.touch_interval):
            return
        try:
            with self.inner._operation_context(key, intent=Intent.WRITE):
                record = self.inner._load_record(key)  # evicted meanwhile: never bring it back
                self.inner._store_record(key, _stamped(record, accessed=now))
        except (KeyError, Rejected):
            return
        self._persisted[key] = now

    # --- writes: stamp the record, enforce once no lock of ours is held ------------------------
    def save(self, call: Call) -> Digest:
        return save_computed(self, call)

    def _store_value(self, key: Digest, value: Any) -> None:
        self.inner._store_value(key, value)
        if self.max_bytes is not None:
            size = self.inner._value_size(key)
            if len(self._sizes) > _SIZES_KEPT:
                self._sizes.clear()
            self._sizes[key] = estimate_size(value) if size is None else size

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        now = time.time()
        fields: dict[str, Any] = {"accessed": now}
        if self.max_bytes is not None:
            fields["bytes"] = sum(self._size_of(d) for d in _digests(record))
        self.inner._store_record(key, _stamped(record, **fields))
        self._touched[key] = self._persisted[key] = now
        owner = current_owner()
        with self._mutex:
            if self._depth.get(owner):
                self._pending.add(owner)
                return
        self._enforce_quietly()

    def _size_of(self, value_key: str) -> int:
        size = self._sizes.get(value_key)
        if size is None:  # stored by digest only, or its size was dropped: ask the storage
            size = self.inner._value_size(Digest(value_key))
        return size or 0

    def evict(self, key: str) -> None:
        self.inner.evict(key)
        self._forget(key)

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return _Tracked(self, self.inner._operation_context(key, intent=intent))

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        return _AsyncTracked(self, self.inner._async_operation_context(key, intent=intent))

    def _enter(self, owner: object) -> None:
        with self._mutex:
            self._depth[owner] = self._depth.get(owner, 0) + 1

    def _leave(self, owner: object) -> bool:
        """Undo one ``_enter``; True when the owner left its last context with a save pending."""
        with self._mutex:
            depth = self._depth[owner] - 1
            if depth:
                self._depth[owner] = depth
                return False
            del self._depth[owner]
            if owner not in self._pending:
                return False
            self._pending.discard(owner)
            return True

    def _enforce_quietly(self) -> None:
        try:
            self.enforce()
        except (LockTimeoutError, StorageError) as e:  # the call is stored; the next save retries
            log.warning("%r could not enforce its limits: %s: %s", self, type(e).__name__, e)

    # --- enforcement ------------------------------------------------------------------------------
    def enforce(self) -> int:
        """Evict least recently used calls (and values no other call uses) until the cache is
        within its limits; returns how many calls were evicted. Runs after every save."""
        if self.max_bytes is None and sum(1 for _ in self.inner.list()) <= (self.max_entries or 0):
            return 0  # the common case, without the lock
        with self.inner._operation_context(_LIMIT_KEY, intent=Intent.WRITE):
            entries = self._scan()
            victims = self._victims(entries)
            if not victims:
                return 0
            doomed = {v.key for v in victims}
            for victim in victims:
                try:
                    self.inner.evict(victim.key)
                except KeyError:
                    pass
                self._forget(victim.key)
            used = {d for e in entries if e.key not in doomed for d in e.values}
            for value_key in {d for v in victims for d in v.values} - used:
                try:
                    self.inner._evict_value(Digest(value_key))
                except KeyError:
                    pass
        return len(victims)

    def _scan(self) -> list[_Entry]:
        """Every stored call with its access time and size (local accesses count too)."""
        entries = []
        for key, record in self.inner._query_records(QueryCall()):
            fleche = record.metadata.get("fleche") or {}
            accessed = float(fleche.get("accessed", fleche.get("created", 0.0)))
            nbytes = fleche.get("bytes")
            if nbytes is None and self.max_bytes is not None:  # stored before this limit existed
                nbytes = sum(self._size_of(d) for d in _digests(record))
            accessed = max(accessed, self._touched.get(key, 0.0))
            entries.append(_Entry(accessed, key, int(nbytes or 0), _digests(record)))
        live = {e.key for e in entries}
        for known in (self._touched, self._persisted):
            for stale in [k for k in list(known) if k not in live]:  # a snapshot: hits add keys
                known.pop(stale, None)
        return entries

    def _victims(self, entries: list[_Entry]) -> list[_Entry]:
        count, total = len(entries), sum(e.nbytes for e in entries)
        victims = []
        for entry in sorted(entries):  # least recently used first
            if (self.max_entries is None or count <= self.max_entries) and (
                self.max_bytes is None or total <= self.max_bytes
            ):
                break
            victims.append(entry)
            count, total = count - 1, total - entry.nbytes
        return victims

    def _forget(self, key: str) -> None:
        self._touched.pop(key, None)
        self._persisted.pop(key, None)

    def gc(self, grace: float | None = None) -> int:
        return self.inner.gc() if grace is None else self.inner.gc(grace)

    def stats(self) -> dict[str, Any]:
        """Entries and bytes (from the records), counted under the enforcement lock, so the
        figures are a consistent snapshot; plus values, hits, misses and the limits."""
        with self.inner._operation_context(_LIMIT_KEY, intent=Intent.WRITE):
            entries = self._scan()
        return {
            "entries": len(entries),
            "values": sum(1 for _ in self.inner.value_keys()),
            "bytes": sum(e.nbytes for e in entries) if self.max_bytes is not None else None,
            "hits": self.hits,
            "misses": self.misses,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
        }


class _Tracked:
    """An operation context of the inner cache that counts its holders, and enforces the limits
    when a holder that saved leaves its last one (so enforcement never waits while holding a key
    lock that another enforcer may need)."""

    __slots__ = ("host", "inner", "owner")

    def __init__(self, host: SizeLimitedCache, inner: AbstractContextManager[Any]) -> None:
        self.host, self.inner = host, inner
        self.owner: object = None

    def __enter__(self) -> Any:
        entered = self.inner.__enter__()
        self.owner = current_owner()
        self.host._enter(self.owner)
        return entered

    def __exit__(self, *exc: Any) -> None:
        try:
            self.inner.__exit__(*exc)
        finally:
            if self.host._leave(self.owner):
                self.host._enforce_quietly()


class _AsyncTracked:
    """The same for async callers; enforcement runs in a worker thread, off the event loop."""

    __slots__ = ("host", "inner", "owner")

    def __init__(self, host: SizeLimitedCache, inner: Any) -> None:
        self.host, self.inner = host, inner
        self.owner: object = None

    async def __aenter__(self) -> Any:
        entered = await self.inner.__aenter__()
        self.owner = current_owner()
        self.host._enter(self.owner)
        return entered

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.inner.__aexit__(*exc)
        finally:
            if self.host._leave(self.owner):
                import asyncio  # only async callers get here; fleche does not import it otherwise

                await asyncio.to_thread(self.host._enforce_quietly)


def _digests(record: DigestedCall) -> tuple[str, ...]:
    values = list(record.arguments.values())
    if record.result is not NO_RESULT:
        values.append(record.result)
    return tuple(dict.fromkeys(values))


def _stamped(record: DigestedCall, **fields: Any) -> DigestedCall:
    """A copy of ``record`` with ``fields`` added to ``metadata["fleche"]``."""
    fleche = {**(record.metadata.get("fleche") or {}), **fields}
    return DigestedCall(
        record.name, record.arguments, {**record.metadata, "fleche": fleche}, record.module,
        record.version, record.code_digest, record.result,
    )  # fmt: skip


def estimate_size(value: Any) -> int:
    """Bytes a value takes once serialised: exact for bytes and arrays, else its pickle's length
    (out-of-band buffers are counted, never copied)."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    import cloudpickle

    buffers: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception:  # not picklable (kept in memory only): its shallow size is what we know
        return sys.getsizeof(value)
    return len(data) + sum(b.raw().nbytes for b in buffers)
