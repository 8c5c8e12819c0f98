"""The storage contracts (SPEC section 5): operation contexts, key management, backends, domains.

What is stored (values, call records) and how it is stored (a dict, files, SQL, Redis) are two axes
joined by mixins. Every public operation goes through one door: validate the key, enter
``self._operation_context(key, intent=...)``, call the private hook.
"""

from __future__ import annotations

import builtins
import enum
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

from .._log import get_logger
from ..call import DigestedCall, QueryCall
from ..digest import DIGEST_LENGTH, Digest, digest, is_hex_key
from ..errors import AmbiguousDigestError, CorruptEntryWarning, InvalidKeyError

log = get_logger(__name__)

__all__ = [
    "NULL_CONTEXT",
    "BatchScope",
    "CallMixin",
    "CallStorage",
    "Intent",
    "KeyManagement",
    "OperationContext",
    "StorageBackend",
    "ValueMixin",
    "ValueStorage",
    "batches_open",
    "check_key",
    "keeping_corrupt",
    "pause_batches",
]

_keep_corrupt: ContextVar[bool] = ContextVar("fleche_keep_corrupt", default=False)


@contextmanager
def keeping_corrupt() -> Iterator[None]:
    """In the block a corrupt entry is still a warned miss but stays stored (``verify --keep``)."""
    token = _keep_corrupt.set(True)
    try:
        yield
    finally:
        _keep_corrupt.reset(token)


class Intent(enum.Enum):
    """Why an operation context is entered: to read, to write, or to compute a missing entry."""

    READ = "read"
    WRITE = "write"
    COMPUTE = "compute"


class _NullContext:
    """A reusable do-nothing context manager (cheaper than ``contextlib.nullcontext()`` per call)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NULL_CONTEXT = _NullContext()


class _SyncAsAsync:
    """An async context manager around a sync one that does not block."""

    __slots__ = ("inner",)

    def __init__(self, inner: AbstractContextManager[Any]) -> None:
        self.inner = inner

    async def __aenter__(self) -> Any:
        return self.inner.__enter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)


class _OpenBatches(threading.local):
    def __init__(self) -> None:
        self.open: list[BatchScope] = []


_batches = _OpenBatches()


def pause_batches() -> None:
    """Commit what the batches open in this thread hold, newest first.

    The lock code calls it before it waits for a key that another owner holds: a batch keeps its
    store's write lock (a transaction) between the keys it writes, so it must never wait for a key
    while it holds that, or the key's holder, about to write, would wait for the batch (SPEC 4).
    """
    for scope in reversed(_batches.open):
        scope.pause()


def batches_open() -> bool:
    """True when this thread has a batch open (see :meth:`OperationContext.batch`)."""
    return bool(_batches.open)


class BatchScope:
    """The outermost ``batch()`` block of one store in one thread: registers itself while open, so
    that :func:`pause_batches` reaches it. Subclasses say how to commit (``pause``, ``finish``)."""

    def __init__(self) -> None:
        self.depth = 0

    def begin(self) -> None:
        """Called when the outermost block is entered."""

    def pause(self) -> None:
        """Commit what the batch holds now; later writes start anew (a no-op by default)."""

    def finish(self, ok: bool) -> None:
        """Leave the outermost block: commit (``ok``) or roll back what is not committed."""

    def __enter__(self) -> None:
        self.depth += 1
        if self.depth == 1:
            self.begin()
            _batches.open.append(self)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.depth -= 1
        if self.depth:
            return
        try:
            _batches.open.remove(self)
        finally:
            self.finish(exc_type is None)


class _AllHeld:
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = keys

    def __enter__(self) -> set[str]:
        return set(self.keys)

    def __exit__(self, *exc: Any) -> None:
        return None


class OperationContext:
    """Hosts ``_operation_context``: mixins chain with ``super()`` to add locks or transactions."""

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return NULL_CONTEXT

    def _holding(self, keys: Iterable[str]) -> AbstractContextManager[set[str]]:
        """The WRITE locks of many keys, taken without waiting: entering gives the keys held
        (a key another owner holds is left out). Without locks, every key is held."""
        return _AllHeld(keys)

    def batch(self) -> AbstractContextManager[Any]:
        """A block whose writes, in this thread, share one transaction (or pipeline), so that many
        writes cost one commit; a no-op for stores without transactions.

        Reentrant: a block inside another, and each key's WRITE inside it, join the outermost,
        which commits when it ends (an exception rolls back what it has not committed). Per-key
        locks are still taken; before waiting for a key another owner holds, the batch commits
        what it has (:func:`pause_batches`). Other threads and processes see the writes once they
        commit, and wait meanwhile to write to a store that allows one writer (SQLite).
        """
        return NULL_CONTEXT

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        """The same for async callers; by default the sync context entered without waiting."""
        return _SyncAsAsync(self._operation_context(key, intent=intent))


def check_key(key: object, *, full: bool = True) -> Digest:
    """Return ``key`` as a ``Digest`` or raise ``InvalidKeyError`` (before any path or query).

    A ``Digest`` is checked too: anyone can build ``D("../../etc/passwd")``.
    """
    if not is_hex_key(key, full=full):
        what = (
            "a full digest (32 hex characters)" if full else "a digest prefix (1-32 hex characters)"
        )
        raise InvalidKeyError(f"{key!r} is not {what}")
    return key if type(key) is Digest else Digest(key)


class KeyManagement(OperationContext):
    """Derives ``contains``, ``evict``, ``expand`` and ``shrink`` from ``list``/``_contains``/``_evict``.

    Backends that can scan a key range override ``_candidates`` instead of listing everything.
    """

    def list(self) -> Iterator[Digest]:
        """Every stored key (in no particular order unless a backend says so)."""
        raise NotImplementedError

    def _contains(self, key: Digest) -> bool:
        raise NotImplementedError

    def _evict(self, key: Digest) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Digest]:
        return self.list()

    def __len__(self) -> int:
        return sum(1 for _ in self.list())

    def __contains__(self, key: object) -> bool:
        return is_hex_key(key, full=True) and self.contains(key)  # type: ignore[arg-type]

    def contains(self, key: str) -> bool:
        """True when ``key`` is stored."""
        key = check_key(key)
        with self._operation_context(key, intent=Intent.READ):
            return self._contains(key)

    def _contains_many(self, keys: builtins.list[Digest]) -> set[Digest]:
        """Which of ``keys`` are stored: one query where a backend overrides it, else a loop."""
        return {key for key in keys if self.contains(key)}

    def evict(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` when it is not stored."""
        key = check_key(key)
        with self._operation_context(key, intent=Intent.WRITE):
            self._evict(key)

    def _corrupt(self, key: Digest, error: Exception) -> KeyError:
        """A corrupt entry is a miss: warn, evict it when possible, return the KeyError to raise.

        Backends call ``raise self._corrupt(key, e) from e`` when an entry fails its checksum or
        signature, so a bad entry is never served and never crashes the caller.
        """
        warnings.warn(
            f"{type(self).__name__}: entry {key} is corrupt ({error}); treated as a miss",
            CorruptEntryWarning,
            stacklevel=4,
        )
        if _keep_corrupt.get():
            return KeyError(key)
        try:
            self._evict(key)
        except Exception as e:  # read-only media or already gone: the miss stands
            log.debug("could not evict corrupt entry %s: %s", key, e)
        return KeyError(key)

    def _candidates(self, prefix: str, limit: int) -> builtins.list[Digest]:
        """The ``limit`` smallest stored keys that start with ``prefix`` (a scan by default)."""
        return sorted(k for k in self.list() if k.startswith(prefix))[:limit]

    def expand(self, prefix: str) -> Digest:
        """The one stored key that starts with ``prefix``.

        Raises ``KeyError`` when none does and ``AmbiguousDigestError`` (listing up to 10
        candidates) when several do.
        """
        prefix = check_key(prefix, full=False)
        found = self._candidates(prefix, 2)
        if not found:
            raise KeyError(prefix)
        if len(found) > 1:
            raise AmbiguousDigestError(prefix, self._candidates(prefix, 11))
        return found[0]

    def _is_unique(self, key: Digest, length: int) -> bool:
        return self._candidates(key[:length], 2) in ([key], [])

    def shrink_one(self, key: str) -> Digest:
        """The shortest prefix of ``key`` that no other stored key shares (binary search)."""
        key = check_key(key)
        low, high = 1, DIGEST_LENGTH
        while low < high:
            middle = (low + high) // 2
            if self._is_unique(key, middle):
                high = middle
            else:
                low = middle + 1
        return Digest(key[:low])

    def shrink(self, *keys: str) -> Any:
        """Shortest unambiguous prefix of each key: one ``Digest`` for one key, else a list."""
        shrunk = [self.shrink_one(k) for k in keys]
        return shrunk[0] if len(shrunk) == 1 else shrunk


class StorageBackend(KeyManagement):
    """The primitive contract: ``put(value, key)`` and ``get(key)``; knows media, not meaning."""

    def _put(self, key: Digest, value: Any) -> None:
        raise NotImplementedError

    def _get(self, key: Digest) -> Any:
        raise NotImplementedError

    def put(self, value: Any, key: str) -> None:
        """Store ``value`` under ``key`` (overwriting)."""
        key = check_key(key)
        with self._operation_context(key, intent=Intent.WRITE):
            self._put(key, value)

    def get(self, key: str) -> Any:
        """The value under ``key``; ``KeyError`` on a miss."""
        key = check_key(key)
        with self._operation_context(key, intent=Intent.READ):
            return self._get(key)


class UrlIdentity:
    """A server storage is what its URL names: compared, hashed, pickled and shown by its URL.

    Pickling sends the URL alone (no engine, client, socket or lock travels); the copy connects on
    first use. ``options.url(mask=True)`` hides the password and signing key in the repr.
    """

    options: Any

    def to_url(self) -> str:
        """The URL this storage was made from, normalised (``cache(url)`` gives it back)."""
        return str(self.options.url())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_url() == other.to_url()

    def __hash__(self) -> int:
        return hash((type(self), self.to_url()))

    def __reduce__(self) -> Any:
        return type(self), (self.to_url(),)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options.url(mask=True)!r})"


class ValueStorage(KeyManagement):
    """Domain contract for values: content-addressed ``save``/``load``."""

    def save(self, value: Any, key: str | None = None) -> Digest:
        raise NotImplementedError

    def load(self, key: str) -> Any:
        raise NotImplementedError

    def _save_many(self, items: builtins.list[tuple[Digest, Any]]) -> None:
        """Store many ``(key, value)`` pairs (stores that write many rows at once override it)."""
        for key, value in items:
            self.save(value, key)


class CallStorage(KeyManagement):
    """Domain contract for call records: ``save``/``load`` by lookup key, and ``query``."""

    def save(self, call: DigestedCall, key: str | None = None) -> Digest:
        raise NotImplementedError

    def load(self, key: str) -> DigestedCall:
        raise NotImplementedError

    def query(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        raise NotImplementedError

    def _save_many(self, items: builtins.list[tuple[Digest, DigestedCall]]) -> None:
        """Store many ``(key, record)`` pairs; the caller holds the keys' WRITE locks
        (:meth:`_holding`). Stores that write many rows at once override it."""
        for key, record in items:
            self.save(record, key)


class ValueMixin(ValueStorage):
    """Values on a ``StorageBackend``, keyed by ``digest(value)``. Needs ``put``/``get`` of its host."""

    def save(self, value: Any, key: str | None = None) -> Digest:
        """Store ``value`` under its digest (or ``key`` when the caller already computed it)."""
        key = digest(value) if key is None else check_key(key)
        self.put(value, key)  # type: ignore[attr-defined]
        return key

    def load(self, key: str) -> Any:
        """The value whose digest is ``key``; ``KeyError`` on a miss."""
        return self.get(key)  # type: ignore[attr-defined]


class CallMixin(CallStorage):
    """Call records on a ``StorageBackend``, keyed by lookup key (a save overwrites)."""

    def save(self, call: DigestedCall, key: str | None = None) -> Digest:
        """Store the record of ``call`` under its lookup key and return the key."""
        key = call.lookup_key() if key is None else check_key(key)
        self.put(call, key)  # type: ignore[attr-defined]
        return key

    def load(self, key: str) -> DigestedCall:
        """The record under ``key``; ``KeyError`` on a miss."""
        return self.get(key)  # type: ignore[attr-defined]

    def query(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        """Records matching ``template``, by scanning (stores with indexes override this)."""
        wanted = template.argument_digests()
        for key in list(self.list()):
            try:
                record = self.load(key)
            except KeyError:  # evicted meanwhile
                continue
            if template.matches(record, arg_digests=wanted):
                yield key, record
