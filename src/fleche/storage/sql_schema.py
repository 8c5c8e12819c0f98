"""The tables of the SQL storage, their version, the upgrades between versions, and queries (SPEC 6, 9).

For a table prefix ``P`` (default ``fleche``):

- ``P_values(key, chunk, data, written)``: a value's frame (``serialize.Codec``) in chunks of at most
  ``CHUNK_SIZE`` bytes, so no row comes near a server's packet limit (MariaDB ``max_allowed_packet``).
- ``P_calls(key, name, module, version, code_digest, result, created, record, checksum)``: the call
  record as JSON with its checksum (``serialize.record_checksum``); the other columns repeat the
  record's fields for indexed queries.
- ``P_arguments(call_key, name, digest)``: one row per argument of a call, indexed by
  ``(name, digest)`` for lookups by argument.
- ``P_schema(name, value)``: ``schema`` (the layout version below) and ``digest_scheme``
  (``fleche.digest.SCHEME_VERSION``).

Keys are 32-character strings compared bytewise, so the keys with a prefix are a key range.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, NamedTuple

import sqlalchemy as sa

from ..call import QueryCall
from ..digest import SCHEME_VERSION, digest
from ..errors import ConfigError
from .sql_dialects import BLOB, KEY, NAME, TEXT, Dialect

__all__ = [
    "CHUNK_SIZE",
    "SCHEMA_VERSION",
    "QueryShape",
    "Tables",
    "clip",
    "ensure_schema",
    "query_parameters",
    "query_statement",
    "version_text",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHUNK_SIZE = 1 << 20
NAME_LENGTH = 255  # name, module and argument names; longer ones are clipped (see ``clip``)
VERSION_LENGTH = 128  # MariaDB limits an index to 3072 bytes: 4 x (255 + 255 + 128) fits
PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


class Tables:
    """The tables of one prefix in the layout of ``version`` (older layouts exist for upgrades)."""

    def __init__(self, prefix: str, dialect: Dialect, version: int = SCHEMA_VERSION) -> None:
        if not PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"SQL table prefix {prefix!r}: use a letter, then letters, digits or _ (max 40)"
            )
        self.prefix, self.version = prefix, version
        self.metadata = sa.MetaData()
        options = dialect.table_options
        p = prefix
        self.values = sa.Table(
            f"{p}_values",
            self.metadata,
            sa.Column("key", KEY, primary_key=True),
            sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("data", BLOB, nullable=False),
            *([sa.Column("written", sa.Double)] if version >= 1 else []),
            # large rows: SQLite keeps them in a rowid table, not in the key's b-tree
            **{k: v for k, v in options.items() if not k.startswith("sqlite")},
        )
        self.calls = sa.Table(
            f"{p}_calls",
            self.metadata,
            sa.Column("key", KEY, primary_key=True),
            sa.Column("name", NAME(NAME_LENGTH), nullable=False),
            sa.Column("module", NAME(NAME_LENGTH)),
            sa.Column("version", NAME(VERSION_LENGTH)),
            sa.Column("code_digest", KEY),
            sa.Column("result", KEY),
            sa.Column("created", sa.Double),
            sa.Column("record", TEXT, nullable=False),
            sa.Column("checksum", sa.BigInteger, nullable=False),
            sa.Index(f"{p}_calls_function", "name", "module", "version"),
            sa.Index(f"{p}_calls_created", "created"),
            **options,
        )
        self.arguments = sa.Table(
            f"{p}_arguments",
            self.metadata,
            sa.Column("call_key", KEY, primary_key=True),
            sa.Column("name", NAME(NAME_LENGTH), primary_key=True),
            sa.Column("digest", KEY, nullable=False),
            sa.Index(f"{p}_arguments_value", "name", "digest", "call_key"),
            **options,
        )
        if version < 1:  # the arguments table came with version 1
            self.metadata.remove(self.arguments)
        self.schema = sa.Table(
            f"{p}_schema",
            self.metadata,
            sa.Column("name", NAME(64), primary_key=True),
            sa.Column("value", sa.Integer, nullable=False),
            **options,
        )

    def create(self, conn: sa.Connection) -> None:
        """Create every table and index that does not exist yet."""
        for table in self.metadata.sorted_tables:
            conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))

    def drop(self, conn: sa.Connection) -> None:
        """Drop every table of this prefix (tests and ``fleche clear`` of a whole database)."""
        for table in reversed(self.metadata.sorted_tables):
            conn.execute(sa.schema.DropTable(table, if_exists=True))


def clip(text: str | None, length: int = NAME_LENGTH) -> str | None:
    """An indexed column's value: long texts are cut, and queries re-check the full record."""
    return text if text is None or len(text) <= length else text[:length]


def version_text(version: Any) -> str | None:
    """The ``version`` column: the version as JSON (versions may be any JSON value), clipped."""
    if version is None:
        return None
    return clip(json.dumps(version, sort_keys=True), VERSION_LENGTH)


# --- versions and upgrades -------------------------------------------------------------------------
def _read_versions(conn: sa.Connection, tables: Tables) -> dict[str, int] | None:
    if not sa.inspect(conn).has_table(tables.schema.name):
        return None
    rows = conn.execute(sa.select(tables.schema.c.name, tables.schema.c.value)).all()
    return {str(name): int(value) for name, value in rows}


def _check(found: dict[str, int], where: str) -> int:
    """The schema version found; ``ConfigError`` for another digest scheme or a newer layout."""
    scheme = found.get("digest_scheme")
    if scheme != SCHEME_VERSION:
        raise ConfigError(
            f"{where} holds digest scheme {scheme}, but this fleche uses digest scheme "
            f"{SCHEME_VERSION}: its keys would never match; use another database or table prefix"
        )
    version = found.get("schema", 0)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{where} has schema version {version}, newer than this fleche knows "
            f"({SCHEMA_VERSION}); upgrade fleche"
        )
    return version


def ensure_schema(engine: sa.Engine, prefix: str, dialect: Dialect, where: str) -> None:
    """Create the tables of ``prefix``, or check and upgrade the ones found (once per opening).

    Raises ``ConfigError`` when the tables were written with another digest scheme or by a newer
    fleche. Creation and upgrades run under a schema lock, so concurrent openers wait.
    """
    with engine.connect() as conn:
        found = _read_versions(conn, Tables(prefix, dialect))
    if found is not None and _check(found, where) == SCHEMA_VERSION:
        return
    with (
        engine.connect().execution_options(fleche_immediate=True) as conn,
        conn.begin(),
        dialect.schema_lock(conn, prefix),
    ):
        tables = Tables(prefix, dialect)
        found = _read_versions(conn, tables)
        if found is None:
            tables.create(conn)
            _set(conn, tables, "digest_scheme", SCHEME_VERSION)
            _set(conn, tables, "schema", SCHEMA_VERSION)
            return
        version = _check(found, where)
        while version < SCHEMA_VERSION:
            log.info("upgrading the SQL tables %s_* from version %d", prefix, version)
            UPGRADES[version](conn, Tables(prefix, dialect, version + 1))
            version += 1
            _set(conn, tables, "schema", version)


def _set(conn: sa.Connection, tables: Tables, name: str, value: int) -> None:
    table = tables.schema
    updated = conn.execute(sa.update(table).where(table.c.name == name).values(value=value))
    if not updated.rowcount:
        conn.execute(sa.insert(table).values(name=name, value=value))


def _upgrade_0_to_1(conn: sa.Connection, new: Tables) -> None:
    """Version 1 adds ``values.written`` (for gc's grace period) and the arguments table."""
    column = new.values.c.written
    kind = column.type.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {_quoted(conn, new.values)} ADD COLUMN written {kind}")
    # their age is unknown: count it from now, so gc's grace period protects them once more
    conn.execute(sa.update(new.values).values(written=time.time()))
    new.create(conn)
    rows = conn.execute(sa.select(new.calls.c.key, new.calls.c.record)).all()
    arguments: list[dict[str, Any]] = []
    for key, record in rows:
        try:
            names = json.loads(record)["arguments"]
        except (ValueError, KeyError, TypeError):  # a corrupt record: its load will evict it
            continue
        arguments.extend(
            {"call_key": key, "name": clip(n), "digest": d} for n, d in dict(names).items()
        )
    if arguments:
        conn.execute(sa.insert(new.arguments), arguments)


def _quoted(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


UPGRADES: dict[int, Callable[[sa.Connection, Tables], None]] = {0: _upgrade_0_to_1}
"""``UPGRADES[n]`` migrates the tables from version n to n + 1 (in the caller's transaction)."""


# --- queries ---------------------------------------------------------------------------------------
_FIELDS = ("name", "module", "version", "code_digest", "result")
_FUNCTION = frozenset(("name", "module", "version"))  # the columns of the function index
_EMPTY: Any = sa.literal_column("''")  # inline, not a parameter


class QueryShape(NamedTuple):
    """What a template fixes, without the values: templates of one shape share one statement."""

    fields: tuple[str, ...]  # which of ``_FIELDS`` are fixed
    fixed: int  # arguments with a value
    present: int  # arguments asked as "present, any value"
    fragments: int  # metadata strings (``metadata_fragments``)


def query_parameters(template: QueryCall) -> tuple[QueryShape, dict[str, Any]]:
    """The shape of ``template`` and the values of its statement's parameters, by name."""
    values = {
        "name": clip(template.name),
        "module": clip(template.module),
        "version": version_text(template.version),
        "code_digest": template.code_digest,
        "result": None if template.result is None else digest(template.result),
    }
    params: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    fixed = present = 0
    for name, wanted in template.argument_digests().items():
        if wanted is None:
            params[f"p{present}"] = clip(name)
            present += 1
        else:
            params[f"a{fixed}"], params[f"d{fixed}"] = clip(name), wanted
            fixed += 1
    fragments = list(metadata_fragments(template.metadata))
    for i, fragment in enumerate(fragments):
        params[f"m{i}"] = "%" + re.sub(r"([/%_])", r"/\1", fragment) + "%"
    fields = tuple(f for f in _FIELDS if f in params)
    return QueryShape(fields, fixed, present, len(fragments)), params


def query_statement(tables: Tables, shape: QueryShape) -> sa.Select[Any]:
    """One indexed SELECT of (key, record, checksum) for the calls of a template of ``shape``, with
    the parameters ``query_parameters`` names.

    Name, module, version, code digest, result and argument digests are matched in the database
    (EXISTS for "present, any value"), and a row must contain the JSON text of each string in the
    metadata template; the caller re-checks each row with ``template.matches`` (metadata exactly,
    clipped columns). A template that fixes an argument starts from the arguments index: the calls
    with that argument (the intersection of those sets for several), each looked up by its key.
    """
    calls, arguments = tables.calls, tables.arguments
    stmt = sa.select(calls.c.key, calls.c.record, calls.c.checksum)
    text = partial(sa.bindparam, type_=sa.String)
    conditions = []
    for field in shape.fields:
        column: sa.ColumnElement[Any] = calls.c[field]
        if shape.fixed and field in _FUNCTION:
            # an expression no index serves: a planner misled by stale statistics (right after a
            # bulk fill, before ANALYZE) must not walk a function's calls instead (one per call)
            column = column.concat(_EMPTY)
        conditions.append(column == text(field))
    if shape.fixed:
        matching = [
            sa.select(arguments.c.call_key).where(
                arguments.c.name == text(f"a{i}"), arguments.c.digest == text(f"d{i}")
            )
            for i in range(shape.fixed)
        ]
        # several arguments: the intersection of their sets, whatever their sizes (a join could
        # scan one set once per member of the other)
        found = (matching[0] if shape.fixed == 1 else sa.intersect(*matching)).subquery("m")
        stmt = stmt.select_from(found.join(calls, calls.c.key == found.c.call_key))
    for i in range(shape.present):
        argument = arguments.alias(f"p{i}")
        on = (argument.c.call_key == calls.c.key, argument.c.name == text(f"p{i}"))
        conditions.append(sa.exists().where(*on))
    for i in range(shape.fragments):
        conditions.append(calls.c.record.like(sa.bindparam(f"m{i}", type_=sa.Text), escape="/"))
    return stmt.where(*conditions)


def metadata_fragments(template: Mapping[str, Any]) -> Iterator[str]:
    """``"key":"value"`` for each string of a metadata template: text a matching record holds.

    Only strings: ``1`` and ``1.0`` match each other in Python but not as text. A row that holds
    the text elsewhere (or in another case, under a case-insensitive collation) is dropped by the
    caller's exact re-check, so the filter may let too much through, never too little.
    """
    for key, wanted in template.items():
        if isinstance(wanted, Mapping):
            yield from metadata_fragments(wanted)
        elif isinstance(key, str) and isinstance(wanted, str):
            fragment = json.dumps({key: wanted}, separators=(",", ":"))[1:-1]
            if "\\" not in fragment:  # escapes: left to the re-check
                yield fragment
