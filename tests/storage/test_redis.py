"""What the Redis storage adds to the conformance suite: push-down, expiry, leases, fork, integrity."""

from __future__ import annotations

import builtins
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any

import pytest

import fleche
from fleche.call import Call, DigestedCall, QueryCall
from fleche.digest import SCHEME_VERSION, Digest, digest
from fleche.errors import (
    ConfigError,
    CorruptEntryWarning,
    LockTimeoutError,
    MissingDependencyError,
    StorageError,
)
from fleche.storage import redis as redis_storage
from fleche.storage.base import Intent
from fleche.storage.redis_pieces import LARGE
from fleche.storage.serialize import Codec

from ..backends.redis import RedisHarness
from .held_once import save_and_load_traced

pytestmark = pytest.mark.services

SECRET = "11" * 32
OTHER_SECRET = "22" * 32


@pytest.fixture
def rh(tmp_path):
    """The Redis harness (fresh prefixes, deleted at the end); skips or fails without a server."""
    harness = RedisHarness(tmp_path)
    harness.check_available()
    yield harness
    harness.close()


class Spy:
    """Forwards to a redis-py client and records which of its methods were called, with what."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return attr(*args, **kwargs)

        return recorded

    def named(self, name: str) -> list[tuple[tuple, dict]]:
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]


def spy_on(storage: Any, monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy(storage._conn.client)
    monkeypatch.setattr(storage._conn, "client", spy)
    return spy


def record(name: str = "f", x: Any = 1, module: str = "tests", **tags: Any) -> DigestedCall:
    return DigestedCall(name, {"x": digest(x)}, {"tags": tags}, module, None, None, digest(x * 2))


def wait_until(condition: Any, timeout: float = 6.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# --- URLs, identity, dependencies -------------------------------------------------------------
def test_url_options_round_trip_and_shared_pool(rh: RedisHarness) -> None:
    from fleche.storage.redis import CallRedis, ValueRedis, cache_from_url

    url = rh.url(ttl=60, lease=2.5, lock_timeout=7, compress="zlib", secret_key=SECRET)
    cache = cache_from_url(url)
    values, calls = cache.values, cache.calls
    assert isinstance(values, ValueRedis) and isinstance(calls, CallRedis)
    assert (values.ttl, values.lease, values.lock_timeout) == (60, 2.5, 7)
    assert values.codec.signed and values.codec.compress == "zlib"
    assert values._conn is calls._conn  # one connection pool for both
    assert ValueRedis(values.to_url()) == values != CallRedis(values.to_url())
    assert pickle.loads(pickle.dumps(values)) == values
    assert SECRET not in repr(values)
    key = values.save({"payload": list(range(100))})
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.values.load(key) == {"payload": list(range(100))}


@pytest.mark.parametrize(
    "query",
    ["prefix=a*b", "prefix=", "ttl=-1", "lease=soon", "compress=lz4", "secret_key=nothex"],
)
def test_bad_options_are_config_errors(query: str) -> None:
    from fleche.storage.redis import ValueRedis

    with pytest.raises(ConfigError):
        ValueRedis(f"redis://127.0.0.1:6379/0?{query}")


def test_bad_database_is_a_config_error() -> None:
    from fleche.storage.redis import ValueRedis

    with pytest.raises(ConfigError, match="database number"):
        ValueRedis("redis://127.0.0.1:6379/zero")


def test_missing_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleche.config import cache_from_url

    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    with pytest.raises(MissingDependencyError, match=r"fleche\[redis\]"):
        cache_from_url("redis://127.0.0.1:6379/0")


def test_other_digest_scheme_is_refused(rh: RedisHarness) -> None:
    from fleche.storage.redis import ValueRedis

    storage = ValueRedis(rh.url())  # connects on first use, not here
    rh.raw.hset(f"{storage.prefix}:meta", "digest_scheme", SCHEME_VERSION + 1)
    with pytest.raises(ConfigError, match=f"scheme {SCHEME_VERSION + 1}"):
        storage.save(1)


# --- the sorted set ------------------------------------------------------------------------------
def test_prefix_scans_are_zrangebylex_with_limit(rh: RedisHarness, monkeypatch) -> None:
    storage = rh.value_storage()
    keys = [Digest(f"abcdef{i:026x}") for i in range(40)] + [Digest("f" * 32)]
    for key in keys:
        storage.put(key, key)
    spy = spy_on(storage, monkeypatch)
    assert storage.expand("fff") == "f" * 32
    assert storage.shrink("f" * 32) == "f"
    scans = spy.named("zrangebylex")
    assert scans and {name for name, _, _ in spy.calls} == {"zrangebylex"}
    for args, kwargs in scans:  # a bounded range read, never the whole set
        assert args[0] == storage._index and args[1].startswith(b"[")
        assert args[2] == b"(" + args[1][1:] + b"\xff"
        assert kwargs == {"start": 0, "num": 2}


def test_list_pages_through_the_sorted_set_in_order(rh: RedisHarness) -> None:
    storage = rh.value_storage()
    keys = sorted(Digest(digest(i)) for i in range(1200))  # more than two pages
    pipe = rh.raw.pipeline(transaction=False)
    for key in keys:  # written raw, in one round trip, for speed
        pipe.zadd(storage._index, {key: 0})
        pipe.set(storage._space + key, storage.codec.dumps_bytes(key, key))
    pipe.execute()
    assert list(storage.list()) == keys
    assert len(storage) == 1200
    assert storage.load(keys[700]) == keys[700]


def test_values_know_their_size_and_age(rh: RedisHarness) -> None:
    storage = rh.value_storage()
    key = storage.save(bytes(5000))
    assert storage.stored_size(key) == rh.raw.strlen(storage._space + key) > 5000
    assert 0 <= storage.stored_age(key) < 60
    rh.raw.hset(storage._space + "written", key, time.time() - 100)
    assert storage.stored_age(key) >= 100
    storage.evict(key)
    assert not rh.raw.hexists(storage._space + "written", key)
    for ask in (storage.stored_size, storage.stored_age):
        with pytest.raises(KeyError):
            ask(key)


# --- calls and query push-down ------------------------------------------------------------------
def test_query_reads_only_the_records_its_index_sets_name(rh: RedisHarness, monkeypatch) -> None:
    storage = rh.call_storage()
    keys = {x: storage.save(record("f", x, parity=x % 2)) for x in range(40)}
    for x in range(10):
        storage.save(record("g", x))
    spy = spy_on(storage, monkeypatch)

    found = dict(storage.query(QueryCall("f", {"x": 3}, module="tests")))
    assert list(found) == [keys[3]]
    fetched = [k for args, _ in spy.named("mget") for k in args[0]]
    assert fetched == [storage._space + keys[3]]  # one record read, not fifty
    (sets,) = [args[0] for args, _ in spy.named("sinter")]
    assert sets == [f"{storage._space}fn:tests:f", f"{storage._space}arg:x:{digest(3)}"]
    assert not {"zrangebylex", "scan", "zscan", "keys", "zrange"} & {c[0] for c in spy.calls}

    spy.calls.clear()  # the module left open: the name set; metadata is checked on those only
    odd = dict(storage.query(QueryCall("f", metadata={"tags": {"parity": 1}})))
    assert set(odd) == {keys[x] for x in range(1, 40, 2)}
    fetched = {k for args, _ in spy.named("mget") for k in args[0]}
    assert fetched == {storage._space + k for k in keys.values()}

    spy.calls.clear()  # an argument alone is enough to use an index
    assert len(dict(storage.query(QueryCall(arguments={"x": 5})))) == 2
    assert len([k for args, _ in spy.named("mget") for k in args[0]]) == 2


def test_overwrite_and_evict_move_index_entries(rh: RedisHarness) -> None:
    storage = rh.call_storage()
    key = Digest("c" * 32)
    storage.save(record("f", 1), key)
    storage.save(record("g", 2), key)  # same key, other function and argument
    space = storage._space
    assert not rh.raw.sismember(f"{space}fn:tests:f", key)
    assert not rh.raw.sismember(f"{space}arg:x:{digest(1)}", key)
    assert rh.raw.sismember(f"{space}fn:tests:g", key)
    assert dict(storage.query(QueryCall("f"))) == {}
    assert list(dict(storage.query(QueryCall("g", {"x": 2})))) == [key]
    storage.evict(key)
    assert rh.raw.keys(space + "*") == [], "a record's index entries leave with it"


# --- expiry -----------------------------------------------------------------------------------------
def test_expiry_removes_a_call_with_its_index_entries(rh: RedisHarness) -> None:
    storage = rh.call_storage(ttl=1)
    key = storage.save(record("f", 7))
    space = storage._space
    assert 0 < rh.raw.pttl(space + key) <= 1000
    assert list(dict(storage.query(QueryCall("f", {"x": 7})))) == [key]
    wait_until(lambda: not storage.contains(key))
    # expired: no index answers with it, and the first that meets it reaps its entries
    with pytest.raises(KeyError):
        storage.expand(key[:8])
    assert rh.raw.zscore(storage._index, key) is None
    assert not rh.raw.sismember(f"{space}fn:tests:f", key)
    assert not rh.raw.sismember(f"{space}arg:x:{digest(7)}", key)
    assert not rh.raw.exists(f"{space}x:{key}")
    assert dict(storage.query(QueryCall("f"))) == {}
    assert list(storage.list()) == []


def test_expiry_reaps_leftovers_on_query_and_list(rh: RedisHarness) -> None:
    storage = rh.call_storage(ttl=1)
    keys = [storage.save(record("f", x)) for x in range(3)]
    wait_until(lambda: not any(map(storage.contains, keys)))
    assert dict(storage.query(QueryCall("f", {"x": 1}))) == {}  # reaps what it met
    assert not rh.raw.sismember(f"{storage._space}name:f", keys[1])
    assert list(storage.list()) == []  # sweeps the rest
    assert rh.raw.keys(storage._space + "*") == []


def test_values_expire_too(rh: RedisHarness) -> None:
    storage = rh.value_storage(ttl=1)
    key = storage.save("short-lived")
    kept = storage.save("saved again")
    wait_until(lambda: not storage.contains(key))
    storage.save("saved again")  # a new write starts a new lifetime
    with pytest.raises(KeyError):
        storage.expand(key)
    assert list(storage.list()) == [kept]
    assert rh.raw.zscore(storage._index, key) is None


# --- large values in pieces ---------------------------------------------------------------------
BIG = bytes(range(256)) * (3 * LARGE // 256)  # 3 x LARGE: written and read in pieces


@pytest.mark.parametrize("ttl", [None, 300])
def test_a_large_value_appears_whole_or_not_at_all(rh: RedisHarness, monkeypatch, ttl) -> None:
    storage = rh.value_storage(**({} if ttl is None else {"ttl": ttl}))
    key = Digest(digest(BIG))
    entry, commit, seen = storage._space + key, storage._conn.commit_value, []

    def checked(keys: list[str], args: list[Any]) -> Any:
        temporary = keys[0]
        seen.append(temporary)
        assert temporary.startswith(storage._space + "tmp:")
        assert not rh.raw.exists(entry)  # readers see nothing until the rename
        assert rh.raw.strlen(temporary) > len(BIG) and rh.raw.pttl(temporary) > 0
        return commit(keys, args)

    monkeypatch.setattr(storage._conn, "commit_value", checked)
    assert storage.save(BIG) == key
    assert seen and not rh.raw.exists(seen[0])
    assert storage.load(key) == BIG
    assert list(storage.list()) == [key] and storage.stored_age(key) < 60
    pttl = rh.raw.pttl(entry)
    assert (
        pttl == -1 if ttl is None else 0 < pttl <= ttl * 1000
    )  # the entry's expiry, not the temp's


def test_a_large_write_whose_temporary_key_vanished_fails(rh: RedisHarness, monkeypatch) -> None:
    storage = rh.value_storage()
    write = redis_storage.write_pieces

    def expired(client: Any, temporary: str, parts: Any) -> None:
        write(client, temporary, parts)
        rh.raw.delete(temporary)  # as if its writer had paused past its expiry

    monkeypatch.setattr(redis_storage, "write_pieces", expired)
    with pytest.raises(StorageError):
        storage.save(BIG)
    assert list(storage.list()) == [] and not rh.raw_keys(storage)


def test_a_large_value_changed_while_read_is_read_again(rh: RedisHarness, monkeypatch) -> None:
    """Its pieces take several GETRANGEs; a writer between them (here another encoding of the
    same value) must not tear the read: WATCH sees the change and the read starts over."""
    import redis

    storage = rh.value_storage()
    key = storage.save(BIG)
    other = Codec(compress="zlib").dumps_bytes(key, BIG)
    getrange, ranges = redis.client.Pipeline.getrange, []

    def interrupted(pipe: Any, name: str, start: int, end: int) -> Any:
        ranges.append(start)
        if len(ranges) == 2:
            rh.raw.set(name, other)
        return getrange(pipe, name, start, end)

    monkeypatch.setattr(redis.client.Pipeline, "getrange", interrupted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        assert storage.load(key) == BIG
    assert ranges.count(0) == 2  # the read started over


def test_a_large_corrupt_value_is_a_warned_miss_and_removed(rh: RedisHarness) -> None:
    storage = rh.value_storage()
    key = storage.save(BIG)
    rh.raw.setrange(storage._space + key, 2 * LARGE, b"!")
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        storage.load(key)
    assert not rh.raw.exists(storage._space + key)


def test_a_large_array_is_held_once_while_stored_and_loaded(rh: RedisHarness) -> None:
    """No copy of the whole frame on the way in or out (allocations seen by tracemalloc), and
    the loaded array is writable: it lives in the buffer the pieces were read into."""
    np = pytest.importorskip("numpy")
    storage = rh.value_storage()
    array = np.arange(4 * 1024 * 1024, dtype=np.float64)  # 32 MiB
    small = storage.load(storage.save(np.arange(4.0)))
    assert small.flags.writeable
    stored, loaded_peak, loaded = save_and_load_traced(storage, array)
    assert stored < 0.25 * array.nbytes
    assert loaded_peak < 1.5 * array.nbytes
    assert loaded.flags.writeable and np.array_equal(loaded, array)


# --- integrity ----------------------------------------------------------------------------------------
def test_corrupt_value_is_a_warned_miss_and_removed(rh: RedisHarness) -> None:
    storage = rh.value_storage()
    key = storage.save("fragile")
    frame = bytearray(rh.raw.get(storage._space + key))
    frame[-1] ^= 0xFF
    rh.raw.set(storage._space + key, bytes(frame))
    with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
        storage.load(key)
    assert not rh.raw.exists(storage._space + key)
    assert rh.raw.zscore(storage._index, key) is None


def test_corrupt_call_record_is_a_warned_miss_and_unindexed(rh: RedisHarness) -> None:
    storage = rh.call_storage()
    key = storage.save(record("f", 1))
    rh.raw.set(storage._space + key, b"FLC1" + b"\0" * 8 + b'{"name": "evil"}')
    with pytest.warns(CorruptEntryWarning):
        assert dict(storage.query(QueryCall("f"))) == {}
    assert rh.raw.keys(storage._space + "*") == []


@fleche.fleche
def _sized(n: int) -> bytes:
    return bytes([n % 256]) * n


def _round_trips(rh: RedisHarness, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Commands the hit path sends on its own connections (the pool's are not used by a hit)."""
    sent: list[tuple] = []
    command = redis_storage.RedisConnection._command

    def counted(self: Any, args: tuple) -> Any:
        sent.append(args)
        return command(self, args)

    monkeypatch.setattr(redis_storage.RedisConnection, "_command", counted)
    return sent


def test_a_hit_is_one_round_trip_and_reads_every_size(rh: RedisHarness, monkeypatch) -> None:
    store = rh.cache()
    sizes = [0, 10, LARGE - 64, 2 * LARGE]
    with fleche.cache(store):
        for n in sizes:
            assert _sized(n) == bytes([n % 256]) * n
        sent = _round_trips(rh, monkeypatch)
        for n in sizes[:3]:
            assert _sized(n) == bytes([n % 256]) * n
        assert [args[0] for args in sent] == ["EVALSHA"] * 3
        assert _sized(2 * LARGE) == bytes([0]) * (2 * LARGE)  # the head, then the pieces
        assert (store.hits, store.misses) == (4, 4)


def test_a_hit_survives_a_flush_of_the_servers_scripts(rh: RedisHarness) -> None:
    store = rh.cache()
    with fleche.cache(store):
        _sized(5)
        rh.raw.script_flush()
        assert _sized(5) == bytes([5]) * 5 and store.hits == 1


def test_a_damaged_record_or_value_on_the_hit_path_is_a_miss(rh: RedisHarness) -> None:
    store = rh.cache()
    calls, values = store.calls, store.values
    with fleche.cache(store):
        _sized(1), _sized(2), _sized(3)
        rh.raw.set(calls._space + _sized.digest(1), b"FLC1" + b"\0" * 8 + b"not json")
        record = bytearray(rh.raw.get(calls._space + _sized.digest(2)))
        record[-3] ^= 0x01  # still JSON, no longer its checksum
        rh.raw.set(calls._space + _sized.digest(2), bytes(record))
        rh.raw.delete(values._space + digest(bytes([3]) * 3))
        for n in (1, 2):
            with pytest.warns(CorruptEntryWarning, match=_sized.digest(n)):
                assert _sized(n) == bytes([n]) * n
        assert _sized(3) == bytes([3]) * 3  # its value is gone: a plain miss
        assert (store.hits, store.misses) == (0, 6)
        assert [_sized(n) for n in (1, 2, 3)] == [bytes([n]) * n for n in (1, 2, 3)]
        assert store.hits == 3


class Evil:
    """Unpickling this sets a flag: proof that a frame was deserialised."""

    def __reduce__(self) -> Any:
        return exec, ("import builtins; builtins._fleche_pwned = True",)


def test_tampered_value_is_never_unpickled_when_signing(rh: RedisHarness, monkeypatch) -> None:
    from fleche.storage.serialize import Codec

    monkeypatch.delenv("FLECHE_SECRET_KEY", raising=False)
    storage = rh.value_storage(secret_key=SECRET)
    assert storage.load(storage.save([1, 2])) == [1, 2]
    key = Digest("e" * 32)
    for forger in (Codec(OTHER_SECRET), Codec()):  # wrong key, and no signature at all
        rh.raw.set(storage._space + key, forger.dumps_bytes(key, Evil()))
        rh.raw.zadd(storage._index, {key: 0})
        with pytest.warns(CorruptEntryWarning), pytest.raises(KeyError):
            storage.load(key)
        assert not hasattr(builtins, "_fleche_pwned")
        assert not rh.raw.exists(storage._space + key)


# --- locks ------------------------------------------------------------------------------------------
def two_storages(rh: RedisHarness, **options: Any) -> tuple[Any, Any]:
    """Two call storages on one prefix with separate thread-level locks: only Redis excludes them."""
    from fleche.storage.redis import CallRedis

    first = rh.call_storage(**options)
    return first, CallRedis(first.to_url())


def test_a_second_holder_waits_for_the_lock(rh: RedisHarness) -> None:
    first, second = two_storages(rh)
    key, events = Digest("a" * 32), []

    def contender() -> None:
        with second._operation_context(key, intent=Intent.COMPUTE):
            events.append("second in")

    with first._operation_context(key, intent=Intent.COMPUTE):
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and events == []  # still waiting
        events.append("first out")
    thread.join(10)
    assert events == ["first out", "second in"]
    assert not rh.raw.exists(f"{first._space}lock:{key}")


def test_lock_timeout_raises(rh: RedisHarness) -> None:
    first, second = two_storages(rh)
    second.lock_timeout = 0.2
    key = Digest("b" * 32)
    with first._operation_context(key, intent=Intent.COMPUTE):
        with pytest.raises(LockTimeoutError, match="Redis lock"):
            with second._operation_context(key, intent=Intent.WRITE):
                pass
    with second._operation_context(key, intent=Intent.WRITE):  # free again
        pass


def test_heartbeat_keeps_a_living_holders_lease(rh: RedisHarness) -> None:
    first, second = two_storages(rh, lease=0.4)
    second.lock_timeout = 0.1
    key = Digest("c" * 32)
    with first._operation_context(key, intent=Intent.COMPUTE):
        time.sleep(1.3)  # more than three leases
        with pytest.raises(LockTimeoutError):
            with second._operation_context(key, intent=Intent.COMPUTE):
                pass


def test_only_the_holder_releases(rh: RedisHarness, caplog) -> None:
    first, _ = two_storages(rh)
    key = Digest("d" * 32)
    name = f"{first._space}lock:{key}"
    with caplog.at_level(logging.WARNING, "fleche.storage.redis"):
        with first._operation_context(key, intent=Intent.COMPUTE):
            rh.raw.set(name, "someone-else")  # as if the lease had expired and been taken
    assert rh.raw.get(name) == b"someone-else"
    assert "expired while held" in caplog.text


HOLDER = """
import sys, time
from fleche.storage.base import Intent
from fleche.storage.redis import CallRedis
storage = CallRedis(sys.argv[1])
with storage._operation_context("e" * 32, intent=Intent.COMPUTE):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_blocks_others_at_most_one_lease(rh: RedisHarness) -> None:
    first, second = two_storages(rh, lease=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), first.to_url()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second.lock_timeout = 0.2
        with pytest.raises(LockTimeoutError):
            with second._operation_context("e" * 32, intent=Intent.COMPUTE):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    second.lock_timeout = 5  # one lease (1 s) is the most it may wait now
    with second._operation_context("e" * 32, intent=Intent.COMPUTE):
        pass


# --- connections ---------------------------------------------------------------------------------
def client_id(storage: Any) -> int:
    """The server's id of this thread's read connection of ``storage`` (which one is in use)."""
    own = storage._conn._local.conn
    own.send_command("CLIENT", "ID")
    return own.read_response()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_uses_the_cache_on_its_own_connections(rh: RedisHarness) -> None:
    cache = rh.cache()
    before = cache.save(Call("f", {"x": 1}, module="tests", result="parent"))
    assert cache.load(before).result == "parent"  # the parent's connections are in use
    parent_id = client_id(cache.calls)
    pid = os.fork()
    if pid == 0:  # the child: must leave through os._exit, never back into pytest
        code = 1
        try:
            key = cache.save(Call("f", {"x": 2}, module="tests", result="child"))
            ok = cache.load(key).result == "child" and cache.load(before).result == "parent"
            with cache._operation_context(key, intent=Intent.COMPUTE):
                code = 0 if ok and client_id(cache.calls) != parent_id else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.query(QueryCall("f", {"x": 2})).only().result == "child"
    assert cache.load(before).result == "parent"  # the child did not close the parent's sockets
    assert client_id(cache.calls) == parent_id


def test_a_dropped_connection_is_reopened(rh: RedisHarness) -> None:
    storage = rh.value_storage()
    key = storage.save("survives")
    assert storage.load(key) == "survives"  # opens this thread's own read connection
    rh.raw.client_kill_filter(_id=client_id(storage))
    assert storage.load(key) == "survives"
    assert storage.load(key) == "survives"
