"""Footprint and cleanup of the server-backed backends, read with the drivers, not through fleche.

A benchmark cache on PostgreSQL or Redis lives under a prefix of its own (``?prefix=benchXXXX``);
whether the backend turns the prefix into a schema or a table-name prefix, both are found and
dropped here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit


def _prefix(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query)).get("prefix", "")


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]  # SQLAlchemy's dialect+driver -> libpq's scheme
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def _pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(_without_query(url), autocommit=True, connect_timeout=5)


def _pg_relations(conn: Any, prefix: str) -> list[tuple[str, str]]:
    """(schema, table) of every table the prefix names: a schema of that name or tables in it."""
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = %s "
        "OR (schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename LIKE %s)",
        (prefix, prefix.replace("_", r"\_") + "%"),
    ).fetchall()
    return [(s, t) for s, t in rows]


def postgres_footprint(url: str) -> dict[str, int]:
    """Total size (tables, indexes, TOAST) of the prefix's tables, and how many tables."""
    prefix = _prefix(url)
    with _pg_connect(url) as conn:
        relations = _pg_relations(conn, prefix)
        total = 0
        for schema, table in relations:
            row = conn.execute(
                "SELECT pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass)",
                (schema, table),
            ).fetchone()
            total += int(row[0])
    return {"bytes": total, "allocated": total, "files": len(relations)}


def postgres_drop(url: str) -> None:
    """Drop the prefix's schema or tables (the benchmark's data only)."""
    prefix = _prefix(url)
    if not prefix.startswith("bench"):
        return  # never drop anything the benchmarks did not create
    with _pg_connect(url) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}" CASCADE')
        for schema, table in _pg_relations(conn, prefix):
            conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE')


def _redis(url: str) -> Any:
    import redis

    parts = urlsplit(url)
    return redis.Redis.from_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def redis_footprint(url: str) -> dict[str, int]:
    """Memory Redis reports for the prefix's keys (``MEMORY USAGE``), and how many keys."""
    prefix = _prefix(url)
    client = _redis(url)
    total = keys = 0
    names = list(client.scan_iter(match=prefix + ":*", count=1000))
    for start in range(0, len(names), 500):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + 500]:
            pipe.memory_usage(name, samples=0)
        for size in pipe.execute():
            total += int(size or 0)
            keys += 1
    client.close()
    return {"bytes": total, "allocated": total, "files": keys}


def redis_drop(url: str) -> None:
    """Delete the prefix's keys."""
    prefix = _prefix(url)
    if not prefix.startswith("bench"):
        return
    client = _redis(url)
    names = list(client.scan_iter(match=prefix + ":*", count=1000))
    for start in range(0, len(names), 1000):
        client.delete(*names[start : start + 1000])
    client.close()


def server_versions() -> dict[str, str]:
    """Versions of the PostgreSQL and Redis servers (or why they could not be read)."""
    from .subjects import POSTGRES_URL, REDIS_URL

    found: dict[str, str] = {}
    try:
        with _pg_connect(POSTGRES_URL) as conn:
            found["PostgreSQL server"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as e:
        found["PostgreSQL server"] = f"unreachable ({type(e).__name__})"
    try:
        client = _redis(REDIS_URL)
        found["Redis server"] = client.info("server")["redis_version"]
        client.close()
    except Exception as e:
        found["Redis server"] = f"unreachable ({type(e).__name__})"
    return found
