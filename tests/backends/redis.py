"""Harness for the Redis storage: a fresh key prefix per storage, its keys deleted at the end."""

from __future__ import annotations

import os
import uuid
from typing import Any

from fleche.caches import Cache
from fleche.testing import Harness

from . import service_unavailable

URL = os.environ.get("FLECHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HEX = frozenset("0123456789abcdef")


def raw_client() -> Any:
    """A redis-py client that bypasses fleche (short timeouts: a dead server fails fast)."""
    import redis

    return redis.Redis.from_url(URL, socket_connect_timeout=1, socket_timeout=5)


class RedisHarness(Harness):
    name = "redis"

    def __init__(self, tmp_path: Any) -> None:
        super().__init__(tmp_path)
        self.prefixes: list[str] = []
        self._raw: Any = None

    def check_available(self) -> None:
        try:
            import redis
        except ImportError:
            service_unavailable("Redis", "redis-py is not installed: pip install 'fleche[redis]'")
        try:
            redis.Redis.from_url(URL, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        except redis.RedisError as e:
            service_unavailable("Redis", f"{URL}: {e}")

    @property
    def raw(self) -> Any:
        if self._raw is None:
            self._raw = raw_client()
        return self._raw

    def url(self, **options: Any) -> str:
        """A URL with a prefix no other test (or run) uses, plus ``options``.

        Leases are 2 s rather than 30, so a test that kills a lock's holder waits 2 s for it.
        """
        prefix = f"fleche-test-{uuid.uuid4().hex[:16]}"
        self.prefixes.append(prefix)
        options = {"lease": 2, **options}
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"{URL}{'&' if '?' in URL else '?'}prefix={prefix}{extra}"

    def value_storage(self, **options: Any) -> Any:
        from fleche.storage.redis import ValueRedis

        return ValueRedis(self.url(**options))

    def call_storage(self, **options: Any) -> Any:
        from fleche.storage.redis import CallRedis

        return CallRedis(self.url(**options))

    def cache(self, **options: Any) -> Cache:
        from fleche.storage.redis import cache_from_url

        return cache_from_url(self.url(**options))

    def raw_keys(self, storage: Any) -> set[str]:
        """Entry keys under the storage's key space, read with SCAN (not through fleche)."""
        space = storage._space
        found = set()
        for name in self.raw.scan_iter(match=space + "*", count=1000):
            key = name.decode()[len(space) :]
            if len(key) == 32 and set(key) <= HEX:
                found.add(key)
        return found

    def close(self) -> None:
        if self._raw is None and not self.prefixes:
            return
        for prefix in self.prefixes:
            names = list(self.raw.scan_iter(match=prefix + ":*", count=1000))
            for start in range(0, len(names), 1000):
                self.raw.delete(*names[start : start + 1000])
        self.raw.close()


HARNESS = RedisHarness
