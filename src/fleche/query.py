"""Lazy query results over stored calls (SPEC section 9).

A ``QueryIterator`` holds a template and a chain of refinements; nothing is read until it is iterated,
and each record's arguments and result load only when accessed.
"""

from __future__ import annotations

import html
import importlib.util
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._log import get_logger
from .call import NO_RESULT, LazyCall, QueryCall
from .digest import Digest

if TYPE_CHECKING:
    from .caches import BaseCache

__all__ = ["QueryIterator"]

log = get_logger(__name__)


class QueryIterator:
    """The stored calls matching a template: iterate, count, refine, load, evict or transfer them.

    What ``f.query(...)`` and ``cache().query(template)`` return. It is lazy: nothing is read until
    it is iterated or counted, and refining (``filter``, ``sorted``, ``take``, ``skip``) makes a
    new one. Iteration yields :class:`~fleche.call.LazyCall` objects.

    >>> from fleche import cache, fleche
    >>> @fleche
    ... def power(x, n=2):
    ...     return x ** n
    >>> with cache("memory://"):
    ...     for x in range(5):
    ...         _ = power(x)
    ...     calls = power.query()
    ...     calls.count(), calls.any(), len(calls.take(2).results())
    ...     sorted(calls.filter(lambda c: c.result > 3).results())
    ...     calls.sorted(key=lambda c: -c.arguments["x"]).take(1).only().arguments["x"]
    ...     power.query(x=4).only().result
    ...     calls.evict(), calls.count()
    (5, True, 2)
    [4, 9, 16]
    4
    16
    (5, 0)
    """

    def __init__(
        self,
        cache: BaseCache,
        template: QueryCall,
        filters: tuple[Callable[[LazyCall], bool], ...] = (),
        order: tuple[Callable[[LazyCall], Any], bool] | None = None,
        window: tuple[int, int | None] = (0, None),
    ) -> None:
        self.cache = cache
        self.template = template
        self._filters = filters
        self._order = order
        self._window = window

    def _refine(self, **changes: Any) -> QueryIterator:
        fields = {
            "filters": self._filters,
            "order": self._order,
            "window": self._window,
            **changes,
        }
        return QueryIterator(self.cache, self.template, **fields)

    def __iter__(self) -> Iterator[LazyCall]:
        calls: Iterator[LazyCall] = (
            LazyCall(key, record, self.cache)
            for key, record in self.cache._query_records(self.template)
        )
        for predicate in self._filters:
            calls = filter(predicate, calls)
        if self._order is not None:
            key, reverse = self._order
            calls = iter(sorted(calls, key=key, reverse=reverse))
        start, stop = self._window
        return itertools.islice(calls, start, stop)

    def count(self) -> int:
        """How many calls match."""
        return sum(1 for _ in self)

    def __len__(self) -> int:
        return self.count()

    def any(self) -> bool:
        """True when at least one call matches."""
        return next(iter(self), None) is not None

    def only(self) -> LazyCall:
        """The one matching call; ``KeyError`` when none, ``ValueError`` when several match."""
        found = list(itertools.islice(iter(self), 2))
        if not found:
            raise KeyError("no stored call matches the query")
        if len(found) > 1:
            raise ValueError(f"{self.count()} stored calls match the query; expected exactly one")
        return found[0]

    def take(self, n: int) -> QueryIterator:
        """At most the first ``n`` matches."""
        start, stop = self._window
        end = start + n if stop is None else min(stop, start + n)
        return self._refine(window=(start, end))

    def skip(self, n: int) -> QueryIterator:
        """All but the first ``n`` matches."""
        start, stop = self._window
        return self._refine(window=(start + n if stop is None else min(stop, start + n), stop))

    def filter(self, predicate: Callable[[LazyCall], bool]) -> QueryIterator:
        """Only the matches for which ``predicate(call)`` is true."""
        if self._window != (0, None) or self._order is not None:
            return _materialised(self)._refine(filters=(predicate,))
        return self._refine(filters=(*self._filters, predicate))

    def sorted(self, key: Callable[[LazyCall], Any] | None = None, reverse: bool = False
               ) -> QueryIterator:  # fmt: skip
        """The matches ordered by ``key(call)`` (default: when they were stored)."""
        base = self if self._window == (0, None) else _materialised(self)
        return base._refine(order=(key or _created, reverse))

    def latest(self) -> LazyCall:
        """The most recently stored match; ``KeyError`` when none."""
        return _single(self.sorted(reverse=True), "latest")

    def oldest(self) -> LazyCall:
        """The first stored match; ``KeyError`` when none."""
        return _single(self.sorted(), "oldest")

    def results(self) -> list[Any]:
        """The results of every match, loaded."""
        return [call.result for call in self]

    def keys(self) -> list[str]:
        """The lookup keys of every match."""
        return [call.key for call in self]

    def evict(self) -> int:
        """Remove every matching call record; returns how many were removed."""
        removed = 0
        for call in list(self):
            try:
                self.cache.evict(call.key)
                removed += 1
            except KeyError:
                pass
        return removed

    def transfer(self, other: BaseCache, pop: bool = False, overwrite: bool = False, *,
                 batch_size: int | None = None) -> int:  # fmt: skip
        """Copy the matches (records and their values) into ``other``; returns how many.

        Calls already in ``other`` are kept unless ``overwrite``. They are written in batches of
        ``batch_size`` (default :data:`~fleche.caches.TRANSFER_BATCH`), each one commit where
        ``other`` has transactions (see :meth:`~fleche.caches.BaseCache.batch`); each call's values
        are written before its record. With ``pop`` a call is removed here once its batch has
        committed there.

        Raises ``SaveError`` naming the first call that ``other`` cannot store (a value it cannot
        serialise, a full disk): the calls before it are stored, it and those after it are not.
        """
        return transfer_calls(self.cache, [*iter(self)], other, pop=pop, overwrite=overwrite,
                              batch_size=batch_size)  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        """One dict per match: key, function, arguments, result and when it was stored."""
        rows = []
        for call in self:
            row: dict[str, Any] = {"key": call.key, "function": call.name}
            for name in call.arguments:
                try:
                    row[name] = call.arguments[name]
                except KeyError:
                    row[name] = call.record.arguments[name]
            row["result"] = call.result
            row["created"] = call.created
            rows.append(row)
        return rows

    def table(self) -> Any:
        """A pandas DataFrame of :meth:`rows` when pandas is installed, else the list of dicts."""
        rows = self.rows()
        if importlib.util.find_spec("pandas") is None:
            return rows
        import pandas as pd

        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        rows = self.take(50).rows()
        if not rows:
            return "<p>no stored calls match</p>"
        columns = list(dict.fromkeys(c for row in rows for c in row))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(_short(row.get(c, '')))}</td>" for c in columns)
            + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        return f"QueryIterator({self.template!r})"


def transfer_calls(
    source: BaseCache,
    calls: list[LazyCall],
    other: BaseCache,
    *,
    pop: bool = False,
    overwrite: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy ``calls`` (stored in ``source``) into ``other`` in batches; returns how many were
    copied. ``progress(n)`` is told after each batch how many of ``calls`` were handled."""
    from .caches import TRANSFER_BATCH

    size = TRANSFER_BATCH if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, not {size}")
    copied = 0
    for start in range(0, len(calls), size):
        stored = _transfer_batch(source, calls[start : start + size], other, overwrite, copied)
        copied += len(stored)
        if pop:
            _evict_all(source, stored)
        if progress is not None:
            progress(min(start + size, len(calls)))
    return copied


def _transfer_batch(source: BaseCache, calls: list[LazyCall], other: BaseCache, overwrite: bool,
                    copied: int) -> list[LazyCall]:  # fmt: skip
    """Copy ``calls`` into ``other`` in one batch; the ones copied. When the batch fails, its
    calls are stored again one by one, to store those before the one that fails and name it."""
    from .errors import Rejected

    todo: list[tuple[LazyCall, list[tuple[Digest, Any]]]] | None = None
    try:
        with other.batch():
            present = set() if overwrite else other._stored_among([c.key for c in calls])
            todo = []
            for call in calls:
                if call.key not in present:
                    values = _stored_values(source, call)
                    if values is not None:
                        todo.append((call, values))
            other._store_many([(c.key, c.record, values) for c, values in todo])
    except Rejected:
        raise
    except Exception as e:
        if todo is None:  # failed before it knew which calls to copy
            return _transfer_each(source, calls, other, overwrite, copied, e)
        return _transfer_each(source, [c for c, _ in todo], other, True, copied, e)
    return [call for call, _ in todo]


def _transfer_each(source: BaseCache, calls: list[LazyCall], other: BaseCache, overwrite: bool,
                   copied: int, error: Exception) -> list[LazyCall]:  # fmt: skip
    """Copy ``calls`` one by one, each in its own commit, after their batch failed with
    ``error``; ``SaveError`` naming the first call that fails."""
    from .errors import SaveError

    stored = []
    for call in calls:
        try:
            if transfer_call(source, call, other, overwrite=overwrite):
                stored.append(call)
        except Exception as e:
            raise SaveError(
                f"transfer into {other!r} stopped at call {call.key} ({call.name}): "
                f"{type(e).__name__}: {e}; {copied + len(stored)} calls were copied"
            ) from e
    log.warning("a batch of %d calls into %r failed (%s: %s); copied them one by one",
                len(calls), other, type(error).__name__, error)  # fmt: skip
    return stored


def _stored_values(source: BaseCache, call: LazyCall) -> list[tuple[Digest, Any]] | None:
    """The stored values of ``call``, result last (arguments stored by digest only are left
    out); None when its result is gone: a record is never copied without its result."""
    values = []
    for value_key in call.record.arguments.values():
        try:
            values.append((value_key, source.load_value(value_key)))
        except KeyError:  # an argument recorded by digest only
            continue
    if call.record.result is not NO_RESULT:
        try:
            values.append((call.record.result, source.load_value(call.record.result)))
        except KeyError:
            return None
    return values


def _evict_all(cache: BaseCache, calls: list[LazyCall]) -> None:
    with cache.batch():
        for call in calls:
            try:
                cache.evict(call.key)
            except KeyError:  # evicted meanwhile
                pass


def transfer_call(source: BaseCache, call: LazyCall, other: BaseCache, overwrite: bool = False
                  ) -> bool:  # fmt: skip
    """Copy one stored call (its values first, then its record) into ``other``.

    Returns False when ``other`` already has it and ``overwrite`` is off, or its result is gone.
    """
    if not overwrite and other.contains(call.key):
        return False
    values = _stored_values(source, call)
    if values is None:
        return False  # never copy a record without its result
    other._store(call.key, call.record, values)
    return True


def _short(value: Any, width: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _created(call: LazyCall) -> float:
    return call.created


def _single(result: QueryIterator, what: str) -> LazyCall:
    for call in result.take(1):
        return call
    raise KeyError(f"no stored call matches the query (asked for the {what})")


def _materialised(result: QueryIterator) -> QueryIterator:
    calls = list(result)
    keys = {call.key for call in calls}
    return QueryIterator(result.cache, result.template, filters=(lambda c: c.key in keys,))
