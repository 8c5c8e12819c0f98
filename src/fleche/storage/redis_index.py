"""The indexes of the Redis storage: sorted sets of keys, and the sets that answer queries.

Every entry kind (``P:v:`` values, ``P:c:`` calls) has a sorted set ``{space}index`` of its keys,
every score 0, so ZRANGEBYLEX lists them in order and finds the keys with a prefix in O(log n).

Beside each record ``P:c:{key}`` a call is a member of three kinds of sets: ``P:c:fn:{module}:{name}``
(its function), ``P:c:name:{name}`` (its name, for templates that leave the module open) and one
``P:c:arg:{parameter}:{digest}`` per argument. A query intersects the sets its template fixes
(``SINTER``), fetches only those records (``MGET``) and checks the rest of the template (version,
result, metadata, arguments asked as "present, any value") in Python. ``P:c:x:{key}`` lists the sets a
call is in, so an overwrite, an eviction or an expiry removes exactly those entries. Every change to a
record and its entries is one Lua script, so no reader sees one without the other.

The scripts touch set names read from ``P:c:x:{key}``, which works on a single Redis server (and
replicas), not on Redis Cluster.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..call import DigestedCall, QueryCall
from ..digest import Digest
from ..errors import IntegrityError
from .serialize import dump_record, load_record

if TYPE_CHECKING:
    from .redis import RedisConnection

__all__ = [
    "PUT_CALL",
    "REMOVE",
    "CallIndexMixin",
    "SortedIndexMixin",
    "record_sets",
    "template_sets",
]

BATCH = 500
"""Keys per ZRANGEBYLEX page and per MGET: bounded replies, few round trips."""

PUT_CALL = """
-- KEYS: record, sorted index, member list, sets...  ARGV: key, record bytes, ttl ms (0: none),
-- member list as JSON. The old entries go first: a key saved with other arguments moves sets.
local old = redis.call('GET', KEYS[3])
if old ~= ARGV[4] then
  if old then
    for _, name in ipairs(cjson.decode(old)) do redis.call('SREM', name, ARGV[1]) end
  end
  for i = 4, #KEYS do redis.call('SADD', KEYS[i], ARGV[1]) end
  redis.call('SET', KEYS[3], ARGV[4])
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

REMOVE = """
-- KEYS: sorted index, hash of write times.  ARGV: key space ('P:c:' or 'P:v:'), mode, keys...
-- mode 'evict': delete each entry with its index entries; returns 1 per key that existed.
-- mode 'reap': drop the index entries of keys whose entry is gone (expired), checked here so a key
-- saved again meanwhile keeps its entries; returns 1 per key reaped.
local function unindex(key)
  local members = ARGV[1] .. 'x:' .. key
  local old = redis.call('GET', members)
  if old then
    for _, name in ipairs(cjson.decode(old)) do redis.call('SREM', name, key) end
    redis.call('DEL', members)
  end
  redis.call('ZREM', KEYS[1], key)
  redis.call('HDEL', KEYS[2], key)
end
local out = {}
for i = 3, #ARGV do
  local key = ARGV[i]
  if ARGV[2] == 'evict' then
    out[#out + 1] = redis.call('DEL', ARGV[1] .. key)
    unindex(key)
  elseif redis.call('EXISTS', ARGV[1] .. key) == 0 then
    unindex(key)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


def record_sets(space: str, call: DigestedCall) -> list[str]:
    """The index sets a call record belongs to (``space`` is ``'P:c:'``)."""
    sets = [f"{space}fn:{call.module or ''}:{call.name}", f"{space}name:{call.name}"]
    sets.extend(f"{space}arg:{param}:{value}" for param, value in call.arguments.items())
    return sets


def template_sets(space: str, template: QueryCall, wanted: dict[str, Digest | None]) -> list[str]:
    """The sets whose intersection holds every call matching ``template`` (empty: no index applies)."""
    sets = []
    if template.name is not None:
        if template.module is not None:
            sets.append(f"{space}fn:{template.module}:{template.name}")
        else:
            sets.append(f"{space}name:{template.name}")
    sets.extend(
        f"{space}arg:{param}:{value}" for param, value in wanted.items() if value is not None
    )
    return sets


class SortedIndexMixin:
    """Listing and prefix scans on the sorted set ``{space}index``, skipping expired entries.

    Needs from its host: ``_conn`` (a ``RedisConnection``), ``_space`` (``'P:v:'`` or ``'P:c:'``),
    ``_index`` (the sorted set) and ``_ttl_ms`` (None: entries never expire).
    """

    _space: str
    _index: str
    _ttl_ms: int | None

    if TYPE_CHECKING:

        @property
        def _conn(self) -> RedisConnection: ...

    def _remove(self, mode: str, keys: builtins.list[str]) -> builtins.list[int]:
        """Run the REMOVE script (``mode`` 'evict' or 'reap'); one flag per key."""
        index_keys = [self._index, self._space + "written"]
        return self._conn.remove(keys=index_keys, args=[self._space, mode, *keys])

    def _reap(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Drop the index entries of ``keys`` whose entry is gone (checked in the script)."""
        flags = self._remove("reap", keys)
        return [k for k, reaped in zip(keys, flags, strict=True) if reaped]

    def _live(self, keys: builtins.list[str]) -> builtins.list[str]:
        """``keys`` without the expired ones (reaped on the way); without ``ttl`` none expire."""
        if self._ttl_ms is None or not keys:
            return keys
        pipe = self._conn.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(self._space + key)
        flags = pipe.execute()
        gone = [k for k, exists in zip(keys, flags, strict=True) if not exists]
        if gone:
            self._reap(gone)
        return [k for k, exists in zip(keys, flags, strict=True) if exists]

    def list(self) -> Iterator[Digest]:
        """Every stored key in order, read from the sorted set in pages (ZRANGEBYLEX)."""
        low = b"-"
        while True:
            page = self._conn.client.zrangebylex(self._index, low, b"+", start=0, num=BATCH)
            keys = [k.decode() for k in page]
            yield from map(Digest, self._live(keys))
            if len(page) < BATCH:
                return
            low = b"(" + page[-1]

    def _candidates(self, prefix: str, limit: int) -> builtins.list[Digest]:
        """The ``limit`` smallest keys starting with ``prefix``: ZRANGEBYLEX with LIMIT, O(log n)."""
        low, high = b"[" + prefix.encode(), b"(" + prefix.encode() + b"\xff"
        while True:
            page = self._conn.client.zrangebylex(self._index, low, high, start=0, num=limit)
            keys = [k.decode() for k in page]
            live = self._live(keys)
            if len(live) == len(keys):  # else some had expired and were reaped: ask again
                return [Digest(k) for k in keys]

    def __len__(self) -> int:
        if self._ttl_ms is None:
            return int(self._conn.client.zcard(self._index))
        return sum(1 for _ in self.list())


class CallIndexMixin(SortedIndexMixin):
    """Call records and their index sets, on top of the sorted set; sits left of ``RedisBackend``.

    Needs from its host, besides what ``SortedIndexMixin`` needs: ``_corrupt(key, error)``.
    """

    if TYPE_CHECKING:

        def _corrupt(self, key: Digest, error: Exception) -> KeyError: ...

    def _put(self, key: Digest, value: Any) -> None:
        record: DigestedCall = value
        sets = record_sets(self._space, record)
        self._conn.put_call(
            keys=[self._space + key, self._index, f"{self._space}x:{key}", *sets],
            args=[key, dump_record(key, record.to_record()), self._ttl_ms or 0, json.dumps(sets)],
        )

    def _get(self, key: Digest) -> DigestedCall:
        data = self._conn.get(self._space + key)
        if data is None:
            raise KeyError(key)
        return self._decode(key, data)

    def _decode(self, key: Digest, data: bytes) -> DigestedCall:
        try:
            return DigestedCall.from_record(load_record(key, data))
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def query(self, template: QueryCall) -> Iterator[tuple[Digest, DigestedCall]]:
        """Records matching ``template``: the index sets pick the candidates, Python the rest.

        Without a name or an argument value to go by, every record is read (in pages).
        """
        wanted = template.argument_digests()
        sets = template_sets(self._space, template, wanted)
        if sets:
            keys = sorted(k.decode() for k in self._conn.client.sinter(sets))
        else:
            keys = list(self.list())
        gone = []
        for start in range(0, len(keys), BATCH):
            page = keys[start : start + BATCH]
            records = self._conn.client.mget([self._space + k for k in page])
            for key, data in zip(page, records, strict=True):
                if data is None:  # expired or evicted since the sets were read
                    gone.append(key)
                    continue
                try:
                    record = self._decode(Digest(key), data)
                except KeyError:  # corrupt: warned and evicted by _decode
                    continue
                if template.matches(record, arg_digests=wanted):
                    yield Digest(key), record
        if gone:
            self._reap(gone)
