"""Harness for the SQL storage on MariaDB (pymysql): a table prefix per storage, dropped after."""

from __future__ import annotations

import os

from .sqlite import SqlHarness

URL = os.environ.get("FLECHE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


class MysqlHarness(SqlHarness):
    name = "mysql"
    service = "MariaDB"

    @property
    def base_url(self) -> str:
        return URL


HARNESS = MysqlHarness
