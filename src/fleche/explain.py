"""``f.explain(...)``: why a call would hit or miss (SPEC section 9)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .call import QueryCall
from .digest import Digest

if TYPE_CHECKING:
    from .caches import BaseCache
    from .wrapper import CachedFunction

__all__ = ["Explanation", "NearMiss", "explain", "nearest"]


@dataclass
class NearMiss:
    """A stored call of the same function and the arguments in which it differs."""

    key: Digest
    differing: dict[str, tuple[Digest | None, Digest | None]]  # name -> (asked, stored)


@dataclass
class Explanation:
    """Whether a call is stored and, if not, the stored calls that differ in the fewest arguments."""

    function: str
    key: Digest
    stored: bool
    arguments: dict[str, Digest]
    nearest: list[NearMiss] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.function} key {self.key[:12]}: "
        if self.stored:
            return head + "stored (a call would hit)"
        if not self.nearest:
            return head + "not stored; no stored call of this function (a call would miss)"
        lines = [head + "not stored; nearest stored calls:"]
        for near in self.nearest:
            diffs = ", ".join(
                f"{name}: asked {_short(asked)} stored {_short(have)}"
                for name, (asked, have) in near.differing.items()
            )
            lines.append(f"  {near.key[:12]} differs in {diffs or 'nothing but the version/code'}")
        return "\n".join(lines)


def _short(value: Digest | None) -> str:
    return "-" if value is None else value[:10]


def explain(func: CachedFunction, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int = 3
            ) -> Explanation:  # fmt: skip
    """Build the :class:`Explanation` of ``func(*args, **kwargs)`` against its active cache."""
    cache = func._active()
    values, _, _ = func._bind(args, kwargs)
    key, hexes, _ = func._key(values, cache)
    asked = {name: Digest(h) for (_, name), h in zip(func._keyed, hexes, strict=True)}
    result = Explanation(func.name, key, cache.contains(key), asked)
    if not result.stored:
        result.nearest = nearest(cache, func.template(), asked, limit)
    return result


def nearest(cache: BaseCache, base: QueryCall, asked: dict[str, Digest], limit: int = 3
            ) -> list[NearMiss]:  # fmt: skip
    """The stored calls matching ``base`` that differ from ``asked`` in the fewest arguments.

    One indexed query per argument (calls sharing the most arguments are the nearest), then, if
    too few share any, other calls of ``base`` fill up: no scan of every stored call.
    """
    shared: Counter[Digest] = Counter()
    records: dict[Digest, Any] = {}
    for name, value_digest in asked.items():
        template = QueryCall(base.name, {name: value_digest}, {}, base.module, base.version)
        for other_key, record in cache._query_records(template):
            shared[other_key] += 1
            records[other_key] = record
    if len(records) < limit:
        for other_key, record in cache._query_records(base):
            if len(records) >= limit:
                break
            records.setdefault(other_key, record)
    candidates = []
    for other_key, record in records.items():
        names = set(asked) | set(record.arguments)
        differing = {
            n: (asked.get(n), record.arguments.get(n))
            for n in sorted(names)
            if asked.get(n) != record.arguments.get(n)
        }
        candidates.append((len(differing), other_key, differing))
    candidates.sort(key=lambda c: (c[0], c[1]))
    return [NearMiss(k, d) for _, k, d in candidates[:limit]]
