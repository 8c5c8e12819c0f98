"""Upgrades of the embedded database (``DIR/fleche.db``) from older layouts, run once when a
database of an older layout is opened, inside the transaction that checks the schema.

Layout 1 kept a call record in seven checksummed columns (``name, module, version, created,
result, args, extra``); reading them all and formatting them for the checksum was a third of a
hit. Layout 2 keeps ``result`` and a ``record`` blob that holds everything (the indexed columns
are copies), so that a hit checks one blob with one xxh3 call (see ``embedded._call_row``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import warnings
from collections.abc import Callable
from typing import Any

import xxhash

from ..call import NO_RESULT, DigestedCall
from ..digest import Digest
from ..errors import CorruptEntryWarning

__all__ = ["call_from_parts", "upgrade"]

log = logging.getLogger(__name__)

_PAGE = 1000


def upgrade(conn: sqlite3.Connection, found: str, path: str,
            encode: Callable[[str, DigestedCall], tuple[Any, ...]], schema: tuple[str, ...]
            ) -> None:  # fmt: skip
    """Bring the database on ``conn`` from layout ``found`` to the current one. ``encode`` makes
    a current ``calls`` row (without the key) and ``schema`` holds the current ``CREATE``
    statements; the caller holds an IMMEDIATE transaction and records the new layout."""
    if found == "1":
        _from_layout_1(conn, path, encode, schema)


def _from_layout_1(conn: sqlite3.Connection, path: str,
                   encode: Callable[[str, DigestedCall], tuple[Any, ...]], schema: tuple[str, ...]
                   ) -> None:  # fmt: skip
    """Rewrite every record in the layout-2 ``calls`` table. A record that fails its layout-1
    checksum is dropped (it would have been a miss) and counted in one warning."""
    conn.execute("DROP INDEX IF EXISTS calls_by_function")
    conn.execute("ALTER TABLE calls RENAME TO calls_layout_1")
    for statement in schema:
        conn.execute(statement)  # the new calls table and its index; the others exist
    columns = "key, name, module, version, created, result, args, extra, checksum"
    last, moved, dropped = b"", 0, 0
    while True:
        page = conn.execute(
            f"SELECT {columns} FROM calls_layout_1 WHERE key > ? ORDER BY key LIMIT {_PAGE}",
            (last,),
        ).fetchall()
        rows = []
        for blob, *row in page:
            key = blob.hex()
            record = _layout_1_call(key, tuple(row))
            if record is None:
                dropped += 1
                continue
            rows.append((blob, *encode(key, record)))
        conn.executemany(f"INSERT INTO calls VALUES ({', '.join('?' * 7)})", rows)
        moved += len(rows)
        if len(page) < _PAGE:
            break
        last = page[-1][0]
    conn.execute("DROP TABLE calls_layout_1")
    log.info("%s: %d call records moved to layout 2", path, moved)
    if dropped:
        warnings.warn(
            f"{path}: {dropped} corrupt call record(s) dropped while upgrading the layout; "
            "their calls will be computed again",
            CorruptEntryWarning,
            stacklevel=6,
        )


def _layout_1_checksum(key: str, row: tuple[Any, ...]) -> int:
    name, module, version, created, result, args, extra = row
    hasher = xxhash.xxh3_64(f"{key}\0{name}\0{module}\0{version}\0{created!r}\0".encode())
    hasher.update(result or b"-")
    hasher.update(args)
    hasher.update(extra.encode())
    return hasher.intdigest() - (1 << 63)


def _layout_1_call(key: str, row: tuple[Any, ...]) -> DigestedCall | None:
    """The record in a layout-1 row (``extra`` held ``[parameters, metadata, code digest]``
    and ``created`` was moved out of ``metadata.fleche``); None when it fails its checksum."""
    *columns, checksum = row
    try:
        if _layout_1_checksum(key, tuple(columns)) != checksum:
            return None
        name, module, version, created, result, args, extra = columns
        params, metadata, code_digest = json.loads(extra)
        if len(args) != 16 * len(params):
            return None
        return call_from_parts(name, module, version, result, params, args, metadata, created,
                               code_digest)  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def call_from_parts(name: str, module: str | None, version: str | None, result: bytes | None,
                    params: list[str], args: bytes, metadata: dict[str, Any],
                    created: float | None, code_digest: str | None) -> DigestedCall:  # fmt: skip
    """The record a row holds, in any layout: ``version`` as JSON text, ``args`` and ``result``
    as 16-byte digests, ``created`` (kept apart from ``metadata.fleche``) put back."""
    if created is not None:
        metadata["fleche"]["created"] = created
    return DigestedCall(
        name,
        {p: Digest(args[16 * i : 16 * i + 16].hex()) for i, p in enumerate(params)},
        metadata,
        module,
        None if version is None else json.loads(version),
        code_digest,
        NO_RESULT if result is None else Digest(result.hex()),
    )
