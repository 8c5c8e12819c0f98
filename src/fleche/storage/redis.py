"""Redis storage (redis-py): values and call records under a key prefix (SPEC sections 5, 6, 9).

``redis://host:port/db?prefix=NAME&ttl=SECONDS&lease=SECONDS&lock_timeout=SECONDS&secret_key=HEX
&compress=zlib``; other query options go to redis-py. Layout, for ``prefix=P``:

- ``P:v:{key}``: a value frame (``serialize.Codec``: checksum, optional HMAC signature, optional
  zlib), verified before unpickling; ``P:v:written``: a hash of write times (for ``gc``).
  ``P:c:{key}``: a call record, checked JSON. ``P:v:index``, ``P:c:index`` and the query sets are
  described in ``redis_index``.
- A write is atomic with its index entries (MULTI/EXEC for values, a Lua script for calls); so is an
  eviction. A frame over 4 MiB is written in pieces to a temporary key, renamed onto the entry by a
  Lua script, and read back in pieces into one buffer (``redis_pieces``), so a store or a load
  never holds a second copy of it.
- ``P:c:lock:{key}``: the cross-process lock of a call key, a token lock with a lease (``SET NX PX``),
  released only by its holder (compare-and-delete in Lua) and renewed by a heartbeat thread while the
  holder lives, so a killed holder blocks others for at most one lease (default 30 s). Values take no
  cross-process lock: they are content-addressed, so two writers of one key write the same bytes,
  and each write is atomic.
- ``P:meta``: the digest scheme version; a prefix written with another raises ``ConfigError``.
- A miss: its small values and its record's script go in one MULTI/EXEC (``_joint_writer``).
- Bulk writes (``transfer``): a batch's values go in one MULTI/EXEC, its records as their scripts in
  one pipeline, and its call-key locks are taken and released in one pipeline each. ``batch()``
  itself changes nothing here: each write is already one atomic round trip.

Expiry (``ttl=``): records and values are written with ``PX``, so Redis itself deletes them on time,
with no sweeper to run. A set member cannot expire by itself, so index entries outlive their entry
for a while; they are never seen: every path that reads through an index (``list``, ``expand``,
``shrink``, ``query``) checks that the entries it found still exist, drops the ones that do not from
its answer, and reaps them with a Lua script that, atomically, checks again that the entry is gone
(a key saved anew meanwhile keeps its entries) and removes the key from the sorted set and from every
set its ``P:c:x:{key}`` list names. To every reader, expiry thus removes a call and its index
entries together. The leftovers of an entry nobody reads again cost a few bytes until ``list()``
(hence ``cache.gc()`` and ``fleche gc``) sweeps them. Values expire too, counted from their last
write: a call whose result expired is a miss and computes again. All clients of a prefix should use
the same ``ttl``: only a storage with ``ttl`` checks its sorted sets for expired entries.

Connections: one redis-py client (one pool) per server URL in a process, shared by every storage
that names it; the hit path reads on a connection of its own per thread, keeping the pool's checkout
off it. After ``fork`` the child resets the pool and drops the parent's lock leases.
"""

from __future__ import annotations

import builtins
import importlib
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._urls import masked
from ..caches import Cache, serialise_values
from ..call import NO_RESULT, DigestedCall
from ..digest import SCHEME_VERSION, Digest
from ..errors import (
    ConfigError,
    IntegrityError,
    LockTimeoutError,
    MissingDependencyError,
    StorageError,
)
from .base import CallMixin, StorageBackend, UrlIdentity, ValueMixin, check_key, pause_batches
from .locking import DEFAULT_LOCK_TIMEOUT, ManyValuesMixin, PerKeyLockMixin
from .redis_index import PUT_CALL, REMOVE, CallIndexMixin, SortedIndexMixin, record_sets
from .redis_pieces import COMMIT, LARGE, read_frame, write_pieces
from .serialize import Codec, dump_record

__all__ = [
    "CallRedis",
    "RedisBackend",
    "RedisCallBackend",
    "RedisConnection",
    "RedisLock",
    "RedisOptions",
    "ValueRedis",
    "cache_from_url",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_LEASE = 30.0
_OURS = ("prefix", "ttl", "lease", "lock_timeout", "secret_key", "compress")
_NO_BUFFERS = bytes(4)  # a frame's count of out-of-band buffers when it has none
_PREFIX = re.compile(r"[\w.\-/:]+")  # no glob characters: tools delete a prefix by SCAN MATCH

_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_RENEW = """if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"""
# A hit in one round trip: the record, and the first ARGV[2] bytes of the value its JSON (after the
# 12-byte magic and checksum) names under the value space ARGV[1]. Python checks the record
# before it uses the value; a record that is not JSON comes back alone.
_HIT = """local record = redis.call('GET', KEYS[1])
if not record then return false end
local ok, decoded = pcall(cjson.decode, string.sub(record, 13))
if ok and type(decoded) == 'table' and type(decoded['result']) == 'string' then
  return {record, redis.call('GETRANGE', ARGV[1] .. decoded['result'], 0, ARGV[2])}
end
return {record, ''}"""


def _import_redis() -> Any:
    try:
        return importlib.import_module("redis")
    except ImportError as e:
        raise MissingDependencyError("redis", "redis", "redis:// caches") from e


def _seconds(options: dict[str, str], name: str) -> float | None:
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"redis URL option {name}={raw!r}: expected a positive number of seconds")
    return value


class _ThreadState(threading.local):
    """A thread's own connection; None by class default, so that a look for one not made yet
    costs no AttributeError (1.2 us each on a plain ``threading.local``)."""

    conn: Any = None


@dataclass(frozen=True)
class RedisOptions:
    """A parsed ``redis://`` URL: the server (what redis-py connects to) and fleche's options."""

    server: str
    prefix: str = "fleche"
    ttl: float | None = None
    lease: float = DEFAULT_LEASE
    lock_timeout: float | None = None
    secret_key: str | None = None
    compress: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisOptions:
        """Split ``url``; ``ConfigError`` on a bad scheme, database, prefix or number."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"not a Redis URL: {url!r} (expected redis://host:port/db)")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OURS}
        path = parts.path
        if parts.scheme != "unix":
            path = "/" + (path.strip("/") or "0")
            if not path[1:].isdigit():
                raise ConfigError(f"Redis URL {url!r}: the path must be a database number")
        rest = urlencode([(k, v) for k, v in query if k not in _OURS])
        prefix = ours.get("prefix", "fleche")
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError(f"Redis key prefix {prefix!r}: use letters, digits and _ . - / :")
        return cls(
            server=urlunsplit((parts.scheme, parts.netloc, path, rest, "")),
            prefix=prefix,
            ttl=_seconds(ours, "ttl"),
            lease=_seconds(ours, "lease") or DEFAULT_LEASE,
            lock_timeout=_seconds(ours, "lock_timeout"),
            secret_key=ours.get("secret_key") or None,
            compress=ours.get("compress") or None,
        )

    def url(self, *, mask: bool = False) -> str:
        """The normalised URL (``mask`` hides the secret key, for reprs and logs)."""
        options = {"prefix": self.prefix}
        if self.ttl is not None:
            options["ttl"] = f"{self.ttl:g}"
        if self.lease != DEFAULT_LEASE:
            options["lease"] = f"{self.lease:g}"
        if self.lock_timeout is not None:
            options["lock_timeout"] = f"{self.lock_timeout:g}"
        if self.compress:
            options["compress"] = self.compress
        if self.secret_key:
            options["secret_key"] = "***" if mask else self.secret_key
        server = masked(self.server) if mask else self.server
        return server + ("&" if "?" in server else "?") + urlencode(options, safe="*")


class Heartbeat:
    """Renews the leases of the locks this process holds on one server, from one daemon thread.

    A lease is renewed a third of its length after it was last set, so a living holder never loses
    it; the thread ends after a while without locks and starts again with the next one.
    """

    IDLE = 10.0

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._held: dict[str, list[Any]] = {}  # lock name -> [token, lease ms, next renewal]
        self._thread: threading.Thread | None = None
        self._idle_since: float | None = None

    def hold(self, name: str, token: str, lease_ms: int) -> None:
        with self._mutex:
            self._held[name] = [token, lease_ms, time.monotonic() + lease_ms / 3000]
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fleche-redis-heartbeat", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def drop(self, name: str) -> None:
        with self._mutex:
            self._held.pop(name, None)

    def _due(self) -> tuple[list[tuple[str, str, int]], float] | None:
        """Leases to renew now and when to look again; None when the thread should end."""
        with self._mutex:
            now = time.monotonic()
            due = []
            for name, entry in self._held.items():
                if entry[2] <= now:
                    entry[2] = now + entry[1] / 3000
                    due.append((name, entry[0], entry[1]))
            if self._held:
                self._idle_since = None
                return due, min(entry[2] for entry in self._held.values()) - now
            self._idle_since = self._idle_since or now
            if now - self._idle_since > self.IDLE:
                self._thread = None
                return None
            return due, 1.0

    def _run(self) -> None:
        while (step := self._due()) is not None:
            due, wait = step
            for name, token, lease_ms in due:
                try:
                    if not self._conn.renew(keys=[name], args=[token, lease_ms]):
                        log.debug("lock %s was released or lost before its renewal", name)
                except Exception as e:  # the server is away: try again at the next beat
                    log.warning("could not renew the Redis lock %s: %s", name, e)
            self._wake.wait(max(wait, 0.0))
            self._wake.clear()


class RedisLock:
    """The cross-process lock of one key: ``SET name token NX PX lease``, heartbeat, safe release."""

    __slots__ = ("conn", "lease_ms", "name", "timeout", "token")
    pauses_batches = True  # it calls ``pause_batches`` before it waits (see ``locking``)

    def __init__(self, conn: RedisConnection, name: str, lease: float, timeout: float) -> None:
        self.conn, self.name, self.timeout = conn, name, timeout
        self.lease_ms = max(1, round(lease * 1000))
        self.token = os.urandom(16).hex()

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it, without waiting; True when taken."""
        if not self.conn.client.set(self.name, self.token, nx=True, px=self.lease_ms):
            return False
        self.held()
        return True

    def held(self) -> None:
        """The lock was just taken: keep its lease renewed while it is held."""
        self.conn.heartbeat.hold(self.name, self.token, self.lease_ms)

    def __enter__(self) -> None:
        if self.try_enter():
            return
        pause_batches()
        client = self.conn.client
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while not client.set(self.name, self.token, nx=True, px=self.lease_ms):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeoutError(
                    f"gave up waiting {self.timeout:g}s for the Redis lock {self.name}"
                )
            time.sleep(min(pause * random.uniform(0.5, 1.5), left))  # jitter: waiters spread out
            pause = min(pause * 2, 0.1)
        self.conn.heartbeat.hold(self.name, self.token, self.lease_ms)

    def __exit__(self, *exc: object) -> None:
        self.conn.heartbeat.drop(self.name)
        if not self.conn.release(keys=[self.name], args=[self.token]):
            log.warning("the Redis lock %s expired while held (was the process paused?)", self.name)


class RedisConnection:
    """One redis-py client (one connection pool) per server URL in this process, with its scripts."""

    def __init__(self, server: str) -> None:
        redis = _import_redis()
        self.server = server
        self.client: Any = redis.Redis.from_url(server)
        self._transient = (redis.ConnectionError, redis.TimeoutError)
        self._no_script = redis.exceptions.NoScriptError
        self.put_call = self.client.register_script(PUT_CALL)
        self.commit_value = self.client.register_script(COMMIT)
        self.remove = self.client.register_script(REMOVE)
        self.release = self.client.register_script(_RELEASE)
        self.renew = self.client.register_script(_RENEW)
        self.hit_script = self.client.register_script(_HIT)
        self.checked: set[str] = set()
        self._fresh()

    def _fresh(self) -> None:
        self.heartbeat = Heartbeat(self)
        self._local = _ThreadState()

    def after_fork(self) -> None:
        """In a forked child: new connections, and none of the parent's leases."""
        self.client.connection_pool.reset()
        self._fresh()

    def get(self, name: str, limit: int | None = None) -> bytes | None:
        """GET on this thread's own connection, so the pool's checkout stays off the hit path;
        with ``limit``, only the first ``limit`` bytes (GETRANGE)."""
        command: tuple[Any, ...] = (
            ("GET", name) if limit is None else ("GETRANGE", name, 0, limit - 1)
        )
        return self._command(command) or None  # GETRANGE gives b"" for a missing key

    def hit(self, record: str, values: str, limit: int) -> tuple[bytes, bytes | None] | None:
        """The record under ``record`` and the first ``limit`` bytes of the value it names in the
        ``values`` space (None when that is missing), in one round trip (``_HIT``)."""
        script = self.hit_script
        command = ("EVALSHA", script.sha, 1, record, values, limit - 1)
        try:
            found = self._command(command)
        except self._no_script:  # the server restarted or flushed its scripts: load it again
            self.client.script_load(script.script)
            found = self._command(command)
        if not found:
            return None
        return found[0], found[1] or None

    def _command(self, command: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            pool = self.client.connection_pool
            conn = self._local.conn = pool.connection_class(**pool.connection_kwargs)
        try:
            conn.send_command(*command)
            return conn.read_response()
        except self._transient:
            conn.disconnect()  # reconnects on its next use; this read goes through the pool
            return self.client.execute_command(*command)

    def check_scheme(self, prefix: str) -> None:
        """Record the digest scheme under ``P:meta`` or check the one recorded there."""
        if prefix in self.checked:
            return
        meta = f"{prefix}:meta"
        pipe = self.client.pipeline(transaction=True)
        pipe.hsetnx(meta, "digest_scheme", SCHEME_VERSION)
        pipe.hget(meta, "digest_scheme")
        found = pipe.execute()[1]
        if found != str(SCHEME_VERSION).encode():
            raise ConfigError(
                f"the Redis prefix {prefix!r} holds digest scheme {found.decode()}, but this fleche "
                f"uses scheme {SCHEME_VERSION}; use another prefix"
            )
        self.checked.add(prefix)


_connections: dict[str, RedisConnection] = {}
_connections_lock = threading.Lock()


def connection_for(server: str) -> RedisConnection:
    """The process's shared connection to ``server`` (created on first use)."""
    conn = _connections.get(server)
    if conn is None:
        with _connections_lock:
            conn = _connections.get(server)
            if conn is None:
                conn = _connections[server] = RedisConnection(server)
    return conn


def _after_fork_in_child() -> None:
    global _connections_lock
    _connections_lock = threading.Lock()  # a parent thread may have held it at the fork
    for conn in _connections.values():
        conn.after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RedisBackend(UrlIdentity, SortedIndexMixin, StorageBackend):
    """Values in Redis: ``P:v:{key}`` frames and the sorted set ``P:v:index`` (see the module)."""

    _kind = "v"
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def __init__(self, url: str = DEFAULT_URL) -> None:
        _import_redis()  # fail here, naming the extra to install, not at the first operation
        self.options = options = RedisOptions.parse(url)
        self.prefix, self.ttl, self.lease = options.prefix, options.ttl, options.lease
        if options.lock_timeout is not None:
            self.lock_timeout = options.lock_timeout
        self.codec = Codec(options.secret_key, options.compress)
        self._space = f"{self.prefix}:{self._kind}:"
        self._index = self._space + "index"
        self._ttl_ms = None if self.ttl is None else max(1, round(self.ttl * 1000))
        self._connection: RedisConnection | None = None

    @property
    def _conn(self) -> RedisConnection:
        conn = self._connection
        if conn is None:
            conn = connection_for(self.options.server)
            conn.check_scheme(self.prefix)
            self._connection = conn
        return conn

    # --- primitives ---------------------------------------------------------------------------
    def _put(self, key: Digest, value: Any) -> None:
        parts = self.codec.dumps(key, value)
        if sum(memoryview(part).nbytes for part in parts) > LARGE:  # see ``redis_pieces``
            self._put_large(key, parts)
            return
        pipe = self._conn.client.pipeline(transaction=True)
        self._queue_small(pipe, {key: b"".join(parts)})
        pipe.execute()

    def _put_large(self, key: str, parts: builtins.list[bytes | memoryview]) -> None:
        """A frame over ``LARGE`` bytes: written in pieces under a temporary name, then renamed
        into place with its index entries by one script."""
        temporary = f"{self._space}tmp:{key}:{os.urandom(8).hex()}"
        write_pieces(self._conn.client, temporary, parts)
        names = [temporary, self._space + key, self._index, self._space + "written"]
        if not self._conn.commit_value(names, [key, self._ttl_ms or 0, repr(time.time())]):
            raise StorageError(f"redis: the value {key} expired before it was fully written")

    def _queue_small(self, pipe: Any, frames: dict[str, bytes]) -> None:
        """Queue on ``pipe`` the writes of small frames (key -> frame) and their index entries."""
        for key, frame in frames.items():
            pipe.set(self._space + key, frame, px=self._ttl_ms)
        pipe.zadd(self._index, dict.fromkeys(frames, 0))
        pipe.hset(self._space + "written", mapping=dict.fromkeys(frames, repr(time.time())))

    def _put_many(self, items: builtins.list[tuple[Digest, Any]]) -> None:
        """Many values in one MULTI/EXEC (a large one is written on its own, as ``_put`` does)."""
        small: dict[str, bytes] = {}
        for key, value in items:
            parts = self.codec.dumps(key, value)
            if sum(memoryview(part).nbytes for part in parts) > LARGE:
                self._put_large(key, parts)
                continue
            small[key] = b"".join(parts)
        if small:
            pipe = self._conn.client.pipeline(transaction=True)
            self._queue_small(pipe, small)
            pipe.execute()

    def _contains_many(self, keys: builtins.list[Digest]) -> set[Digest]:
        """The stored ones among ``keys``: their EXISTS in one pipeline."""
        keys = [check_key(k) for k in keys]
        pipe = self._conn.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(self._space + key)
        return {key for key, found in zip(keys, pipe.execute(), strict=True) if found}

    def _get(self, key: Digest) -> Any:
        return self._load(key, self._conn.get(self._space + key, LARGE + 1))

    def _load(self, key: Digest, data: bytes | bytearray | None) -> Any:
        """The value whose first ``LARGE + 1`` bytes are ``data`` (None: not stored)."""
        if data is not None and len(data) > LARGE:  # read again, in pieces, into one buffer
            data = None  # the first bytes are not kept meanwhile
            data = read_frame(self._conn.client, self._space + key)
        elif data is not None and data[5:9] != _NO_BUFFERS:  # out-of-band buffers load writable
            data = bytearray(data)
        if data is None:
            raise KeyError(key)
        try:
            return self.codec.loads(key, data)
        except IntegrityError as e:
            raise self._corrupt(key, e) from e

    def stored_size(self, key: str) -> int:
        """Bytes the value ``key`` occupies (its frame); ``KeyError`` when it is not stored."""
        size = int(self._conn.client.strlen(self._space + check_key(key)))
        if not size:  # a frame is never empty: the key is missing
            raise KeyError(key)
        return size

    def stored_age(self, key: str) -> float:
        """Seconds since the value ``key`` was last written; ``KeyError`` when unknown."""
        written = self._conn.client.hget(self._space + "written", check_key(key))
        if written is None:
            raise KeyError(key)
        return time.time() - float(written)

    def _contains(self, key: Digest) -> bool:
        return bool(self._conn.client.exists(self._space + key))

    def _evict(self, key: Digest) -> None:
        if not self._remove("evict", [key])[0]:
            raise KeyError(key)


class RedisCallBackend(CallIndexMixin, RedisBackend):
    """Call records in Redis, with index sets (``redis_index``) and a token lock per key."""

    _kind = "c"

    def _process_lock(self, key: str) -> RedisLock:
        return RedisLock(self._conn, f"{self._space}lock:{key}", self.lease, self.lock_timeout)

    def _joint_reader(self, values: Any) -> Any:
        """A hit in one round trip, not two, when ``values`` is a Redis value store on the same
        server (see ``Cache``): a script returns the record and the head of the value it names;
        the record is checked (checksum, digests) before the value is used."""
        if (
            not isinstance(values, RedisBackend)
            or values.options.server != self.options.server
            or type(values)._get is not RedisBackend._get
        ):
            return None

        def read(key: Digest) -> Any:
            found = self._conn.hit(self._space + key, values._space, LARGE + 1)
            if found is None:
                raise KeyError(key)
            record = self._decode(key, found[0])
            if record.result is NO_RESULT:
                raise KeyError(key)
            return values._load(Digest(record.result), found[1])

        return read

    def _joint_writer(self, values: Any) -> Any:
        """A miss's writes in one MULTI/EXEC, not one per value and one for the record, when
        ``values`` is a plain Redis value store on the same server (see ``caches.save_call``):
        the small values with the record's script (a large value is written before, as ``_put``
        writes it). Every frame is made before anything is sent, so a result that cannot be
        serialised writes nothing. The caller holds the call key's WRITE context."""
        if not (
            isinstance(values, RedisBackend)
            and values.options.server == self.options.server
            and getattr(type(values), "save", None) is ValueMixin.save
            and type(values).put is StorageBackend.put
            and type(values)._put is RedisBackend._put
            and type(self)._put is CallIndexMixin._put
        ):
            return None  # a subclass that changes how entries are written keeps its own path
        codec = values.codec

        def write(key: Digest, record: DigestedCall, arguments: Any, result_key: Digest,
                  result: Any) -> Exception | None:  # fmt: skip
            framed = serialise_values(codec.dumps, arguments, result_key, result)
            if isinstance(framed, Exception):
                return framed
            small: dict[str, bytes] = {}
            for name, parts in framed.items():
                if sum(memoryview(part).nbytes for part in parts) > LARGE:
                    values._put_large(name, parts)
                else:
                    small[name] = b"".join(parts)
            pipe = self._conn.client.pipeline(transaction=True)
            if small:
                values._queue_small(pipe, small)
            sets = record_sets(self._space, record)
            self._conn.put_call(
                keys=[self._space + key, self._index, f"{self._space}x:{key}", *sets],
                args=[key, dump_record(key, record.to_record()), self._ttl_ms or 0,
                      json.dumps(sets)],
                client=pipe,
            )  # fmt: skip
            pipe.execute()
            return None

        return write

    def _try_process_locks(self, keys: builtins.list[str]) -> dict[str, Any]:
        """Every free key's lock in one pipeline of ``SET NX PX``."""
        locks = {key: self._process_lock(key) for key in keys}
        pipe = self._conn.client.pipeline(transaction=False)
        for lock in locks.values():
            pipe.set(lock.name, lock.token, nx=True, px=lock.lease_ms)
        taken = {}
        for (key, lock), ok in zip(locks.items(), pipe.execute(), strict=True):
            if ok:
                lock.held()
                taken[key] = lock
        return taken

    def _release_process_locks(self, locks: builtins.list[Any]) -> None:
        """Every lock in one pipeline (each released only by its holder, as ``RedisLock``)."""
        pipe = self._conn.client.pipeline(transaction=False)
        for lock in locks:
            self._conn.heartbeat.drop(lock.name)
            self._conn.release(keys=[lock.name], args=[lock.token], client=pipe)
        lost = [lock.name for lock, ok in zip(locks, pipe.execute(), strict=True) if not ok]
        if lost:
            log.warning("%d Redis locks expired while held, %s first", len(lost), lost[0])

    def _put_many(self, items: builtins.list[tuple[Digest, Any]]) -> None:
        """Many records: their ``PUT_CALL`` scripts in one pipeline (each atomic, as ``_put``)."""
        pipe = self._conn.client.pipeline(transaction=False)
        for key, record in items:
            sets = record_sets(self._space, record)
            self._conn.put_call(
                keys=[self._space + key, self._index, f"{self._space}x:{key}", *sets],
                args=[
                    key,
                    dump_record(key, record.to_record()),
                    self._ttl_ms or 0,
                    json.dumps(sets),
                ],
                client=pipe,
            )
        pipe.execute()


class ValueRedis(ManyValuesMixin, ValueMixin, PerKeyLockMixin, RedisBackend):
    """Values in Redis."""


class CallRedis(CallMixin, PerKeyLockMixin, RedisCallBackend):
    """Call records in Redis. The mixins sit left of the backend, so its index-backed ``query``,
    its bulk write and its cross-process locks are named here, lest ``CallMixin``'s scan and the
    mixin's no-ops win."""

    query = RedisCallBackend.query
    _process_lock = RedisCallBackend._process_lock
    _try_process_locks = RedisCallBackend._try_process_locks
    _release_process_locks = RedisCallBackend._release_process_locks

    def _save_many(self, items: builtins.list[tuple[Digest, DigestedCall]]) -> None:
        """Many records in one round trip; the caller holds their keys (``_holding``)."""
        self._put_many([(check_key(key), record) for key, record in items])


def cache_from_url(url: str) -> Cache:
    """A cache of values and call records in one Redis database; both share one connection pool.

    Raises ``MissingDependencyError`` without redis-py and ``ConfigError`` for a bad URL.
    """
    values = ValueRedis(url)
    return Cache(values, CallRedis(url), url=values.to_url())
