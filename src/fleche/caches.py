"""Caches: a value storage and a call storage joined, and the wrappers that compose them (SPEC 7)."""

from __future__ import annotations

import builtins
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from ._log import get_logger
from .call import NO_RESULT, Call, DigestedCall, LazyCall, QueryCall, now
from .digest import Digest
from .errors import CorruptEntryWarning, IntegrityError, Rejected, SaveError, StorageError
from .storage.base import (
    NULL_CONTEXT,
    CallMixin,
    CallStorage,
    Intent,
    ValueMixin,
    ValueStorage,
    check_key,
)

# loads that are exactly ``get``: their fast form is ``_get`` (a storage overriding load keeps it)
_PLAIN_LOADS = (ValueMixin.load, CallMixin.load)

if TYPE_CHECKING:
    from .composite import (
        CachePool,
        CacheStack,
        FilteredCache,
        ReadOnlyCache,
        SizeLimitedCache,
    )
    from .query import QueryIterator

__all__ = [
    "DEFAULT_GC_GRACE",
    "TRANSFER_BATCH",
    "BaseCache",
    "Cache",
    "CachePool",
    "CacheStack",
    "FilteredCache",
    "ReadOnlyCache",
    "RefreshingCache",
    "Rejected",
    "SizeLimitedCache",
    "VoidCache",
]

DEFAULT_GC_GRACE = 3600.0
"""Seconds a value must have been unreferenced before :meth:`BaseCache.gc` removes it."""
ABANDONED_TEMP_AGE = 60.0  # a temp file nobody wrote to for this long belongs to a dead writer
TRANSFER_BATCH = 500
"""Calls :meth:`BaseCache.transfer` writes per batch (one commit each on stores with transactions)."""

# defined in composite.py (which builds on this module); importable from here as well
_COMPOSITE = frozenset(
    {"CachePool", "CacheStack", "FilteredCache", "ReadOnlyCache", "SizeLimitedCache"}
)


def __getattr__(name: str) -> Any:
    if name in _COMPOSITE:
        from . import composite

        return getattr(composite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


log = get_logger(__name__)
T = TypeVar("T")

# a call to store: its key, its record, and its values (key, value), the result last
_Entry = tuple[Digest, DigestedCall, list[tuple[Digest, Any]]]


class BaseCache:
    """The cache contract every cache implements; see :class:`Cache` for the plain one.

    Every cache (plain, stacked, pooled, read-only, size-limited, void) answers the same calls:
    ``save``, ``load``, ``load_value``, ``contains``, ``evict``, ``expand``, ``shrink``,
    ``query``, ``transfer``, ``gc`` and ``stats``.

    >>> from fleche import cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> store = Cache.from_url("memory://")
    >>> with cache(store):
    ...     cube(2)
    8
    >>> key = cube.digest(2)
    >>> store.contains(key), store.load(key).result, list(store.list()) == [key]
    (True, 8, True)
    >>> store.expand(key[:4]) == key, key.startswith(store.shrink(key))
    (True, True)
    >>> store.evict(key), store.gc(grace=0), store.contains(key)
    (None, 2, False)
    """

    hits: int = 0
    misses: int = 0
    # a miss's writes in one go, when the storages offer it (see ``Cache._readers``)
    _write_call: Callable[..., Exception | None] | None = None

    # --- the contract -----------------------------------------------------------------------------
    def save(self, call: Call) -> Digest:
        """Store a computed call (its argument values, result and record); returns its key."""
        raise NotImplementedError

    def load(self, key: str) -> LazyCall:
        """The stored call under ``key`` (arguments and result load on access); KeyError on miss."""
        return LazyCall(check_key(key), self._load_record(key), self)

    def _load_record(self, key: str) -> DigestedCall:
        raise NotImplementedError

    def load_value(self, key: str) -> Any:
        """A stored value by its digest; KeyError on miss."""
        raise NotImplementedError

    def contains(self, key: str) -> bool:
        """True when a call record is stored under ``key``."""
        raise NotImplementedError

    def evict(self, key: str) -> None:
        """Remove the call record under ``key`` (values stay until :meth:`gc`)."""
        raise NotImplementedError

    def expand(self, prefix: str) -> Digest:
        """The one call key starting with ``prefix`` (KeyError / AmbiguousDigestError otherwise)."""
        raise NotImplementedError

    def shrink(self, *keys: str) -> Any:
        """Shortest unambiguous prefix of each call key (one Digest for one key, else a list)."""
        raise NotImplementedError

    def values_expand(self, prefix: str) -> Digest:
        """The one stored value digest starting with ``prefix``."""
        raise NotImplementedError

    def _query_records(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        raise NotImplementedError

    def list(self) -> Iterator[Digest]:
        """Every stored call key."""
        raise NotImplementedError

    def value_keys(self) -> Iterator[Digest]:
        """Every stored value digest."""
        raise NotImplementedError

    def _store_value(self, key: Digest, value: Any) -> None:
        raise NotImplementedError

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        raise NotImplementedError

    def _evict_value(self, key: Digest) -> None:
        raise NotImplementedError

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        raise NotImplementedError

    def batch(self) -> AbstractContextManager[Any]:
        """A block whose writes, in this thread, commit together: many saves for one commit.

        On the embedded default and SQL, the calls stored in the block share one transaction; on
        other stores it changes nothing. Blocks nest (the outermost commits); each call is still
        written under its key's lock, its values before its record, and the batch commits what it
        holds before it waits for a key that another thread or process holds. An exception rolls
        back what the block has not committed. Meanwhile other writers of the store wait (SQLite
        allows one writer), so keep blocks short: :meth:`transfer` commits every
        :data:`TRANSFER_BATCH` calls.

        >>> from fleche import cache, fleche
        >>> @fleche
        ... def cube(x):
        ...     return x ** 3
        >>> store = Cache.from_url("memory://")
        >>> with cache(store), store.batch():
        ...     [cube(x) for x in range(3)]
        [0, 1, 8]
        """
        return NULL_CONTEXT

    def _stored_among(self, keys: builtins.list[Digest]) -> set[Digest]:
        """Which of ``keys`` are stored calls (one query where the storage can)."""
        return {key for key in keys if self.contains(key)}

    # --- optional facts a storage may know (None: it cannot tell) ---------------------------------
    def _value_size(self, key: Digest) -> int | None:
        """Bytes the value ``key`` occupies in the store, when the storage can tell."""
        return None

    def _value_age(self, key: Digest) -> float | None:
        """Seconds since the value ``key`` was last written, when the storage can tell."""
        return None

    def _value_context(self, key: Digest) -> AbstractContextManager[Any]:
        """The WRITE context of a value key (gc re-checks a value's age under it)."""
        return NULL_CONTEXT

    def _staging(self, result: Any, key_of: Callable[[], Digest]
                 ) -> AbstractContextManager[Callable[[], Digest]]:  # fmt: skip
        """A block whose target gives ``result``'s key (``key_of()``): a large result may be
        written meanwhile, before its key is known (``storage._staging``; a plain cache's
        storages decide)."""
        return nullcontext(key_of)

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str) -> BaseCache:
        """A cache from a URL (``memory://``, ``file:///dir``, ``sqlite:///c.db``, ...)."""
        from .config import cache_from_url

        return cache_from_url(url)

    @classmethod
    def from_config(cls, config: Any) -> BaseCache:
        """A cache from a configuration table (a dict; a list means a stack), as in fleche.toml."""
        from .config import cache_from_config

        return cache_from_config(config)

    # --- derived from the contract ----------------------------------------------------------------
    def _lookup(self, key: Digest) -> Any:
        """The result stored for ``key``: the hit path. KeyError on a miss."""
        try:
            record = self._load_record(key)
            result = self.load_value(record.result)
        except KeyError:
            self.misses += 1
            raise
        self.hits += 1
        return result

    def _store(self, key: Digest, record: DigestedCall, values: Iterable[tuple[Digest, Any]]):
        """Write values, then the record that refers to them, under the key's WRITE context."""
        with self._operation_context(key, intent=Intent.WRITE):
            for value_key, value in values:
                self._store_value(value_key, value)
            self._store_record(key, record)

    def _store_many(self, entries: builtins.list[_Entry]) -> None:
        """Store many calls as :meth:`_store` stores one (caches on stores that write many rows
        at once override it)."""
        for key, record, values in entries:
            self._store(key, record, values)

    def query(self, template: QueryCall | None = None) -> QueryIterator:
        """Stored calls matching ``template`` (everything when None), as a lazy result."""
        from .query import QueryIterator

        return QueryIterator(self, template or QueryCall())

    def transfer(self, other: BaseCache, pop: bool = False, overwrite: bool = False, *,
                 batch_size: int = TRANSFER_BATCH) -> int:  # fmt: skip
        """Copy every call (record and values) into ``other``; with ``pop`` remove them here.

        Returns the number of calls copied. Existing calls in ``other`` are kept unless
        ``overwrite``. Calls are written in batches of ``batch_size`` (see :meth:`batch` and
        :meth:`QueryIterator.transfer <fleche.query.QueryIterator.transfer>`).
        """
        return self.query().transfer(other, pop=pop, overwrite=overwrite, batch_size=batch_size)

    def filter(self, predicate: Any) -> FilteredCache:
        """A read-only view of the calls matching ``predicate`` (a function of a
        :class:`~fleche.call.LazyCall`, or a :class:`~fleche.call.QueryCall` template)."""
        from .composite import FilteredCache

        return FilteredCache(self, predicate)

    def gc(self, grace: float = DEFAULT_GC_GRACE) -> int:
        """Remove values that no call refers to and have not been written for ``grace`` seconds.

        Safe while other threads and processes write: a writer stores a call's values before its
        record, so a value it just wrote is young and kept. Where the storage can tell a value's
        age (a file's mtime, a ``written`` column) that age is used, re-checked under the value's
        lock; where it cannot, a value counts as unreferenced from the first ``gc`` of this cache
        object that saw it so, and a later ``gc`` at least ``grace`` seconds on removes it
        (``grace=0`` removes at once). Returns how many values were removed.
        """
        candidates = list(self.value_keys())  # listed first: a value written later is no candidate
        referenced = self._referenced_values()
        first_seen: dict[str, float] = self.__dict__.setdefault("_gc_first_seen", {})
        started = time.time()
        removed = 0
        for key in candidates:
            if key in referenced:
                first_seen.pop(key, None)
            elif self._collect_value(key, grace, started, first_seen):
                removed += 1
        self._sweep_abandoned(max(grace, ABANDONED_TEMP_AGE))
        return removed

    def _sweep_abandoned(self, min_age: float) -> None:
        """Remove what writers killed mid-write left behind (temp files), where a storage has any."""

    def _referenced_values(self) -> set[str]:
        referenced: set[str] = set()
        for _, record in self._query_records(QueryCall()):
            referenced.update(record.arguments.values())
            if record.result is not NO_RESULT:
                referenced.add(record.result)
        return referenced

    def _collect_value(self, key: Digest, grace: float, now: float, first_seen: dict) -> bool:
        with self._value_context(key):  # no writer rewrites the value between check and delete
            age = self._value_age(key)
            if age is None:
                age = now - first_seen.setdefault(key, now)
            if age < grace:
                return False
            try:
                self._evict_value(key)
            except KeyError:
                return False
        first_seen.pop(key, None)
        return True

    def stats(self) -> dict[str, Any]:
        """Entries (calls), values, bytes (None when the storage cannot tell), hits and misses.

        Hits and misses are counted by this cache object, in this process.
        """
        values = list(self.value_keys())
        sizes = [self._value_size(key) for key in values]
        return {
            "entries": sum(1 for _ in self.list()),
            "values": len(values),
            "bytes": None if None in sizes else sum(s or 0 for s in sizes),
            "hits": self.hits,
            "misses": self.misses,
        }

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.contains(key)

    def __iter__(self) -> Iterator[Digest]:
        return self.list()


class Cache(BaseCache):
    """A value storage and a call storage: ``Cache(values, calls)``.

    ``Cache.from_url(url)`` makes one from a URL; ``cache(url)`` makes and activates one.

    >>> from fleche import cache, fleche
    >>> from fleche.storage import CallMemory, ValueMemory
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> store = Cache(ValueMemory(), CallMemory())
    >>> with cache(store):
    ...     cube(2)
    8
    >>> store.load(cube.digest(2)).result
    8
    """

    def __init__(self, values: ValueStorage, calls: CallStorage, *, url: str | None = None):
        self.values = values
        self.calls = calls
        self.url = url
        self._readers()

    def _readers(self) -> None:
        # the hit path skips key validation (keys come from the digest) and, where a storage's
        # READ context does nothing, the context too
        self._read_record = _fast_reader(self.calls)
        self._read_value = _fast_reader(self.values)
        joint = getattr(self.calls, "_joint_reader", None)  # record and value in one read
        self._read_result = joint(self.values) if joint is not None else None
        writer = getattr(self.calls, "_joint_writer", None)  # a miss's rows in a few statements
        plain = all(
            getattr(type(self), name) is getattr(Cache, name)
            for name in ("_store_value", "_store_record", "_operation_context")
        )
        self._write_call = writer(self.values) if writer is not None and plain else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_read_record", None)
        state.pop("_read_value", None)
        state.pop("_read_result", None)
        state.pop("_write_call", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._readers()

    def _lookup(self, key: Digest) -> Any:
        try:
            if self._read_result is not None:
                result = self._read_result(key)
            else:
                record = self._read_record(key)
                result = self._read_value(record.result)
        except KeyError:
            self.misses += 1
            raise
        except IntegrityError as e:
            self.misses += 1
            warnings.warn(
                f"corrupt entry for {key}: {e}; treated as a miss", CorruptEntryWarning, 2
            )
            raise KeyError(key) from None
        self.hits += 1
        return result

    def _sweep_abandoned(self, min_age: float) -> None:
        for storage in (self.values, self.calls):
            sweep = getattr(storage, "sweep_temps", None)
            if sweep is not None:
                sweep(min_age)

    def __repr__(self) -> str:
        if self.url:
            from ._urls import masked  # here: urllib is not needed to import fleche

            return f"Cache({masked(self.url)!r})"  # never a password or signing key in a repr
        return f"Cache({self.values!r}, {self.calls!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cache):
            return NotImplemented
        return type(self) is type(other) and (self.values, self.calls) == (
            other.values,
            other.calls,
        )

    __hash__ = object.__hash__

    def __reduce__(self) -> Any:
        if self.url and not self.url.startswith("memory:"):
            from .config import cache_from_url

            return cache_from_url, (self.url,)
        return object.__reduce__(self)

    def _load_record(self, key: str) -> DigestedCall:
        return self.calls.load(key)

    def load_value(self, key: str) -> Any:
        try:
            return self.values.load(key)
        except IntegrityError as e:
            warnings.warn(f"corrupt value {key}: {e}; treated as a miss", CorruptEntryWarning, 2)
            raise KeyError(key) from None

    def contains(self, key: str) -> bool:
        return self.calls.contains(key)

    def evict(self, key: str) -> None:
        self.calls.evict(key)

    def expand(self, prefix: str) -> Digest:
        return self.calls.expand(prefix)

    def shrink(self, *keys: str) -> Any:
        return self.calls.shrink(*keys)

    def values_expand(self, prefix: str) -> Digest:
        return self.values.expand(prefix)

    def list(self) -> Iterator[Digest]:
        return self.calls.list()

    def value_keys(self) -> Iterator[Digest]:
        return self.values.list()

    def _query_records(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        return self.calls.query(template)

    def _staging(self, result: Any, key_of: Callable[[], Digest]
                 ) -> AbstractContextManager[Callable[[], Digest]]:  # fmt: skip
        stage = getattr(self.values, "stage", None)
        return stage(result, key_of) if stage is not None else nullcontext(key_of)

    def _store_value(self, key: Digest, value: Any) -> None:
        self.values.save(value, key)

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        self.calls.save(record, key)

    def _evict_value(self, key: Digest) -> None:
        self.values.evict(key)

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return self.calls._operation_context(key, intent=intent)

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        return self.calls._async_operation_context(key, intent=intent)

    def batch(self) -> AbstractContextManager[Any]:
        # the values' batch is entered last, so it commits first: never a record without its value
        return _joined(self.calls.batch(), self.values.batch())

    def _stored_among(self, keys: builtins.list[Digest]) -> set[Digest]:
        return self.calls._contains_many(keys)

    def _store_many(self, entries: builtins.list[_Entry]) -> None:
        """Many calls in one batch: the locks of their keys taken without waiting, then every
        value, then every record, each in as few statements as the storages allow; a call whose
        key another owner holds is stored after, on its own, once its key is free."""
        with self.batch():
            with self.calls._holding(key for key, _, _ in entries) as held:
                ready = [entry for entry in entries if entry[0] in held]
                values = {key: value for _, _, pairs in ready for key, value in pairs}
                self.values._save_many(list(values.items()))
                self.calls._save_many([(key, record) for key, record, _ in ready])
            for key, record, pairs in entries:
                if key not in held:
                    self._store(key, record, pairs)  # waits for its key (the batch commits first)

    # optional storage hooks: ``stored_size(key)`` (bytes) and ``stored_age(key)`` (seconds since
    # the value was written; a storage that skips rewriting an existing value must refresh it)
    def _value_size(self, key: Digest) -> int | None:
        size = getattr(self.values, "stored_size", None)
        if size is None:
            return None
        try:
            return int(size(key))
        except KeyError:
            return 0

    def _value_age(self, key: Digest) -> float | None:
        age = getattr(self.values, "stored_age", None)
        if age is None:
            return None
        try:
            return float(age(key))
        except KeyError:
            return None

    def _value_context(self, key: Digest) -> AbstractContextManager[Any]:
        return self.values._operation_context(key, intent=Intent.WRITE)

    def save(self, call: Call) -> Digest:
        return save_computed(self, call)


def save_computed(cache: BaseCache, call: Call) -> Digest:
    """Store a computed ``Call`` (arguments, result, record) in ``cache``; returns its key."""
    if call.result is NO_RESULT:
        raise ValueError("cannot save a call without a result")
    record = call.digested()
    if "fleche" not in record.metadata:
        record.metadata = {**record.metadata, "fleche": {"created": now()}}
    key = record.lookup_key()
    values = list(zip(record.arguments.values(), call.arguments.values(), strict=True))
    values.append((record.result, call.result))
    save_call(cache, key, record, values)
    return key


@contextmanager
def _joined(*scopes: AbstractContextManager[Any]) -> Iterator[None]:
    """Enter ``scopes`` in order; leave them in reverse (the last one entered commits first)."""
    with ExitStack() as stack:
        for scope in scopes:
            stack.enter_context(scope)
        yield


def _fast_reader(storage: Any) -> Any:
    """``storage._get`` when its READ context is a no-op, else the checked ``storage.load``."""
    get = getattr(storage, "_get", None)
    context = storage._operation_context("0" * 32, intent=Intent.READ)
    if get is not None and context is NULL_CONTEXT and type(storage).load in _PLAIN_LOADS:
        return get
    return storage.load


def save_call(
    cache: BaseCache,
    key: Digest,
    record: DigestedCall,
    values: list[tuple[Digest, Any]],
    *,
    store_arguments: bool = True,
) -> bool:
    """Store a computed call; arguments that cannot be stored are kept by digest only.

    The result is stored before the record, so no record ever points at a missing result. Returns
    False (with a warning) when the result or the record cannot be stored (a serialiser failure,
    a full disk, a lost connection): the caller still gets its result, nothing is recorded then.
    """
    *arguments, (result_key, result) = values
    joint = cache._write_call
    try:
        with cache._operation_context(key, intent=Intent.WRITE):
            if joint is not None:  # the storages write it all at once (same checks, same order)
                error = joint(key, record, arguments if store_arguments else (), result_key, result)
                if error is not None:
                    _unstorable(record, error)
                    return False
                return True
            if store_arguments:
                for value_key, value in arguments:
                    try:
                        cache._store_value(value_key, value)
                    except (SaveError, TypeError, ValueError, AttributeError) as e:
                        log.debug("argument %s stored by digest only: %s", value_key, e)
            try:
                cache._store_value(result_key, result)
            except Rejected:
                raise
            except Exception as e:  # any serialiser failure: the caller still gets its result
                _unstorable(record, e)
                return False
            cache._store_record(key, record)
    except Rejected:
        raise
    except StorageError as e:  # the record (or its transaction) failed: nothing was recorded
        _unstorable(record, e)
        return False
    return True


def serialise_values(
    serialise: Callable[[Digest, Any], T],
    arguments: Iterable[tuple[Digest, Any]],
    result_key: Digest,
    result: Any,
) -> dict[Digest, T] | Exception:
    """A miss's values serialised by ``serialise(key, value)`` before anything is written, for the
    storages' joint writers (see ``save_call``): an argument that cannot be serialised is left
    out (kept by digest only, as the generic path keeps it); a result that cannot be gives its
    error instead, and nothing is to be written."""
    done: dict[Digest, T] = {}
    for value_key, value in arguments:
        try:
            done[value_key] = serialise(value_key, value)
        except (SaveError, TypeError, ValueError, AttributeError) as e:
            log.debug("argument %s stored by digest only: %s", value_key, e)
    try:
        done[result_key] = serialise(result_key, result)
    except Exception as e:  # any serialiser failure: the caller reports it
        return e
    return done


def _unstorable(record: DigestedCall, error: Exception) -> None:
    from .errors import UnstorableResultWarning

    warnings.warn(
        f"the result of {record.name} could not be stored ({type(error).__name__}: {error}); "
        "it was returned without being cached",
        UnstorableResultWarning,
        stacklevel=5,
    )


class VoidCache(Cache):
    """Stores nothing: every call computes.

    What ``cache("void")`` and ``FLECHE_DISABLE=1`` give.

    >>> from fleche import cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> with cache(VoidCache()):
    ...     cube(5), cube.contains(5)
    (125, False)
    """

    def __init__(self) -> None:
        from .storage.void import CallVoid, ValueVoid

        super().__init__(ValueVoid(), CallVoid(), url="void://")

    def __repr__(self) -> str:
        return "VoidCache()"

    def __reduce__(self) -> Any:
        return VoidCache, ()


class _Delegating(BaseCache):
    """Forwards everything to ``self.inner``; subclasses override what they change."""

    def __init__(self, inner: BaseCache) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.inner == other.inner

    __hash__ = object.__hash__

    def save(self, call: Call) -> Digest:
        return self.inner.save(call)

    def _load_record(self, key: str) -> DigestedCall:
        return self.inner._load_record(key)

    def load_value(self, key: str) -> Any:
        return self.inner.load_value(key)

    def contains(self, key: str) -> bool:
        return self.inner.contains(key)

    def evict(self, key: str) -> None:
        self.inner.evict(key)

    def expand(self, prefix: str) -> Digest:
        return self.inner.expand(prefix)

    def shrink(self, *keys: str) -> Any:
        return self.inner.shrink(*keys)

    def values_expand(self, prefix: str) -> Digest:
        return self.inner.values_expand(prefix)

    def list(self) -> Iterator[Digest]:
        return self.inner.list()

    def value_keys(self) -> Iterator[Digest]:
        return self.inner.value_keys()

    def _query_records(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        return self.inner._query_records(template)

    def _store_value(self, key: Digest, value: Any) -> None:
        self.inner._store_value(key, value)

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        self.inner._store_record(key, record)

    def _evict_value(self, key: Digest) -> None:
        self.inner._evict_value(key)

    def _value_size(self, key: Digest) -> int | None:
        return self.inner._value_size(key)

    def _value_age(self, key: Digest) -> float | None:
        return self.inner._value_age(key)

    def _sweep_abandoned(self, min_age: float) -> None:
        self.inner._sweep_abandoned(min_age)

    def _value_context(self, key: Digest) -> AbstractContextManager[Any]:
        return self.inner._value_context(key)

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return self.inner._operation_context(key, intent=intent)

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        return self.inner._async_operation_context(key, intent=intent)

    def batch(self) -> AbstractContextManager[Any]:
        return self.inner.batch()


class RefreshingCache(_Delegating):
    """Always misses on load and forwards saves: what ``.rerun`` uses so nested calls recompute.

    >>> from fleche import cache, fleche
    >>> runs = []
    >>> @fleche
    ... def noisy(x):
    ...     runs.append(x)
    ...     return x
    >>> shared = Cache.from_url("memory://")
    >>> with cache(shared):
    ...     noisy(1)
    1
    >>> with cache(RefreshingCache(shared)):
    ...     noisy(1)  # computed again, and stored in shared
    1
    >>> runs
    [1, 1]
    """

    def _lookup(self, key: Digest) -> Any:
        raise KeyError(key)

    def contains(self, key: str) -> bool:
        return False
