"""Raw access to what a cache stored, bypassing fleche: files, SQLite/SQL rows, Redis strings.

A :class:`Unit` is one stored thing (a file, a column of one row, a Redis string) that a test reads,
overwrites or deletes to play the disk, the database or an attacker. ``record_unit`` and
``value_unit`` find the unit holding a call record or a value of a cache made by a harness of
``tests/backends``.
"""

from __future__ import annotations

import os
import random
import sqlite3
from typing import Any

import sqlalchemy as sa

from fleche.storage._files import key_path


class Unit:
    """One stored thing; ``read`` gives bytes, or str for a text column (``text`` is True)."""

    text = False

    def read(self) -> Any:
        raise NotImplementedError

    def write(self, data: Any) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError


class FileUnit(Unit):
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def write(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)

    def delete(self) -> None:
        os.unlink(self.path)


class SqliteCell(Unit):
    """A column of one row of the embedded database (``DIR/fleche.db``), by key."""

    def __init__(self, root: str, table: str, column: str, key: str, text: bool) -> None:
        self.db, self.table, self.column = f"{root}/fleche.db", table, column
        self.blob, self.text = bytes.fromhex(key), text

    def _run(self, sql: str, *params: Any) -> Any:
        conn = sqlite3.connect(self.db, timeout=60)
        try:
            with conn:
                return conn.execute(sql, params).fetchone()
        finally:
            conn.close()

    def read(self) -> Any:
        return self._run(f"SELECT {self.column} FROM {self.table} WHERE key = ?", self.blob)[0]

    def write(self, data: Any) -> None:
        self._run(f"UPDATE {self.table} SET {self.column} = ? WHERE key = ?", data, self.blob)

    def delete(self) -> None:
        self._run(f"DELETE FROM {self.table} WHERE key = ?", self.blob)


class SqlValueRows(Unit):
    """A value of the SQL storage: its chunk rows, read and rewritten as one frame."""

    def __init__(self, storage: Any, key: str) -> None:
        self.engine, self.table, self.key = storage._db.engine, storage.tables.values, key

    def read(self) -> bytes:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.data).where(t.c.key == self.key).order_by(t.c.chunk))
            return b"".join(bytes(data) for (data,) in rows)

    def write(self, data: bytes) -> None:
        t = self.table
        with self.engine.begin() as conn:
            written = conn.execute(sa.select(t.c.written).where(t.c.key == self.key)).scalar()
            conn.execute(sa.delete(t).where(t.c.key == self.key))
            conn.execute(
                sa.insert(t), [{"key": self.key, "chunk": 0, "data": data, "written": written}]
            )

    def delete(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.key == self.key))


class SqlRecordRow(Unit):
    """A call record of the SQL storage: its JSON ``record`` column."""

    text = True

    def __init__(self, storage: Any, key: str) -> None:
        self.engine, self.table, self.key = storage._db.engine, storage.tables.calls, key

    def read(self) -> str:
        t = self.table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.record).where(t.c.key == self.key)).scalar_one()

    def write(self, data: str) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.key == self.key).values(record=data))

    def delete(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.key == self.key))


class RedisString(Unit):
    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name

    def read(self) -> bytes:
        data = self.client.get(self.name)
        assert data is not None, f"{self.name} is not stored"
        return bytes(data)

    def write(self, data: bytes) -> None:
        self.client.set(self.name, data)

    def delete(self) -> None:
        self.client.delete(self.name)


def record_unit(kind: str, harness: Any, cache: Any, key: str) -> Unit:
    """Where ``cache`` keeps the call record under ``key``."""
    calls = cache.calls
    if kind == "filesystem":
        return FileUnit(key_path(calls._dir, key))
    if kind == "embedded":
        return SqliteCell(calls.root, "calls", "record", key, text=False)
    if kind == "redis":
        return RedisString(harness.raw, calls._space + key)
    return SqlRecordRow(calls, key)


def value_unit(kind: str, harness: Any, cache: Any, key: str) -> Unit:
    """Where ``cache`` keeps the value under ``key`` (for embedded: a row, or a file when large)."""
    values = cache.values
    if kind == "filesystem":
        return FileUnit(key_path(values._dir, key))
    if kind == "embedded":
        cell = SqliteCell(values.root, "vals", "data", key, text=False)
        return cell if cell.read() is not None else FileUnit(key_path(values._files, key))
    if kind == "redis":
        return RedisString(harness.raw, values._space + key)
    return SqlValueRows(values, key)


def flip(data: Any, rng: random.Random) -> Any:
    """``data`` with one bit flipped (for text: one character replaced by another printable one)."""
    at = rng.randrange(len(data))
    if isinstance(data, str):
        old = data[at]
        new = chr(33 + (ord(old) - 33 + rng.randrange(1, 94)) % 94) if " " < old < "\x7f" else "x"
        return data[:at] + new + data[at + 1 :]
    out = bytearray(data)
    out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: Any, rng: random.Random) -> Any:
    """``data`` cut short at a random length (possibly empty)."""
    return data[: rng.randrange(len(data))]
