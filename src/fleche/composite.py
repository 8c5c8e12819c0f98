"""Caches made of caches (SPEC section 7): stacks, pools, read-only and filtered views.

``CacheStack(fast, ..., slow)`` reads through its layers in order and back-fills the earlier layers
on a hit; new results are saved to the first layer only (put the cache that should receive them
first; the later layers are fallbacks, typically shared or read-only). ``CachePool(a, b, ...)``
reads from all its members and writes to none. ``ReadOnlyCache(c)`` and ``FilteredCache(c, pred)``
refuse every write with ``Rejected``. ``SizeLimitedCache`` lives in ``fleche.sizelimit``; all are
importable from ``fleche.caches`` too.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from ._log import get_logger
from .caches import TRANSFER_BATCH, BaseCache, RefreshingCache, VoidCache, _Delegating
from .call import NO_RESULT, Call, DigestedCall, LazyCall, QueryCall
from .digest import DIGEST_LENGTH, Digest
from .errors import AmbiguousDigestError, ConfigError, Rejected
from .sizelimit import SizeLimitedCache
from .storage.base import NULL_CONTEXT, Intent, _SyncAsAsync, check_key

__all__ = [
    "CachePool",
    "CacheStack",
    "FilteredCache",
    "ReadOnlyCache",
    "RefreshingCache",
    "SizeLimitedCache",
    "VoidCache",
]

log = get_logger(__name__)


class _Refusing(BaseCache):
    """Refuses every write with ``Rejected``; sits left of the class it protects."""

    def _refuse(self, what: str) -> Rejected:
        return Rejected(f"{self!r} is read-only: it cannot {what}")

    def save(self, call: Call) -> Digest:
        raise self._refuse("save a call")

    def _store(self, key: Digest, record: DigestedCall, values: Iterable[tuple[Digest, Any]]):
        raise self._refuse(f"store the call {key}")

    def _store_value(self, key: Digest, value: Any) -> None:
        raise self._refuse(f"store the value {key}")

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        raise self._refuse(f"store the call {key}")

    def evict(self, key: str) -> None:
        raise self._refuse(f"evict {key}")

    def _evict_value(self, key: Digest) -> None:
        raise self._refuse(f"evict the value {key}")

    def gc(self, grace: float | None = None) -> int:
        raise self._refuse("collect garbage")

    def transfer(self, other: BaseCache, pop: bool = False, overwrite: bool = False, *,
                 batch_size: int = TRANSFER_BATCH) -> int:  # fmt: skip
        if pop:  # refuse before copying anything, not after the first call
            raise self._refuse("give calls away (pop=True)")
        return super().transfer(other, pop=False, overwrite=overwrite, batch_size=batch_size)


class ReadOnlyCache(_Refusing, _Delegating):
    """Serves what ``cache`` holds; every save, eviction or gc raises ``Rejected``.

    As the active cache, a hit is served and a miss computes, then raises ``Rejected`` when the
    result would be stored: stack it behind a writable cache (``CacheStack(mine, ReadOnlyCache(
    team))``) to keep new results.

    >>> from fleche import Cache, cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> team = Cache.from_url("memory://")
    >>> with cache(team):
    ...     cube(3)
    27
    >>> with cache(ReadOnlyCache(team)):
    ...     cube(3)  # a hit is served
    27
    >>> ReadOnlyCache(team).evict(cube.digest(3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.Rejected: ReadOnlyCache(Cache('memory://')) is read-only: it cannot evict ...
    """

    @property
    def cache(self) -> BaseCache:
        """The wrapped cache (the field name of fleche 0.22.2)."""
        return self.inner

    def _lookup(self, key: Digest) -> Any:
        try:
            result = self.inner._lookup(key)
        except KeyError:
            self.misses += 1
            raise
        self.hits += 1
        return result


class FilteredCache(ReadOnlyCache):
    """A read-only view exposing only the calls that match ``predicate``.

    ``predicate`` is a function of a :class:`~fleche.call.LazyCall` (its arguments and result load
    on access) or a :class:`~fleche.call.QueryCall` template (matched on the stored record, and
    passed to the store as the query when nothing narrower is asked). Values are not filtered:
    they are addressed by content. ``cache.filter(predicate)`` makes one too.

    >>> from fleche import Cache, QueryCall, cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> store = Cache.from_url("memory://")
    >>> with cache(store):
    ...     _ = [cube(x) for x in range(5)]
    >>> FilteredCache(store, lambda call: call.arguments["x"] > 2).query().count()
    2
    >>> store.filter(QueryCall(name="cube", arguments={"x": 1})).query().only().result
    1
    """

    def __init__(self, cache: BaseCache, predicate: Callable[[LazyCall], bool] | QueryCall):
        super().__init__(cache)
        self.predicate = predicate

    def __repr__(self) -> str:
        return f"FilteredCache({self.inner!r}, {self.predicate!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.inner == other.inner
            and self.predicate == other.predicate
        )

    __hash__ = object.__hash__

    def _visible(self, key: Digest, record: DigestedCall) -> bool:
        if isinstance(self.predicate, QueryCall):
            return self.predicate.matches(record)
        return bool(self.predicate(LazyCall(key, record, self.inner)))

    def _load_record(self, key: str) -> DigestedCall:
        record = self.inner._load_record(key)
        if not self._visible(check_key(key), record):
            raise KeyError(key)
        return record

    def _lookup(self, key: Digest) -> Any:
        try:
            result = self.inner.load_value(self._load_record(key).result)
        except KeyError:
            self.misses += 1
            raise
        self.hits += 1
        return result

    def contains(self, key: str) -> bool:
        try:
            self._load_record(key)
        except KeyError:
            return False
        return True

    def _query_records(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        if isinstance(self.predicate, QueryCall) and _is_wildcard(template):
            return self.inner._query_records(self.predicate)  # the store answers it, by index
        return (kr for kr in self.inner._query_records(template) if self._visible(*kr))

    def list(self) -> Iterator[Digest]:
        return (key for key, _ in self._query_records(QueryCall()))

    def expand(self, prefix: str) -> Digest:
        try:
            key = self.inner.expand(prefix)
        except AmbiguousDigestError:
            return _expand_in(sorted(self.list()), check_key(prefix, full=False))
        if not self.contains(key):
            raise KeyError(prefix)
        return key

    def shrink(self, *keys: str) -> Any:
        visible = sorted(self.list())
        shrunk = [_shortest_unique(check_key(k), visible) for k in keys]
        return shrunk[0] if len(shrunk) == 1 else shrunk


class _Layered(BaseCache):
    """Reads through ``layers`` in order; a key held by several layers is one key."""

    def __init__(self, *layers: BaseCache) -> None:
        if len(layers) == 1 and isinstance(layers[0], tuple | list):
            layers = tuple(layers[0])  # fleche 0.22.2 passed one tuple
        if not layers:
            raise ConfigError(f"{type(self).__name__} needs at least one cache")
        for layer in layers:
            if not isinstance(layer, BaseCache):
                raise ConfigError(f"{type(self).__name__} takes caches, not {layer!r}")
        self.layers: tuple[BaseCache, ...] = tuple(layers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.layers))})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.layers == other.layers

    __hash__ = object.__hash__

    def _lookup(self, key: Digest) -> Any:
        for index, layer in enumerate(self.layers):
            try:
                result = layer._lookup(key)
            except KeyError:
                continue
            self.hits += 1
            self._found(index, key, result)
            return result
        self.misses += 1
        raise KeyError(key)

    def _found(self, index: int, key: Digest, result: Any) -> None:
        """Called after layer ``index`` served ``key``."""

    def _load_record(self, key: str) -> DigestedCall:
        for layer in self.layers:
            try:
                return layer._load_record(key)
            except KeyError:
                continue
        raise KeyError(key)

    def load_value(self, key: str) -> Any:
        for layer in self.layers:
            try:
                return layer.load_value(key)
            except KeyError:
                continue
        raise KeyError(key)

    def contains(self, key: str) -> bool:
        return any(layer.contains(key) for layer in self.layers)

    def expand(self, prefix: str) -> Digest:
        return _union_expand([layer.expand for layer in self.layers], prefix)

    def values_expand(self, prefix: str) -> Digest:
        return _union_expand([layer.values_expand for layer in self.layers], prefix)

    def shrink(self, *keys: str) -> Any:
        # a prefix is unambiguous across the layers when it is in each: the longest one wins
        shrunk = [max((Digest(layer.shrink(k)) for layer in self.layers), key=len) for k in keys]
        return shrunk[0] if len(shrunk) == 1 else shrunk

    def list(self) -> Iterator[Digest]:
        return _unique(key for layer in self.layers for key in layer.list())

    def value_keys(self) -> Iterator[Digest]:
        return _unique(key for layer in self.layers for key in layer.value_keys())

    def _query_records(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        seen: set[str] = set()
        for layer in self.layers:
            for key, record in layer._query_records(template):
                if key not in seen:
                    seen.add(key)
                    yield key, record

    def stats(self) -> dict[str, Any]:
        """Entries and values counted once across the layers, hits and misses of this object,
        bytes summed over the layers (None when one cannot tell), and each layer's stats."""
        layers = [layer.stats() for layer in self.layers]
        sizes = [s.get("bytes") for s in layers]
        return {
            "entries": sum(1 for _ in self.list()),
            "values": sum(1 for _ in self.value_keys()),
            "bytes": None if None in sizes else sum(sizes),
            "hits": self.hits,
            "misses": self.misses,
            "layers": layers,
        }


class CacheStack(_Layered):
    """``CacheStack(fast, ..., slow)``: reads through the layers, saves to the first.

    A hit in a later layer is copied (record, argument values and result) into every earlier
    layer that accepts it, so the next hit is served by the fastest. Evicting a key removes it
    from every layer that holds it; ``gc`` runs on each layer that allows it.

    >>> from fleche import Cache, cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> fast, slow = Cache.from_url("memory://"), Cache.from_url("memory://")
    >>> with cache(slow):
    ...     cube(3)
    27
    >>> with cache(CacheStack(fast, slow)):
    ...     cube(3)  # found in slow, copied into fast
    27
    >>> fast.contains(cube.digest(3))
    True
    """

    def _found(self, index: int, key: Digest, result: Any) -> None:
        if index:
            self._backfill(index, key, result)

    def _backfill(self, index: int, key: Digest, result: Any) -> None:
        source = self.layers[index]
        try:
            record = source._load_record(key)
            values = _values_of(source, record, result)
        except KeyError:  # evicted meanwhile: nothing to copy
            return
        for layer in self.layers[:index]:
            try:
                layer._store(key, record, values)
            except Rejected:
                log.debug("layer %r refused the back-fill of %s", layer, key)
            except Exception as e:  # a back-fill only speeds up later hits: never fail this one
                log.warning("could not copy %s into %r: %s: %s", key, layer, type(e).__name__, e)

    # writes go to the first layer
    def save(self, call: Call) -> Digest:
        return self.layers[0].save(call)

    def _store(self, key: Digest, record: DigestedCall, values: Iterable[tuple[Digest, Any]]):
        self.layers[0]._store(key, record, values)

    def _store_many(self, entries: list[tuple[Digest, DigestedCall, list[tuple[Digest, Any]]]]
                    ) -> None:  # fmt: skip
        self.layers[0]._store_many(entries)

    def _store_value(self, key: Digest, value: Any) -> None:
        self.layers[0]._store_value(key, value)

    def _store_record(self, key: Digest, record: DigestedCall) -> None:
        self.layers[0]._store_record(key, record)

    def _evict_value(self, key: Digest) -> None:
        self.layers[0]._evict_value(key)

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return self.layers[0]._operation_context(key, intent=intent)

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        return self.layers[0]._async_operation_context(key, intent=intent)

    def batch(self) -> AbstractContextManager[Any]:
        return self.layers[0].batch()

    def evict(self, key: str) -> None:
        """Remove ``key`` from every layer holding it (``Rejected`` if a read-only one does)."""
        found, refused = False, None
        for layer in self.layers:
            if not layer.contains(key):
                continue
            try:
                layer.evict(key)
                found = True
            except KeyError:
                continue
            except Rejected as e:
                refused = e
        if refused is not None:
            raise refused
        if not found:
            raise KeyError(key)

    def gc(self, grace: float | None = None) -> int:
        """Collect garbage in each layer that allows it; returns the values removed in all."""
        removed = 0
        for layer in self.layers:
            try:
                removed += layer.gc() if grace is None else layer.gc(grace)
            except Rejected:
                continue
        return removed

    @property
    def stack(self) -> tuple[BaseCache, ...]:
        """The layers (the field name of fleche 0.22.2)."""
        return self.layers


class CachePool(_Refusing, _Layered):
    """``CachePool(a, b, ...)``: reads from every member (first hit wins), writes to none.

    >>> from fleche import Cache, cache, fleche
    >>> @fleche
    ... def cube(x):
    ...     return x ** 3
    >>> ana, ben = Cache.from_url("memory://"), Cache.from_url("memory://")
    >>> with cache(ben):
    ...     cube(2)
    8
    >>> with cache(CachePool(ana, ben)):
    ...     cube.contains(2), cube.load(2)
    (True, 8)
    """

    def _operation_context(self, key: str, *, intent: Intent) -> AbstractContextManager[Any]:
        return NULL_CONTEXT  # nothing is written here, so nothing to lock

    def _async_operation_context(self, key: str, *, intent: Intent) -> Any:
        return _SyncAsAsync(NULL_CONTEXT)

    @property
    def caches(self) -> tuple[BaseCache, ...]:
        """The members (the field name of fleche 0.22.2)."""
        return self.layers


# --- helpers --------------------------------------------------------------------------------------
def _values_of(source: BaseCache, record: DigestedCall, result: Any) -> list[tuple[Digest, Any]]:
    """The stored values of a call (arguments kept by digest only are skipped), result last."""
    values = []
    for value_key in record.arguments.values():
        try:
            values.append((value_key, source.load_value(value_key)))
        except KeyError:
            continue
    if record.result is not NO_RESULT:
        values.append((record.result, result))
    return values


def _unique(keys: Iterable[Digest]) -> Iterator[Digest]:
    seen: set[str] = set()
    for key in keys:
        if key not in seen:
            seen.add(key)
            yield key


def _union_expand(expanders: list[Callable[[str], Digest]], prefix: str) -> Digest:
    """The one key starting with ``prefix`` across several stores."""
    found: set[Digest] = set()
    for expand in expanders:
        try:
            found.add(expand(prefix))
        except AmbiguousDigestError as e:
            found.update(Digest(c) for c in e.candidates)
        except KeyError:
            continue
    if not found:
        raise KeyError(prefix)
    if len(found) > 1:
        raise AmbiguousDigestError(prefix, sorted(found)[:11])
    return found.pop()


def _expand_in(keys: list[Digest], prefix: str) -> Digest:
    """``expand`` over a sorted list of keys."""
    start = bisect.bisect_left(keys, prefix)
    found = [k for k in keys[start : start + 11] if k.startswith(prefix)]
    if not found:
        raise KeyError(prefix)
    if len(found) > 1:
        raise AmbiguousDigestError(prefix, found)
    return found[0]


def _shortest_unique(key: Digest, keys: list[Digest]) -> Digest:
    """The shortest prefix of ``key`` that no other key of the sorted list ``keys`` shares."""
    index = bisect.bisect_left(keys, key)
    neighbours = [k for k in keys[max(index - 1, 0) : index + 2] if k != key]
    shared = max((_common(key, other) for other in neighbours), default=0)
    return Digest(key[: min(shared + 1, DIGEST_LENGTH)])


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _is_wildcard(template: QueryCall) -> bool:
    return (
        template.name is None
        and template.module is None
        and template.version is None
        and template.code_digest is None
        and template.result is None
        and not template.arguments
        and not template.metadata
    )
