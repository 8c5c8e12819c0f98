"""Large Redis values in pieces, so a store or a load holds a large frame once (SPEC 6).

A frame longer than ``LARGE`` bytes is never joined into one bytes object. Its parts (the codec's
header and pickle, and the pickle's out-of-band buffers, such as a numpy array's memory) go to a
temporary key ``P:v:tmp:{key}:{token}`` as SET + APPENDs of memoryview slices, in one pipeline;
then the ``COMMIT`` script renames it onto the entry, sets the entry's expiry and indexes it in one
step, so a reader sees the whole value or none. A writer that dies first leaves its temporary key
to expire (after ``TEMPORARY_MS``); nothing lists or indexes it.

A reader first asks for ``LARGE + 1`` bytes (one GETRANGE: for a small value, the cost of a GET).
A longer value is read again under WATCH: STRLEN, then GETRANGE pieces into one preallocated
buffer; the EXEC that ends the WATCH fails if the key changed meanwhile, and the read starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["COMMIT", "LARGE", "PIECE", "read_frame", "write_pieces"]

log = logging.getLogger(__name__)

PIECE = 1 << 20
"""Bytes per APPEND and per GETRANGE of a large value (redis-py copies a reply about thrice)."""

LARGE = 4 * PIECE
"""Frames longer than this are written and read in pieces."""

TEMPORARY_MS = 3_600_000
"""How long the temporary key of an unfinished write lives (its writer may have died)."""

ATTEMPTS = 5
"""Reads of a large value under WATCH before one plain GET (the key kept changing)."""

COMMIT = """
-- KEYS: temporary, entry, sorted index, hash of write times.  ARGV: key, ttl ms (0: none), time.
-- Returns 0 when the temporary key is gone (it expired before its writer was done).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
if ARGV[2] == '0' then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return 1
"""


def _pieces(parts: Sequence[bytes | memoryview], size: int) -> Iterator[memoryview]:
    """Slices of at most ``size`` bytes of each part, in order (views: nothing is copied)."""
    for part in parts:
        view = memoryview(part).cast("B")
        for start in range(0, view.nbytes, size):
            yield view[start : start + size]


def write_pieces(client: Any, temporary: str, parts: Sequence[bytes | memoryview]) -> None:
    """Write the frame ``parts`` to the key ``temporary`` (expiring), in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for number, piece in enumerate(_pieces(parts, PIECE)):
        if number:
            pipe.append(temporary, piece)
        else:
            pipe.set(temporary, piece, px=TEMPORARY_MS)
    try:
        pipe.execute()
    except BaseException:
        try:
            client.delete(temporary)
        except Exception as e:  # the server is away: the key expires by itself
            log.debug("could not delete the temporary key %s: %s", temporary, e)
        raise


def read_frame(client: Any, name: str) -> bytearray | None:
    """The value of the key ``name`` in one buffer, read in pieces; None when it does not exist."""
    import redis

    with client.pipeline(transaction=True) as pipe:
        for _ in range(ATTEMPTS):
            try:
                pipe.watch(name)
                size = int(pipe.strlen(name))
                if not size:
                    return None
                frame = bytearray(size)
                view = memoryview(frame)
                for start in range(0, size, PIECE):
                    piece = pipe.getrange(name, start, min(start + PIECE, size) - 1)
                    view[start : start + len(piece)] = piece  # shorter: EXEC will fail
                pipe.multi()
                pipe.strlen(name)
                pipe.execute()  # WatchError if the key changed since WATCH
                return frame
            except redis.WatchError:
                continue
    data = client.get(name)  # the key keeps changing: one read of the whole value
    return None if data is None else bytearray(data)
