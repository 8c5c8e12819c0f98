"""The active cache and metadata: ContextVars for ``with`` blocks, process-wide sticky defaults.

``cache(x)`` activates ``x`` for the whole process, new threads included; ``with cache(x):``
activates it for the block only, in the current thread or asyncio task (SPEC section 8).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._log import get_logger
from .caches import BaseCache, VoidCache
from .metadata import MetaData, Tags

__all__ = ["active_cache", "active_metadata", "cache", "meta", "project", "tags"]

log = get_logger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_cache_var: contextvars.ContextVar[BaseCache | None] = contextvars.ContextVar(
    "fleche_cache", default=None
)
_meta_var: contextvars.ContextVar[tuple[MetaData, ...] | None] = contextvars.ContextVar(
    "fleche_meta", default=None
)
# "meta" None: not yet read from ``[default] metadata`` of fleche.toml
_sticky: dict[str, Any] = {"cache": None, "meta": None}
_void = VoidCache()


def _env_disabled() -> bool:
    return os.environ.get("FLECHE_DISABLE", "") not in ("", "0", "false", "no")


_DISABLED = _env_disabled()  # read once, when fleche is imported (the hit path checks it)


def _disabled() -> bool:
    return _DISABLED


def active_cache() -> BaseCache:
    """The cache calls use now: the ``with`` block's, else the sticky one, else the default."""
    active = _cache_var.get() or _sticky["cache"]
    if active is None:
        from .config import default_cache

        active = _sticky["cache"] = default_cache()
    return _void if _DISABLED else active


def active_metadata() -> tuple[MetaData, ...]:
    """The metadata recorders calls use now."""
    active = _meta_var.get()
    if active is None:
        active = _sticky["meta"]
        if active is None:
            from .config import default_metadata

            active = _sticky["meta"] = default_metadata()
    return active


class _Activation:
    """Returned by ``cache(x)``/``meta(...)``: already active for the process; ``with`` scopes it."""

    def __init__(self, var: contextvars.ContextVar[Any], slot: str, value: Any) -> None:
        self._var, self._slot, self._value = var, slot, value
        self._previous_sticky = _sticky[slot]
        _sticky[slot] = value
        self._tokens: list[contextvars.Token[Any]] = []

    def __enter__(self) -> Any:
        _sticky[self._slot] = self._previous_sticky  # a with block scopes it instead
        self._tokens.append(self._var.set(self._value))
        return self._value

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._tokens.pop())


@overload
def cache() -> BaseCache: ...
@overload
def cache(target: F) -> F: ...
@overload
def cache(target: Any) -> _Activation: ...


def cache(target: Any = None) -> Any:
    """Return the active cache, activate one, or decorate a function.

    ``cache()`` returns the active cache. ``cache(x)`` with a cache, a name, a URL or a path makes
    it active for the whole process; ``with cache(x):`` only for the block. ``@cache`` on a function
    is the same as ``@fleche``. Raises ``ConfigError`` for an unknown name or URL scheme.

    >>> with cache("memory://") as scratch:
    ...     scratch is cache()
    True
    >>> @cache
    ... def double(x):
    ...     return 2 * x
    >>> with cache("memory://"):
    ...     double(3), double.contains(3)
    (6, True)
    """
    if target is None:
        return active_cache()
    if callable(target) and not isinstance(target, BaseCache):
        from .wrapper import fleche

        return fleche(target)
    from .config import resolve_cache

    return _Activation(_cache_var, "cache", resolve_cache(target))


class _Scoped:
    """A context manager that only scopes (``tags``/``project`` are never sticky)."""

    def __init__(self, var: contextvars.ContextVar[Any], value: Any) -> None:
        self._var, self._value = var, value
        self._tokens: list[contextvars.Token[Any]] = []

    def __enter__(self) -> Any:
        self._tokens.append(self._var.set(self._value))
        return self._value

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._tokens.pop())


def meta(*recorders: MetaData, stack: bool = True) -> _Activation:
    """Add metadata recorders (on top of the active ones unless ``stack=False``).

    Active for the process; ``with meta(...):`` only for the block.

    >>> from fleche import Runtime, fleche
    >>> @fleche
    ... def step(x):
    ...     return x + 1
    >>> with cache("memory://"), meta(Runtime()):
    ...     step(1)
    ...     sorted(step.query().only().metadata["runtime"])
    2
    ['duration', 'end', 'start']
    """
    base = active_metadata() if stack else ()
    return _Activation(_meta_var, "meta", (*base, *recorders))


def tags(**kv: Any) -> _Scoped:
    """``with tags(k=v):`` tags every call stored in the block (nested blocks merge).

    Tags are JSON values; queries match them with ``metadata={"tags": {...}}``.

    >>> from fleche import fleche
    >>> @fleche
    ... def trial(seed):
    ...     return seed % 3
    >>> with cache("memory://"):
    ...     with tags(sweep="a"):
    ...         trial(1)
    ...         with tags(person="ana"):
    ...             trial(2)
    ...     trial.query(metadata={"tags": {"sweep": "a"}}).count()
    ...     trial.query(2).only().metadata["tags"]
    1
    2
    2
    {'sweep': 'a', 'person': 'ana'}
    """
    return _Scoped(_meta_var, (*active_metadata(), Tags(**kv)))


def project(name: str) -> _Scoped:
    """``with project("name"):`` tags every call stored in the block with ``project=name``.

    >>> from fleche import fleche
    >>> @fleche
    ... def chapter(n):
    ...     return n
    >>> with cache("memory://"), project("thesis"):
    ...     chapter(1)
    ...     chapter.query().only().metadata["tags"]
    1
    {'project': 'thesis'}
    """

    return tags(project=name)
