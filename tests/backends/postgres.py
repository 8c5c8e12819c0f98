"""Harness for the SQL storage on PostgreSQL (psycopg 3): a table prefix per storage, dropped after."""

from __future__ import annotations

import os

from .sqlite import SqlHarness

URL = os.environ.get(
    "FLECHE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class PostgresHarness(SqlHarness):
    name = "postgres"
    service = "PostgreSQL"

    @property
    def base_url(self) -> str:
        return URL


HARNESS = PostgresHarness
