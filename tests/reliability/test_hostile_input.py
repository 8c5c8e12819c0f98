"""Hostile input: tampered pickles with signing on, and keys that try to leave the store.

Tampered pickles — count: 3 forgeries (signed with another key, unsigned, a genuine signature
over swapped bytes) x 2 ways of setting the key (``secret_key=`` and ``FLECHE_SECRET_KEY``) per
backend. Pass rule: the payload, whose unpickling would create a marker file, is never unpickled
(no marker file; the same payload does create it when loaded without signing), and the call is a
miss with a ``CorruptEntryWarning`` that recomputes the right value.

Hostile keys — count: 9 bad keys (path separators, ``..``, NUL, non-hex, upper case, wrong
lengths), as ``str`` and as ``Digest``, through every keyed operation of both storages and of the
cache, per backend; plus a forged call record whose result digest is a path (with a valid
checksum, which is no secret). Pass rule: ``InvalidKeyError`` before any file, row or Redis key is
touched (the storage's I/O is a tripwire during the call), and the forged record is a warned miss
that reads and deletes nothing outside the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import fleche
from fleche import fleche as cached
from fleche.digest import Digest, digest
from fleche.errors import CorruptEntryWarning, InvalidKeyError
from fleche.storage.serialize import Codec

from ..backends import HARNESSES
from .common import record
from .raw import record_unit, value_unit

SECRET = "00112233445566778899aabbccddeeff"
OTHER = "ffeeddccbbaa99887766554433221100"
BAD_KEYS = [
    "../../../../../../../etc/passwd0",  # 32 characters, like a digest
    "ab/" + "0" * 29,
    ".." + "0" * 30,
    "a\0" + "0" * 30,
    "g" * 32,
    "ABCDEF" + "0" * 26,
    "/" + "a" * 31,
    "",
    "a" * 33,
]


class Payload:
    """Unpickling this creates ``marker``: the proof that a frame was deserialised."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return open, (self.marker, "w")


def forgeries(key: str, genuine: bytes, marker: str) -> dict[str, bytes]:
    """Frames carrying ``Payload(marker)`` that a signing store must refuse."""
    signed_by_us = Codec(SECRET).dumps_bytes(key, Payload(marker))
    unsigned = Codec()
    unsigned.keys = []  # not even FLECHE_SECRET_KEY
    head = 4 + 1 + 4 + 8 + 8  # the value frame's header (serialize._HEAD), then the signature
    return {
        "other_key": Codec(OTHER).dumps_bytes(key, Payload(marker)),
        "unsigned": unsigned.dumps_bytes(key, Payload(marker)),
        "swapped_bytes": signed_by_us[:head]
        + genuine[head : head + 32]
        + signed_by_us[head + 32 :],
    }


def test_the_payload_runs_when_unpickled_unsigned(tmp_path) -> None:
    """The control: without a signature check, the payload does create its marker."""
    marker = tmp_path / "ran"
    key, codec = "0" * 32, Codec()
    codec.keys = []
    codec.loads(key, codec.dumps_bytes(key, Payload(str(marker))))
    assert marker.exists()


calls: list[int] = []


@cached
def sensitive(i: int) -> dict[str, Any]:
    calls.append(i)
    return {"i": i, "blob": bytes([i]) * (40_000 if i % 2 else 100)}


@pytest.mark.parametrize("how", ["url", "env"])
def test_a_tampered_pickle_is_never_unpickled(persistent, how, tmp_path, monkeypatch) -> None:
    kind, harness, _ = persistent
    if how == "env":
        monkeypatch.setenv("FLECHE_SECRET_KEY", f"{SECRET}:{OTHER[::-1]}")
        store = harness.cache()
    else:
        monkeypatch.delenv("FLECHE_SECRET_KEY", raising=False)
        store = harness.cache(secret_key=SECRET)
    tallies = {"forgeries": 0, "refused": 0, "unpickled": 0}
    with fleche.cache(store):
        for i in (1, 2):  # 1: over the embedded default's inline threshold (a file), 2: inline
            want = sensitive(i)
            key = digest(want)
            unit = value_unit(kind, harness, store, key)
            for name, frame in forgeries(key, unit.read(), str(tmp_path / f"ran-{i}")).items():
                unit = value_unit(kind, harness, store, key)
                unit.write(frame)
                tallies["forgeries"] += 1
                ran = len(calls)
                with pytest.warns(CorruptEntryWarning):
                    assert sensitive(i) == want, name
                assert len(calls) == ran + 1, name
                tallies["refused"] += 1
                tallies["unpickled"] += int((tmp_path / f"ran-{i}").exists())
                assert not (tmp_path / f"ran-{i}").exists(), f"{kind}: {name} was unpickled"
    record(f"tampered_pickle_{how}", kind, tallies)


# --- hostile keys ------------------------------------------------------------------------------
class Tripwire(Exception):
    """Raised by any I/O of a storage while a hostile key is being refused."""


def trip(*args: Any, **kwargs: Any) -> Any:
    raise Tripwire(f"touched the store with {args!r:.120}")


def arm(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Make every file, SQL and Redis access raise ``Tripwire``."""
    for name in ("open", "stat", "listdir", "unlink", "replace", "utime", "scandir", "mkdir"):
        monkeypatch.setattr(os, name, trip)
    if kind == "embedded":
        from fleche.storage import embedded

        monkeypatch.setattr(embedded._Connection, "execute", trip)
        monkeypatch.setattr(embedded._Connection, "executemany", trip)
        monkeypatch.setattr(embedded.Database, "connection", trip)
        monkeypatch.setattr(embedded.Database, "cursor", trip)
    if kind in ("sqlite", "postgres", "mysql"):
        from fleche.storage import sql_engine

        for name in ("fetch", "write", "core", "lock_connection", "_connection"):
            monkeypatch.setattr(sql_engine.Database, name, trip)
    if kind == "redis":
        import redis

        from fleche.storage import redis as fleche_redis

        monkeypatch.setattr(redis.Redis, "execute_command", trip)
        monkeypatch.setattr(redis.client.Pipeline, "execute", trip)
        monkeypatch.setattr(fleche_redis.RedisConnection, "get", trip)


def operations(store: Any, key: Any) -> dict[str, Any]:
    """Every keyed operation of the value storage, the call storage and the cache."""
    record_ = fleche.call.DigestedCall("f", {}, {}, "m", None, None, digest(1))
    return {
        "values.put": lambda: store.values.put(1, key),
        "values.get": lambda: store.values.get(key),
        "values.load": lambda: store.values.load(key),
        "values.save": lambda: store.values.save(1, key),
        "values.contains": lambda: store.values.contains(key),
        "values.evict": lambda: store.values.evict(key),
        "calls.put": lambda: store.calls.put(record_, key),
        "calls.get": lambda: store.calls.get(key),
        "calls.save": lambda: store.calls.save(record_, key),
        "calls.load": lambda: store.calls.load(key),
        "calls.contains": lambda: store.calls.contains(key),
        "calls.evict": lambda: store.calls.evict(key),
        "cache.load": lambda: store.load(key),
        "cache.load_value": lambda: store.load_value(key),
        "cache.contains": lambda: store.contains(key),
        "cache.evict": lambda: store.evict(key),
    }


def test_hostile_keys_are_refused_before_touching_the_store(persistent, monkeypatch) -> None:
    kind, _, url = persistent
    store = fleche.config.resolve_cache(url)
    store.values.save(1)  # connections, schema and directories exist: only the key is new
    refused = 0
    for bad in BAD_KEYS:
        for key in (bad, Digest(bad)):
            for operation in operations(store, key).values():
                with monkeypatch.context() as patch:
                    arm(patch, kind)
                    with pytest.raises(InvalidKeyError):
                        operation()
                refused += 1
    prefixes = ["../", "a/", "\0", "g", "A"]
    for prefix in prefixes:
        with monkeypatch.context() as patch:
            arm(patch, kind)
            for expand in (store.expand, store.values_expand):
                with pytest.raises(InvalidKeyError):
                    expand(prefix)
                refused += 1
    record("hostile_keys", kind, {"refused": refused, "bad_keys": len(BAD_KEYS)})
    assert refused == len(BAD_KEYS) * 2 * 16 + len(prefixes) * 2


@pytest.fixture(params=["filesystem", "sqlite", "postgres", "mysql", "redis"])
def textual(request, tmp_path) -> Any:
    """The persistent backends that keep digests as text (the embedded default keeps 16 bytes,
    where no path can be written)."""
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    yield request.param, harness, harness.cache().url
    harness.close()


def test_a_forged_record_cannot_point_outside_the_store(textual, tmp_path) -> None:
    """A call record rewritten (with a valid checksum: it is no secret) so that its result digest
    is a path out of the store."""
    kind, harness, url = textual
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    store = fleche.config.resolve_cache(url)
    with fleche.cache(store):
        want = sensitive(4)
        key = sensitive.digest(4)
        if kind == "filesystem":  # values/<k[:2]>/<k>: "../" twice up from values/ is tmp_path
            assert Path(store.values._dir).parent.parent == tmp_path
            hostile = "../" + "/" * 23 + "victim"
        else:
            hostile = BAD_KEYS[0]
        forge_result(kind, harness, store, key, hostile)
        with pytest.warns(CorruptEntryWarning):
            assert sensitive(4) == want
        assert victim.read_text() == "keep me"
        assert sensitive(4) == want
    record("forged_record", kind, {"victim_kept": 1})


def forge_result(kind: str, harness: Any, store: Any, key: str, hostile: str) -> None:
    """Rewrite the record under ``key`` so its result is ``hostile``, as an attacker would."""
    from fleche.storage.serialize import dump_record, load_record, record_checksum

    assert len(hostile) == 32
    unit = record_unit(kind, harness, store, key)
    if kind in ("filesystem", "redis"):
        fields = load_record(key, unit.read())
        fields["result"] = hostile
        unit.write(dump_record(key, fields))
        return
    import sqlalchemy as sa

    from fleche.storage.sql import _signed

    fields = json.loads(unit.read())
    fields["result"] = hostile
    text = json.dumps(fields)
    checksum = _signed(record_checksum(key, text.encode()))
    t = store.calls.tables.calls
    with store.calls._db.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.key == key).values(record=text, checksum=checksum))
