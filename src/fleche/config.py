"""From names, URLs and paths to caches: the scheme registry and the default cache (SPEC 6, 8)."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

from ._log import get_logger
from .caches import BaseCache, Cache, VoidCache
from .errors import ConfigError, MissingDependencyError

__all__ = [
    "cache_from_config",
    "cache_from_url",
    "cache_to_config",
    "configured_caches",
    "default_cache",
    "default_metadata",
    "parse_options",
    "register_storage",
    "reload",
    "resolve_cache",
]

log = get_logger(__name__)

# scheme -> ("module:factory", extra to install when its import fails); factories take the URL
_SCHEMES: dict[str, tuple[str | Callable[[str], BaseCache], str | None]] = {
    "memory": ("fleche.config:_memory_cache", None),
    "void": ("fleche.config:_void_cache", None),
    "file": ("fleche.storage.filesystem:cache_from_url", None),
    "embedded": ("fleche.storage.embedded:cache_from_url", None),
    "sqlite": ("fleche.storage.sql:cache_from_url", None),
    "postgresql": ("fleche.storage.sql:cache_from_url", "postgres"),
    "postgres": ("fleche.storage.sql:cache_from_url", "postgres"),
    "mysql": ("fleche.storage.sql:cache_from_url", "mysql"),
    "mariadb": ("fleche.storage.sql:cache_from_url", "mysql"),
    "redis": ("fleche.storage.redis:cache_from_url", "redis"),
}
_DRIVERS: dict[str, str] = {}  # import name of a driver -> extra that installs it
_named: dict[str, BaseCache] = {}


def register_storage(
    scheme: str, factory: str | Callable[[str], BaseCache], extra: str | None = None
) -> None:
    """Teach ``cache(url)`` a new URL scheme.

    ``factory`` is a callable taking the URL and returning a cache, or ``"module:function"`` to
    import on first use; ``extra`` names the pip extra that installs its driver. A registered
    scheme replaces a built-in one of the same name.

    >>> from fleche import cache
    >>> register_storage("scratch", lambda url: cache_from_config({"url": "memory://"}))
    >>> with cache("scratch://anything") as scratch:
    ...     type(scratch).__name__
    'Cache'
    """

    _SCHEMES[scheme] = (factory, extra)


def parse_options(url: str) -> dict[str, str]:
    """The query string of a URL as a dict (options go there, never into the scheme)."""
    from urllib.parse import parse_qsl, urlsplit  # here: ``import fleche`` stays fast

    return dict(parse_qsl(urlsplit(url).query))


def flag(options: dict[str, str], name: str, default: bool = False) -> bool:
    """A boolean URL option (``1``, ``true``, ``yes``, ``on``)."""
    value = options.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes", "on")


def _memory_cache(url: str) -> BaseCache:
    from .storage.memory import CallMemory, ValueMemory

    copy = flag(parse_options(url), "copy")
    return Cache(ValueMemory(copy=copy), CallMemory(), url=url)


def _void_cache(url: str) -> BaseCache:
    return VoidCache()


def _load_factory(scheme: str) -> Callable[[str], BaseCache]:
    factory, extra = _SCHEMES[scheme]
    if callable(factory):
        return factory
    module, _, name = factory.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        missing = e.name or module
        raise MissingDependencyError(missing, extra or "all", f"{scheme}:// caches") from e


def cache_from_url(url: str) -> BaseCache:
    """Build a cache from a URL (``memory://``, ``sqlite:///c.db``, ``redis://...``, ...)."""
    from urllib.parse import urlsplit  # here: ``import fleche`` stays fast

    scheme = urlsplit(url).scheme.split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigError(f"unknown cache URL scheme {scheme!r} in {url!r}; known: {known}")
    return _load_factory(scheme)(url)


def _looks_like_path(target: str) -> bool:
    return target.startswith(("/", ".", "~")) or os.sep in target or "/" in target


def resolve_cache(target: Any) -> BaseCache:
    """A cache from a cache, a name, a URL or a path (SPEC section 8)."""
    if isinstance(target, BaseCache):
        return target
    from pathlib import Path  # here: ``import fleche`` does not need it

    if isinstance(target, os.PathLike):
        return cache_from_path(Path(target))
    if not isinstance(target, str) or not target:
        raise ConfigError(f"expected a cache, a cache name, a URL or a path, not {target!r}")
    if "://" in target:
        return cache_from_url(target)
    if _looks_like_path(target):
        return cache_from_path(Path(target))
    return named_cache(target)


def cache_from_path(path: Path) -> BaseCache:
    """The embedded default cache in a directory."""
    return cache_from_url("embedded://" + str(path.expanduser().resolve()))


def named_cache(name: str) -> BaseCache:
    """A cache by name: ``memory`` and ``void`` are reserved; others come from ``fleche.toml``."""
    if name in _named:
        return _named[name]
    if name == "memory":
        return _named.setdefault(name, cache_from_url("memory://"))
    if name == "void":
        return _named.setdefault(name, VoidCache())
    configured = configured_caches()
    if name not in configured:
        names = ", ".join(sorted({"memory", "void", *configured})) or "none"
        raise ConfigError(f"unknown cache name {name!r}; configured caches: {names}")
    return _named.setdefault(name, configured[name]())


def configured_caches() -> dict[str, Callable[[], BaseCache]]:
    """The caches ``fleche.toml`` files name, each as a function that builds it (SPEC section 8).

    ``named_cache`` calls these once per name and process, on first use. ``default`` is there
    when ``[default] cache`` is set.
    """
    from .configfile import load_settings

    settings = load_settings()
    named = _named_in(settings)
    factories: dict[str, Callable[[], BaseCache]] = {
        name: functools.partial(_build_named, name, spec, where, named)
        for name, (spec, where) in settings.caches.items()
    }
    if "cache" in settings.default:
        spec, where = settings.default["cache"]
        factories["default"] = functools.partial(
            _build_named, "default", spec, where.child("cache"), named
        )
    return factories


_building: set[str] = set()  # names being built, to catch a cache that contains itself


def _build_named(name: str, spec: Any, where: Any, named: Any) -> BaseCache:
    from .configtables import build

    if name in _building:
        raise where.error(f"cache {name!r} contains itself")
    _building.add(name)
    try:
        return build(spec, where, named)
    finally:
        _building.discard(name)


def _named_in(settings: Any) -> Callable[[str, Any], BaseCache]:
    """``named_cache`` for references inside a file: an unknown name names the file and table."""

    def named(name: str, where: Any) -> BaseCache:
        if name not in settings.caches and name not in ("memory", "void", "default"):
            names = ", ".join(sorted({"memory", "void", *settings.caches}))
            raise where.error(f"unknown cache name {name!r}; configured caches: {names}")
        return named_cache(name)

    return named


def cache_from_config(config: dict[str, Any] | list[Any]) -> BaseCache:
    """A cache from a table as written in ``fleche.toml`` (a dict; a list means a stack).

    Relative paths resolve against the working directory. The inverse is
    :func:`cache_to_config`. Raises ``ConfigError`` for unknown keys or values of the wrong kind.

    >>> cache_from_config({"url": "memory://", "max_entries": 100})
    SizeLimitedCache(Cache('memory://'), max_entries=100)
    """
    from .configfile import Where
    from .configtables import build

    return build(config, Where.in_code(), lambda name, where: named_cache(name))


def cache_to_config(cache: BaseCache) -> dict[str, Any] | list[Any]:
    """The table (a list for a stack) that :func:`cache_from_config` turns back into ``cache``.

    >>> cache_to_config(cache_from_config([{"url": "memory://"}, {"url": "void://"}]))
    [{'url': 'memory://'}, {'url': 'void://'}]
    """
    from .configtables import to_config

    return to_config(cache)


def default_metadata() -> tuple[Any, ...]:
    """The metadata recorders of ``[default] metadata`` (none without configuration)."""
    from .configfile import load_settings
    from .metadata import recorder_from_config

    settings = load_settings()
    if "metadata" not in settings.default:
        return ()
    items, where = settings.default["metadata"]
    if not isinstance(items, list):
        raise where.error("must be an array of recorder names or tables", "metadata")
    recorders = []
    for item in items:
        try:
            recorders.append(recorder_from_config(item))
        except ConfigError as e:
            raise where.error(str(e), "metadata") from None
    return tuple(recorders)


def reload() -> None:
    """Forget the caches built from names, so the next use reads ``fleche.toml`` again."""
    _named.clear()


def default_cache() -> BaseCache:
    """``FLECHE_CACHE`` if set, else ``[default] cache`` of ``fleche.toml``, else the in-memory
    cache (with a one-line notice)."""
    target = os.environ.get("FLECHE_CACHE")
    if target:
        try:
            return resolve_cache(target)
        except ConfigError as e:
            raise ConfigError(f"FLECHE_CACHE={target!r}: {e}") from None
    if "default" in configured_caches():
        return named_cache("default")
    log.info(
        "fleche: caching in memory only; use cache('./.fleche') or FLECHE_CACHE to persist results"
    )
    return named_cache("memory")
