"""Cache tables and caches, both ways: the shapes a ``fleche.toml`` entry may take (SPEC section 8).

A table is ``{url = "..."}`` or ``{values = "...", calls = "..."}``, with optional ``read_only``,
``max_entries``, ``max_bytes``, ``secret_key`` and ``durable``; a list of tables is a stack (also
``{stack = [...]}``), ``{pool = [...]}`` a pool, and a string in a stack or pool names another
cache (or is a URL or a path). Tables written for fleche 0.22.2 load too: ``values``/``calls``
tables with ``type`` and ``root`` (or ``url``), ``template``, ``max_size``. Unknown keys raise
``ConfigError`` naming the file, the table and the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .caches import BaseCache, Cache, RefreshingCache, VoidCache
from .composite import CachePool, CacheStack, FilteredCache, ReadOnlyCache
from .configfile import Where
from .errors import ConfigError
from .sizelimit import SizeLimitedCache

__all__ = ["SplitCache", "absolute_url", "build", "to_config"]

Named = Callable[[str, Where], BaseCache]

_LIMITS = ("max_entries", "max_bytes", "max_size")
_MODIFIERS = frozenset({*_LIMITS, "read_only"})
_OPTIONS = frozenset({"secret_key", "durable"})
_PATH_SCHEMES = ("file", "embedded")
# storage types of fleche 0.22.2 (lowercase) that kept files under a root: our file:// storage
_FILE_TYPES = frozenset(
    {"pickle", "cloudpickle", "dill", "bagofholding_hdf"}
    | {"picklefile", "cloudpicklefile", "bagofholdingh5file"}
)
# their options that have no counterpart here (locks time out after FLECHE_LOCK_TIMEOUT)
_IGNORED = frozenset(
    {"lock_timeout", "remaining_depth", "version_validator", "prefix_length", "echo"}
)


class SplitCache(Cache):
    """A cache whose values and calls come from two URLs (``values = ...``, ``calls = ...``);
    it pickles as those URLs."""

    def __init__(self, values_url: str, calls_url: str) -> None:
        values = _storages(values_url).values
        calls = _storages(calls_url).calls
        super().__init__(values, calls)
        self.values_url, self.calls_url = values_url, calls_url

    def __repr__(self) -> str:
        return f"SplitCache(values={self.values_url!r}, calls={self.calls_url!r})"

    def __reduce__(self) -> Any:
        if any(u.startswith("memory:") for u in (self.values_url, self.calls_url)):
            return object.__reduce__(self)  # in-process contents travel with it
        return SplitCache, (self.values_url, self.calls_url)


def _storages(url: str) -> Cache:
    from .config import cache_from_url

    cache = cache_from_url(url)
    if not isinstance(cache, Cache):
        raise ConfigError(f"{url!r} names a {type(cache).__name__}, not a storage")
    return cache


# --- tables -> caches -------------------------------------------------------------------------
def build(spec: Any, where: Where, named: Named) -> BaseCache:
    """The cache a table (dict), a list of tables (a stack) or a name/URL/path describes."""
    if isinstance(spec, str):
        return _reference(spec, where, named)
    if isinstance(spec, list):
        if not spec:
            raise where.error("a stack needs at least one cache")
        return CacheStack(*(build(item, where.item(i), named) for i, item in enumerate(spec)))
    if not isinstance(spec, dict):
        raise where.error(f"expected a table or an array of tables, not {type(spec).__name__}")
    if "pool" in spec:
        _only(spec, {"pool", "read_only"}, where)
        members = _list(spec, "pool", where)
        inner = where.child("pool")
        base: BaseCache = CachePool(
            *(build(m, inner.item(i), named) for i, m in enumerate(members))
        )
    elif "stack" in spec:
        _only(spec, {"stack", *_MODIFIERS}, where)
        base = build(_list(spec, "stack", where), where.child("stack"), named)
    elif "template" in spec:
        base = _template(spec, where)
    elif spec.get("type") == "ssh":
        raise where.error("ssh caches of fleche 0.22.2 are not supported", "type")
    elif "url" in spec:
        _only(spec, {"url", *_MODIFIERS, *_OPTIONS}, where)
        url = _target(_string(spec, "url", where), where)
        base = _storages(_with_options(url, _options(spec, where)))
    elif "values" in spec or "calls" in spec:
        _only(spec, {"values", "calls", *_MODIFIERS, *_OPTIONS}, where)
        options = _options(spec, where)
        values, calls = (_storage_url(spec, role, where, options) for role in ("values", "calls"))
        base = SplitCache(values, calls)
    else:
        needs = "a cache needs url, values and calls, a stack, a pool or a template"
        known = {"url", "values", "calls", "stack", "pool", "template", *_MODIFIERS, *_OPTIONS}
        unknown = [key for key in spec if key not in known]
        raise where.error(f"unknown key ({needs})", unknown[0]) if unknown else where.error(needs)
    return _modified(base, spec, where)


def _reference(text: str, where: Where, named: Named) -> BaseCache:
    if "://" in text or _looks_like_path(text):
        return _storages(_target(text, where))
    return named(text, where)


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or os.sep in text or "/" in text


def _modified(base: BaseCache, spec: dict[str, Any], where: Where) -> BaseCache:
    limits = {k: _count(spec, k, where) for k in _LIMITS if k in spec}
    if "max_size" in limits:  # the fleche 0.22.2 name
        if "max_entries" in limits:
            raise where.error("give max_entries or max_size (its old name), not both", "max_size")
        limits["max_entries"] = limits.pop("max_size")
    if limits:
        base = SizeLimitedCache(base, **limits)
    if _flag(spec, "read_only", where):
        base = ReadOnlyCache(base)
    return base


def _storage_url(spec: dict[str, Any], role: str, where: Where, options: dict[str, str]) -> str:
    if role not in spec:
        raise where.error("values and calls go together: give both (or url)", role)
    value = spec[role]
    if isinstance(value, str):
        return _with_options(_target(value, where), options)
    if isinstance(value, dict):
        return _legacy_storage(value, where.child(role), options)
    raise where.error(f"must be a URL, a path or a storage table, not {type(value).__name__}", role)


def _legacy_storage(table: dict[str, Any], where: Where, options: dict[str, str]) -> str:
    """A fleche 0.22.2 storage table (``type`` plus ``root`` or ``url``) as one of our URLs."""
    kind = _string(table, "type", where).lower()
    if kind in ("memory", "void"):
        _only(table, {"type", *_IGNORED}, where)
        return f"{kind}://"
    if kind == "sql":
        _only(table, {"type", "url", *_IGNORED}, where)
        return absolute_url(_string(table, "url", where), where.base)
    if kind not in _FILE_TYPES:
        known = ", ".join(sorted({"memory", "void", "sql", *_FILE_TYPES}))
        raise where.error(f"unknown storage type {kind!r} (known: {known})", "type")
    _only(table, {"type", "root", "compress", "secret_key", *_IGNORED}, where)
    options = {**options, **_options(table, where)}
    if _flag(table, "compress", where):
        options["compress"] = "zlib"
    return _with_options(_file_url(_string(table, "root", where), where), options)


def _template(spec: dict[str, Any], where: Where) -> BaseCache:
    """fleche 0.22.2's ``template = "..."`` shorthand."""
    _only(spec, {"template", "root", "values", "url", *_MODIFIERS, *_OPTIONS}, where)
    name = _string(spec, "template", where).lower()
    if name not in {"memory", "sql", *_FILE_TYPES}:
        known = ", ".join(sorted({"memory", "sql", *_FILE_TYPES}))
        raise where.error(f"unknown template {name!r} (known: {known})", "template")
    options = _options(spec, where)
    if name == "memory":
        _only(spec, {"template", *_MODIFIERS}, where)
        return _storages("memory://")
    root = _string(spec, "root", where)
    if name in _FILE_TYPES:
        _only(spec, {"template", "root", *_MODIFIERS, *_OPTIONS}, where)
        return _storages(_with_options(_file_url(root, where), options))
    if name == "sql":
        backend = spec.get("values", "bagofholding_hdf")
        if not isinstance(backend, str) or backend.lower() not in _FILE_TYPES:
            raise where.error(f"unknown value storage {backend!r}", "values")
        base = _absolute_path(root, where.base)
        calls = spec.get("url") or f"sqlite:///{base / 'calls.db'}"
        if not isinstance(calls, str):
            raise where.error("must be a URL", "url")
        values = _with_options(_file_url(root, where), options)
        return SplitCache(values, absolute_url(calls, where.base))
    raise AssertionError(name)  # pragma: no cover (checked above)


# --- values of keys -------------------------------------------------------------------------------
def _only(table: dict[str, Any], allowed: set[str] | frozenset[str], where: Where) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(f"unknown key (allowed here: {', '.join(sorted(allowed))})", key)


def _string(table: dict[str, Any], key: str, where: Where) -> str:
    if key not in table:
        raise where.error("is missing", key)
    value = table[key]
    if not isinstance(value, str) or not value:
        raise where.error(f"must be a non-empty string, not {value!r}", key)
    return value


def _list(table: dict[str, Any], key: str, where: Where) -> list[Any]:
    value = table[key]
    if not isinstance(value, list) or not value:
        raise where.error("must be a non-empty array of tables", key)
    return value


def _flag(table: dict[str, Any], key: str, where: Where) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise where.error(f"must be true or false, not {value!r}", key)
    return value


def _count(table: dict[str, Any], key: str, where: Where) -> int:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise where.error(f"must be a whole number >= 0, not {value!r}", key)
    return value


def _options(table: dict[str, Any], where: Where) -> dict[str, str]:
    """``secret_key`` and ``durable`` as URL options (the storages read them from the URL)."""
    from .storage.serialize import parse_secret_keys

    options = {}
    if _flag(table, "durable", where):
        options["durable"] = "1"
    if "secret_key" in table:
        raw = table["secret_key"]
        keys = raw.split(":") if isinstance(raw, str) else raw
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise where.error("must be hex, or an array of hex strings", "secret_key")
        try:
            parse_secret_keys(keys)
        except ConfigError as e:
            raise where.error(str(e), "secret_key") from None
        options["secret_key"] = ":".join(k.strip() for k in keys)
    return options


# --- paths and URLs -----------------------------------------------------------------------------
def _absolute_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _target(text: str, where: Where) -> str:
    """A URL with relative paths made absolute; a plain path means the embedded default."""
    if "://" in text:
        return absolute_url(text, where.base)
    return f"embedded://{_absolute_path(text, where.base)}"


def _file_url(root: str, where: Where) -> str:
    return f"file://{_absolute_path(root, where.base)}"


def absolute_url(url: str, base: Path) -> str:
    """``url`` with a relative filesystem path resolved against ``base`` (``file://./c``,
    ``file://~/c``, ``embedded://c``, ``sqlite:///c.db``); other URLs unchanged."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme in _PATH_SCHEMES:
        text = parts.path if parts.netloc in ("", "localhost") else parts.netloc + parts.path
        path = str(_absolute_path(text, base))
    elif scheme == "sqlite":
        text = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not text or text == ":memory:" or text.startswith("/"):
            return url
        path = "/" + str(_absolute_path(text, base))
    else:
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{path}{query}"


def _with_options(url: str, options: dict[str, str]) -> str:
    if not options:
        return url
    head, _, query = url.partition("?")
    merged = {**dict(parse_qsl(query)), **options}
    return f"{head}?{urlencode(merged, safe=':/')}"


# --- caches -> tables -----------------------------------------------------------------------------
def to_config(cache: BaseCache) -> dict[str, Any] | list[Any]:
    """The table (or list, for a stack) that builds ``cache`` again: the inverse of :func:`build`.

    Raises ``ConfigError`` for caches that configuration cannot express (filtered views, a
    refreshing cache, a cache whose storages cannot name their URL).
    """
    if isinstance(cache, FilteredCache | RefreshingCache):
        raise ConfigError(f"{type(cache).__name__} cannot be written as configuration")
    if isinstance(cache, ReadOnlyCache):
        table = _as_table(to_config(cache.inner))
        if table.get("read_only"):
            raise ConfigError(f"{cache!r} cannot be written as configuration")
        return {**table, "read_only": True}
    if isinstance(cache, SizeLimitedCache):
        table = _as_table(to_config(cache.inner))
        if "pool" in table or set(table) & _MODIFIERS:
            raise ConfigError(f"{cache!r} cannot be written as configuration")
        limits = {"max_entries": cache.max_entries, "max_bytes": cache.max_bytes}
        return {**table, **{k: v for k, v in limits.items() if v is not None}}
    if isinstance(cache, CacheStack):
        return [_as_item(to_config(layer)) for layer in cache.layers]
    if isinstance(cache, CachePool):
        return {"pool": [_as_item(to_config(member)) for member in cache.layers]}
    if isinstance(cache, SplitCache):
        return {"values": cache.values_url, "calls": cache.calls_url}
    if isinstance(cache, VoidCache):
        return {"url": "void://"}
    if isinstance(cache, Cache):
        if cache.url:
            return {"url": cache.url}
        return _from_storages(cache)
    raise ConfigError(f"{type(cache).__name__} cannot be written as configuration")


def _from_storages(cache: Cache) -> dict[str, Any]:
    urls = []
    for storage in (cache.values, cache.calls):
        to_url = getattr(storage, "to_url", None)
        if to_url is None:
            raise ConfigError(f"{storage!r} cannot name its URL (it has no to_url())")
        urls.append(to_url())
    if urls[0] == urls[1]:
        return {"url": urls[0]}
    return {"values": urls[0], "calls": urls[1]}


def _as_table(config: dict[str, Any] | list[Any]) -> dict[str, Any]:
    return {"stack": config} if isinstance(config, list) else dict(config)


def _as_item(config: dict[str, Any] | list[Any]) -> dict[str, Any]:
    return {"stack": config} if isinstance(config, list) else config
