"""The libraries under test: fleche on each backend, and the peers users would pick instead.

A subject decorates a function the way its users do, knows where it keeps its data (to measure the
footprint and to clean up), and fills itself in bulk the fastest way its users could
(:meth:`Subject.fill`, used by W5 and W8):

- lru_cache, cachetools, joblib, cachier, fleche-memory: by calling the decorated function (none
  has a bulk write);
- diskcache: by calling it inside ``cache.transact()`` (one SQLite transaction);
- fleche on a persistent backend: by calling it with an in-memory cache active, then
  ``memory.transfer(store)``, the public bulk copy (``fleche copy`` does the same): batches of
  ``fleche.caches.TRANSFER_BATCH`` calls, each written as a few many-row statements in one
  transaction on the embedded default and SQL, and pipelined on Redis.

Opening a subject whose library or server is missing raises :class:`Unavailable` with the reason,
which the report prints instead of a figure.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

POSTGRES_URL = os.environ.get(
    "FLECHE_BENCH_POSTGRES_URL",
    os.environ.get("FLECHE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
REDIS_URL = os.environ.get(
    "FLECHE_BENCH_REDIS_URL", os.environ.get("FLECHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
)

FLECHE_BACKENDS = ("memory", "file", "embedded", "sqlite", "postgresql", "redis")
PEERS = ("lru_cache", "cachetools", "joblib", "diskcache", "cachier")
PERSISTENT = frozenset(
    {"fleche-" + b for b in FLECHE_BACKENDS if b != "memory"} | {"joblib", "diskcache", "cachier"}
)
ALL = tuple("fleche-" + b for b in FLECHE_BACKENDS) + PEERS


class Unavailable(Exception):
    """The subject cannot run here (library not installed, backend not written yet, server down)."""


def _join(url: str, option: str) -> str:
    return url + ("&" if "?" in url else "?") + option


def fleche_url(backend: str, workdir: Path, token: str) -> str:
    """The cache URL of a fleche backend rooted in ``workdir`` (services: a fresh prefix)."""
    urls = {
        "memory": "memory://",
        "file": f"file://{workdir / 'file'}",
        "embedded": str(workdir / "embedded"),  # a plain path: the embedded default
        "sqlite": f"sqlite:///{workdir / 'fleche.db'}",
        "postgresql": _join(POSTGRES_URL, f"prefix=bench{token}"),
        "redis": _join(REDIS_URL, f"prefix=bench{token}"),
    }
    return urls[backend]


def directory_footprint(root: Path) -> dict[str, int]:
    """Bytes (apparent and allocated) and number of files under ``root``, at rest.

    Every SQLite database under ``root`` (fleche's embedded and sqlite stores, diskcache's) has
    its WAL checkpointed and truncated first, as a clean close does: the WAL is a transient log
    of the last commits (after a bulk fill, the whole last batch), already copied into the
    database by the checkpoint that follows each commit. ``wal_folded`` says how many bytes of
    WAL files were there before."""
    folded = _fold_wal_files(root)
    files = apparent = allocated = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            files += 1
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return {"bytes": apparent, "allocated": allocated, "files": files, "wal_folded": folded}


def _fold_wal_files(root: Path) -> int:
    """Checkpoint (TRUNCATE) each SQLite database under ``root`` that has a WAL file; the WAL
    bytes seen before."""
    import sqlite3

    seen = 0
    for wal in root.rglob("*-wal"):
        seen += wal.stat().st_size
        database = wal.with_name(wal.name[: -len("-wal")])
        connection = sqlite3.connect(database, timeout=10)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            connection.close()
    return seen


class Subject:
    """One library configured one way. Subclasses override what differs."""

    name = "base"
    persistent = False

    def __init__(self, workdir: Path, url: str | None = None) -> None:
        self.workdir = workdir
        self.root = workdir / self.name
        self.url = url

    def open(self) -> None:
        """Import the library and prepare its store; :class:`Unavailable` when it cannot run."""

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def bulk(self) -> Any:
        """A context manager under which many stores are cheaper (a transaction), if any."""
        return _Nothing()

    def fill(self, f: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> dict[str, float]:
        """Store ``f(*args)`` for each of ``calls`` the fastest way the library allows; the
        seconds it took (``fill_s``), with its parts where there are several."""
        began = time.perf_counter()
        with self.bulk():
            for args in calls:
                f(*args)
        return {"fill_s": time.perf_counter() - began}

    def footprint(self) -> dict[str, int] | None:
        """Where the data lives and how big it is (None when not measurable)."""
        return directory_footprint(self.root) if self.persistent else None

    def close(self) -> None:
        """Drop what this subject created outside ``workdir`` (server-side keys and tables)."""


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable(f"{module} is not installed: pip install -e '.[bench]' ({e})") from None


class LruCache(Subject):
    name = "lru_cache"

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return functools.lru_cache(maxsize=None)(func)


class Cachetools(Subject):
    name = "cachetools"

    def open(self) -> None:
        self.lib = _require("cachetools")

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # an LRU bigger than any workload: the policy users pick, never evicting here
        return self.lib.cached(self.lib.LRUCache(maxsize=10**8))(func)


class Joblib(Subject):
    name = "joblib"
    persistent = True

    def open(self) -> None:
        joblib = _require("joblib")
        self.memory = joblib.Memory(str(self.root), verbose=0)

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return self.memory.cache(func)


class Diskcache(Subject):
    name = "diskcache"
    persistent = True

    def open(self) -> None:
        diskcache = _require("diskcache")
        self.cache = diskcache.Cache(str(self.root))

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return self.cache.memoize()(func)

    def bulk(self) -> Any:
        return self.cache.transact()  # one SQLite transaction around many stores

    def decorate_locked(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``memoize`` with a ``diskcache.Lock`` per key around a miss: the stampede protection a
        diskcache user adds so that a body runs once across processes, as fleche's persistent
        caches do (W6). A hit is one look-up; a miss takes the key's lock, looks again, then
        computes and stores. W2 measures its miss beside the plain one, for context only: the
        target compares with plain ``memoize``."""
        diskcache = _require("diskcache")
        memoized = self.cache.memoize(name=f"locked.{func.__qualname__}")(func)
        cache, missing = self.cache, object()

        def locked(*args: Any, **kwargs: Any) -> Any:
            key = memoized.__cache_key__(*args, **kwargs)
            found = cache.get(key, default=missing, retry=True)
            if found is not missing:
                return found
            with diskcache.Lock(cache, ("lock", *key)):
                return memoized(*args, **kwargs)  # looks again under the lock first

        return locked

    def close(self) -> None:
        self.cache.close()


class Cachier(Subject):
    """cachier's pickle core with ``separate_files=True`` (one file per entry).

    Its default keeps one pickle per function, rewritten on every store and read again on every
    hit (``pickle_reload``): O(n) per call (6 ms per hit, 18 ms per store averaged over the first
    1,000 keys in a trial run), which alone would take the quick mode past its budget.
    """

    name = "cachier"
    persistent = True
    separate_files = True

    def open(self) -> None:
        self.lib = _require("cachier")

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return self.lib.cachier(cache_dir=str(self.root), separate_files=self.separate_files)(func)


class FlecheSubject(Subject):
    """fleche on one backend, activated process-wide as users do (``cache(url)``)."""

    persistent = True
    backend = "memory"

    def __init__(self, workdir: Path, url: str | None = None) -> None:
        super().__init__(workdir, url)
        self.name = "fleche-" + self.backend
        self.root = workdir
        self.token = uuid.uuid4().hex[:12]
        self.url = url or fleche_url(self.backend, workdir, self.token)
        self.persistent = self.backend != "memory"

    def open(self) -> None:
        try:
            import fleche

            self.cache = _open_cache(self.url)
            fleche.cache(self.cache)
            self.fleche = fleche.fleche
        except Exception as e:  # a backend not written yet, a driver missing, a server down
            raise Unavailable(f"{type(e).__name__}: {e}".splitlines()[0][:160]) from None

    def decorate(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return self.fleche(func)

    def twin(self, workdir: Path) -> FlecheSubject:
        """Another store of this backend in ``workdir`` (a fresh prefix on a server), opened
        without being made the active cache: W5's reference store (see ``scale``)."""
        twin = type(self)(workdir)
        twin.cache = _open_cache(twin.url)
        return twin

    def decorate_here(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` cached in this subject's store whichever cache is active."""
        import fleche

        return fleche.fleche(cache=self.cache)(func)

    def fill(self, f: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> dict[str, float]:
        """Persistent: compute into a memory cache, then transfer it in bulk (see the module)."""
        if not self.persistent:
            return super().fill(f, calls)
        import fleche
        from fleche.config import cache_from_url

        began = time.perf_counter()
        staging = cache_from_url("memory://")
        with fleche.cache(staging):
            for args in calls:
                f(*args)
        computed = time.perf_counter()
        staging.transfer(self.cache)
        done = time.perf_counter()
        return {
            "fill_s": done - began,
            "compute_s": computed - began,
            "transfer_s": done - computed,
        }

    def footprint(self) -> dict[str, int] | None:
        from . import services

        if self.backend == "postgresql":
            return services.postgres_footprint(self.url)
        if self.backend == "redis":
            return services.redis_footprint(self.url)
        return directory_footprint(self.root) if self.persistent else None

    def close(self) -> None:
        from . import services

        if self.backend == "postgresql":
            services.postgres_drop(self.url)
        elif self.backend == "redis":
            services.redis_drop(self.url)


def _open_cache(url: str) -> Any:
    """The fleche cache a subject's URL names (a plain path: the embedded default)."""
    from fleche.config import cache_from_url, resolve_cache

    return resolve_cache(url) if "://" not in url else cache_from_url(url)


def _fleche_class(backend: str) -> type[FlecheSubject]:
    return type(f"Fleche_{backend}", (FlecheSubject,), {"backend": backend})


SUBJECTS: dict[str, type[Subject]] = {
    "lru_cache": LruCache,
    "cachetools": Cachetools,
    "joblib": Joblib,
    "diskcache": Diskcache,
    "cachier": Cachier,
    **{"fleche-" + b: _fleche_class(b) for b in FLECHE_BACKENDS},
}


def make(name: str, workdir: Path, url: str | None = None, **options: Any) -> Subject:
    """An opened subject; :class:`Unavailable` when it cannot run here."""
    subject = SUBJECTS[name](workdir, url)
    for key, value in options.items():
        setattr(subject, key, value)
    subject.open()
    return subject
