"""Harnesses for the SQL storage: SQLite here, and the base that PostgreSQL and MariaDB share.

Each storage gets a table prefix of its own; server harnesses drop the tables they made in ``close``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fleche.caches import Cache
from fleche.testing import Harness

from . import service_unavailable


class SqlHarness(Harness):
    """Fresh SQL storages under unique table prefixes of the database at ``base_url``."""

    name = "sql"
    service = ""  # the server's name in skip messages; empty for SQLite (always there)

    def __init__(self, tmp_path: Any) -> None:
        super().__init__(tmp_path)
        self.urls: list[str] = []

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def check_available(self) -> None:
        """Connect once with a short timeout; skip (or fail in CI) when the server is away."""
        import sqlalchemy as sa

        from fleche.errors import MissingDependencyError
        from fleche.storage.sql import SqlOptions

        if not self.service:  # SQLite: a file, no server to reach
            return
        options = SqlOptions.parse(self.base_url)
        try:
            options.dialect.check_driver()
        except MissingDependencyError as e:
            service_unavailable(self.service, str(e))
        engine = sa.create_engine(
            options.engine_url, poolclass=sa.NullPool, connect_args={"connect_timeout": 3}
        )
        try:
            with engine.connect():
                pass
        except sa.exc.DBAPIError as e:
            service_unavailable(self.service, f"{self.base_url}: {e.orig}")
        finally:
            engine.dispose()

    def url(self, **options: Any) -> str:
        """The database's URL with a table prefix no other test uses, plus ``options``."""
        prefix = f"t{uuid.uuid4().hex[:12]}"
        query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
        url = f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"
        self.urls.append(url)
        return url

    def value_storage(self, **options: Any) -> Any:
        from fleche.storage.sql import ValueSql

        return ValueSql(self.url(**options))

    def call_storage(self, **options: Any) -> Any:
        from fleche.storage.sql import CallSql

        return CallSql(self.url(**options))

    def cache(self, **options: Any) -> Cache:
        from fleche.storage.sql import cache_from_url

        return cache_from_url(self.url(**options))

    def raw_keys(self, storage: Any) -> set[str]:
        """Keys present in the storage's table, read with plain SQL (not through fleche)."""

        table = storage._table
        quoted = storage._db.engine.dialect.identifier_preparer.format_table(table)
        with storage._db.engine.connect() as conn:
            return {
                k for (k,) in conn.exec_driver_sql(f"SELECT DISTINCT {_key(conn)} FROM {quoted}")
            }

    def close(self) -> None:
        """Drop every table this harness made."""
        from fleche.storage.sql import SqlOptions, database_for
        from fleche.storage.sql_schema import Tables

        for url in self.urls:
            options = SqlOptions.parse(url)
            engine = database_for(options).engine
            with engine.begin() as conn:
                Tables(options.prefix, options.dialect).drop(conn)


def _key(conn: Any) -> str:
    return conn.dialect.identifier_preparer.quote("key")


class SqliteHarness(SqlHarness):
    name = "sqlite"

    @property
    def base_url(self) -> str:
        return f"sqlite:///{self.tmp_path}/cache.db"


HARNESS = SqliteHarness
