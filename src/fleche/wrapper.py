"""The ``@fleche`` decorator and its helpers (SPEC section 4).

Hit path: bind (precompiled binder), digest each keyed argument, build the key from the function's
precomputed head, look it up, load the result. Miss path: enter the cache's COMPUTE context, look
again, compute, store values then the record.
"""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from .binding import Binder
from .caches import BaseCache, RefreshingCache, save_call
from .call import (
    IGNORE,
    REQUIRE,
    Call,
    DigestedCall,
    KeyMaker,
    QueryCall,
    marker_of,
    module_of,
    now,
)
from .digest import DIGEST_LENGTH, Digest, code_digest, digest, digest_hex
from .errors import (
    DigestError,
    LockTimeoutError,
    LockTimeoutWarning,
    UnstorableResultWarning,
    UsageError,
)
from .metadata import MetaData, collect
from .state import _cache_var, _disabled, _void, active_cache, active_metadata
from .storage.base import Intent

__all__ = ["BoundWrapper", "CachedFunction", "fleche"]

F = TypeVar("F", bound=Callable[..., Any])

KNOWN_KEYS = 4096
"""Calls per function whose lookup keys are remembered (all forgotten at once when it is full)."""
_SHORT = 256  # the longest str or bytes argument whose call's key is remembered
_INT64 = 0x7FFFFFFFFFFFFFFF


def _probe(values: Any, indices: tuple[int, ...]) -> tuple[Any, ...] | None:
    """The keyed arguments as a dict key when each is an int (64 bits), a short str or bytes, or
    None, else None. Among such values, equal means the same type and the same digest; so no
    float (``0.0 == -0.0``), bool (``True == 1``) or container is remembered, and nothing big
    is kept alive."""
    probe = []
    for i in indices:
        value = values[i]
        kind = type(value)
        if kind is int:
            if not -_INT64 - 1 <= value <= _INT64:
                return None
        elif kind is str or kind is bytes:
            if len(value) > _SHORT:
                return None
        elif value is not None:
            return None
        probe.append(value)
    return tuple(probe)


class CachedFunction:
    """A function whose calls are looked up in, and stored to, a cache.

    Helpers (also under ``.fleche``): ``call``, ``digest``, ``load``, ``contains``, ``query``,
    ``explain``, ``rerun``, ``bind``, ``evict``. Each takes the arguments of the function.

    >>> from fleche import cache
    >>> @fleche
    ... def power(x, n=2):
    ...     return x ** n
    >>> with cache("memory://"):
    ...     power(3)
    ...     power.contains(3), power.load(3), power.contains(3, n=3)
    ...     power.call(3).arguments
    ...     power.digest(3) == power.call(3, n=2).lookup_key()
    ...     power.rerun(3)
    ...     power.query().count(), power.fleche.query(x=3).count()
    ...     power.evict(3)
    ...     power.contains(3)
    9
    (True, 9, False)
    {'x': 3, 'n': 2}
    True
    9
    (1, 1)
    False
    """

    __name__: str
    __qualname__: str

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        version: Any = None,
        hash_version: bool = True,
        hash_module: bool = True,
        hash_code: bool = False,
        ignore: Iterable[str] = (),
        require: Iterable[str] = (),
        meta: Iterable[MetaData] = (),
        isolate: bool = False,
        cache: Any = None,
        cache_if: Callable[[Any], bool] | None = None,
        store_arguments: bool = True,
        on_lock_timeout: str = "raise",
    ) -> None:
        target, self._pre_args, self._pre_kwargs = _unwrap_partial(func)
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise UsageError(
                f"cannot cache the generator function {target.__qualname__}: a generator cannot be "
                "replayed; return a list (or another value) instead"
            )
        if not callable(target):
            raise UsageError(f"@fleche needs a function, not {target!r}")
        self._target = target
        self.__wrapped__ = func
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(self, attr, getattr(target, attr, None))
        self.__dict__.update(getattr(target, "__dict__", {}))
        self.version = version
        self.name: str = target.__qualname__
        self.module = module_of(target)
        self._hash_version, self._hash_module, self._hash_code = (
            hash_version,
            hash_module,
            hash_code,
        )
        self._meta = tuple(meta)
        self._isolate = isolate
        self._cache_target = cache
        self._cache: BaseCache | None = None
        self._cache_if = cache_if
        self._store_arguments = store_arguments
        if on_lock_timeout not in ("raise", "compute"):
            raise UsageError(f"on_lock_timeout is 'raise' or 'compute', not {on_lock_timeout!r}")
        self._compute_on_timeout = on_lock_timeout == "compute"
        signature = inspect.signature(target)
        self.__signature__ = _visible_signature(signature, self._pre_args, self._pre_kwargs)
        self._binder = Binder(signature)
        self._keyed = _keyed_parameters(target, signature, set(ignore), set(require))
        self._keymaker: KeyMaker | None = None
        self._key_of: Callable[[list[str]], str] | None = None
        self._code_digest: str | None = None
        self._indices = tuple(i for i, _ in self._keyed)
        self._names = tuple(name for _, name in self._keyed)
        # keys of recent calls with small scalar arguments: a hit skips digesting them again
        self._known: dict[tuple[Any, ...], tuple[Digest, list[str]]] = {}

    # --- per-function facts, computed once ----------------------------------------------------
    def _key_maker(self) -> KeyMaker:
        if self._keymaker is None:
            if self._hash_code:
                self._code_digest = code_digest(self._target)
            self._keymaker = KeyMaker(
                self.name,
                self.module if self._hash_module else None,
                self.version if self._hash_version else None,
                self._code_digest,
            )
        return self._keymaker

    def _active(self) -> BaseCache:
        if self._cache_target is None:
            return active_cache()
        if self._cache is None:
            from .config import resolve_cache

            self._cache = resolve_cache(self._cache_target)
        return _void if _disabled() else self._cache

    @property
    def fleche(self) -> CachedFunction:
        """The helpers, also reachable as ``f.fleche.query(...)`` etc."""
        return self

    # --- keys ---------------------------------------------------------------------------------
    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._pre_args or self._pre_kwargs:
            args = self._pre_args + args
            kwargs = {**self._pre_kwargs, **kwargs}
        return self._binder.bind(args, kwargs), args, kwargs

    def _key(self, values: Any, cache: BaseCache | None) -> tuple[Digest, list, bool]:
        """The lookup key, the argument hex digests and whether a Digest stood for an argument.

        Remembered for calls whose arguments :func:`_probe` accepts (the caller only reads the
        list of digests)."""
        probe = _probe(values, self._indices)
        if probe is not None:
            known = self._known.get(probe)
            if known is not None:
                return known[0], known[1], False
        hexes = []
        indirect = False
        for i, name in self._keyed:
            value = values[i]
            if type(value) is Digest:
                indirect = True
                if len(value) < DIGEST_LENGTH:
                    value = (cache or self._active()).values_expand(value)
            try:
                hexes.append(digest_hex(value))
            except DigestError as e:
                raise e.at(f"arguments[{name!r}]") from None
        key_of = self._key_of or self._make_key_of()
        key = Digest(key_of(hexes))
        if probe is not None:
            if len(self._known) >= KNOWN_KEYS:
                self._known.clear()
            self._known[probe] = (key, hexes)
        return key, hexes, indirect

    def _make_key_of(self) -> Callable[[list[str]], str]:
        self._key_of = self._key_maker().fixed(tuple(name for _, name in self._keyed))
        return self._key_of

    # --- calling --------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cache = self._active()
        values, args, kwargs = self._bind(args, kwargs)
        key, hexes, indirect = self._key(values, cache)
        try:
            result = cache._lookup(key)
        except KeyError:
            return self._miss(cache, key, hexes, values, args, kwargs, indirect)
        return copy.deepcopy(result) if self._isolate else result

    def _miss(self, cache: BaseCache, key: Digest, hexes: list, values: Any, args: Any,
              kwargs: Any, indirect: bool) -> Any:  # fmt: skip
        with self._compute_context(cache, key) as locked:
            try:
                return cache._lookup(key)  # computed by someone else while we waited
            except KeyError:  # the re-check and the first look-up are one miss
                cache.misses = max(cache.misses - 1, 0)
            if indirect:
                args, kwargs, values = self._resolve_digests(cache, values)
            recorders = (*active_metadata(), *self._meta)
            states = [r.begin() for r in recorders]
            result = self._target(*args, **kwargs)
            if locked:  # without the lock the holder stores it; we only return our result
                self._record(cache, key, hexes, values, result, recorders, states)
            return result

    def _compute_context(self, cache: BaseCache, key: Digest) -> Any:
        """The COMPUTE context of ``key``; with ``on_lock_timeout="compute"`` a timeout to enter
        it yields False (compute without storing) instead of raising ``LockTimeoutError``."""
        sync = cache._operation_context(key, intent=Intent.COMPUTE)
        return _ComputeContext(sync, None, self._compute_on_timeout, self.name, key)

    def _record(self, cache: BaseCache, key: Digest, hexes: list, values: Any, result: Any,
                recorders: tuple, states: list) -> None:  # fmt: skip
        if self._cache_if is not None and not self._cache_if(result):
            return
        kept = copy.deepcopy(result) if self._isolate else result
        # a large result is written while it is digested (the digest names its file)
        with cache._staging(kept, lambda: digest(result)) as result_key:
            self._save(cache, key, hexes, values, result_key, kept, recorders, states)

    def _save(self, cache: BaseCache, key: Digest, hexes: list, values: Any,
              result_key: Callable[[], Digest], kept: Any, recorders: tuple, states: list
              ) -> None:  # fmt: skip
        try:
            result_digest = result_key()
        except DigestError as e:
            warnings.warn(
                f"the result of {self.name} cannot be digested ({e}); it was not cached",
                UnstorableResultWarning,
                stacklevel=5,
            )
            return
        metadata = collect(recorders, states) if recorders else {}
        metadata["fleche"] = {"created": now()}
        digests = list(map(Digest, hexes))
        record = DigestedCall(
            self.name, dict(zip(self._names, digests, strict=True)), metadata, self.module,
            self.version, self._code_digest, result_digest,
        )  # fmt: skip
        stored = list(zip(digests, map(values.__getitem__, self._indices), strict=True))
        stored.append((result_digest, kept))
        save_call(cache, key, record, stored, store_arguments=self._store_arguments)

    def _resolve_digests(self, cache: BaseCache, values: Any) -> tuple[tuple, dict, list]:
        """Replace ``Digest`` arguments by the values they name, loaded from the cache."""
        resolved = []
        for value in values:
            if type(value) is not Digest:
                resolved.append(value)
                continue
            full = value if value.is_full else cache.values_expand(value)
            try:
                resolved.append(cache.load_value(full))
            except KeyError:
                raise KeyError(
                    f"argument digest {value} names no stored value; it cannot be computed"
                ) from None
        args, kwargs = self._binder.unbind(dict(zip(self._binder.names, resolved, strict=True)))
        return args, kwargs, resolved

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundMethod(self, instance)

    def __reduce__(self) -> str:
        return self.__qualname__

    def __repr__(self) -> str:
        return f"<fleche {self.module}.{self.name}>"

    # --- helpers --------------------------------------------------------------------------------
    def call(self, *args: Any, **kwargs: Any) -> Call:
        """The ``Call`` these arguments make (every bound argument, defaults applied)."""
        values, _, _ = self._bind(args, kwargs)
        self._key_maker()
        return Call(
            self.name, dict(zip(self._binder.names, values, strict=True)), {}, self.module,
            self.version, self._code_digest,
        )  # fmt: skip

    def digest(self, *args: Any, **kwargs: Any) -> Digest:
        """The lookup key of this call."""
        values, _, _ = self._bind(args, kwargs)
        return self._key(values, None)[0]

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """The stored result of this call; ``KeyError`` when it is not stored."""
        cache = self._active()
        values, _, _ = self._bind(args, kwargs)
        return cache._lookup(self._key(values, cache)[0])

    def contains(self, *args: Any, **kwargs: Any) -> bool:
        """True when this call's result is stored."""
        cache = self._active()
        values, _, _ = self._bind(args, kwargs)
        return cache.contains(self._key(values, cache)[0])

    def evict(self, *args: Any, **kwargs: Any) -> None:
        """Remove this call's record; ``KeyError`` when it is not stored."""
        cache = self._active()
        values, _, _ = self._bind(args, kwargs)
        cache.evict(self._key(values, cache)[0])

    def rerun(self, *args: Any, **kwargs: Any) -> Any:
        """Compute again and store, recomputing nested cached calls too."""
        refreshing = RefreshingCache(self._active())
        token = _cache_var.set(refreshing)
        try:
            values, args, kwargs = self._bind(args, kwargs)
            key, hexes, indirect = self._key(values, refreshing)
            return self._miss(refreshing, key, hexes, values, args, kwargs, indirect)
        finally:
            _cache_var.reset(token)

    def template(self, *args: Any, metadata: dict[str, Any] | None = None, **kwargs: Any
                 ) -> QueryCall:  # fmt: skip
        """The ``QueryCall`` that finds the stored calls this function could hit."""
        if self._pre_args or self._pre_kwargs:
            args, kwargs = self._pre_args + args, {**self._pre_kwargs, **kwargs}
        given = self._binder.bind_partial(args, kwargs)
        keyed = {name for _, name in self._keyed}
        for name in given:
            if name not in keyed:
                raise UsageError(f"argument {name!r} is not part of the key of {self.name}")
        self._key_maker()
        return QueryCall(
            self.name, given, metadata or {},
            self.module if self._hash_module else None,
            self.version if self._hash_version else None,
        )  # fmt: skip

    def query(self, *args: Any, metadata: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Stored calls of this function matching the given arguments (omitted/None: any)."""
        return self._active().query(self.template(*args, metadata=metadata, **kwargs))

    def explain(self, *args: Any, **kwargs: Any) -> Any:
        """Why this call would hit or miss: stored or not, and the nearest stored calls."""
        from .explain import explain

        return explain(self, args, kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> BoundWrapper:
        """A picklable callable carrying the active cache and metadata (for process pools)."""
        return BoundWrapper(self, self._active(), active_metadata(), args, kwargs)


class AsyncCachedFunction(CachedFunction):
    """The same for ``async def`` functions: the awaited result is cached."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cache = self._active()
        values, args, kwargs = self._bind(args, kwargs)
        key, hexes, indirect = self._key(values, cache)
        try:
            result = cache._lookup(key)
        except KeyError:
            return await self._amiss(cache, key, hexes, values, args, kwargs, indirect)
        return copy.deepcopy(result) if self._isolate else result

    async def _amiss(self, cache: BaseCache, key: Digest, hexes: list, values: Any, args: Any,
                     kwargs: Any, indirect: bool) -> Any:  # fmt: skip
        inner = cache._async_operation_context(key, intent=Intent.COMPUTE)
        async with _ComputeContext(None, inner, self._compute_on_timeout, self.name, key) as locked:
            try:
                return cache._lookup(key)
            except KeyError:  # the re-check and the first look-up are one miss
                cache.misses = max(cache.misses - 1, 0)
            if indirect:
                args, kwargs, values = self._resolve_digests(cache, values)
            recorders = (*active_metadata(), *self._meta)
            states = [r.begin() for r in recorders]
            result = await self._target(*args, **kwargs)
            if locked:
                self._record(cache, key, hexes, values, result, recorders, states)
            return result

    async def rerun(self, *args: Any, **kwargs: Any) -> Any:
        refreshing = RefreshingCache(self._active())
        token = _cache_var.set(refreshing)
        try:
            values, args, kwargs = self._bind(args, kwargs)
            key, hexes, indirect = self._key(values, refreshing)
            return await self._amiss(refreshing, key, hexes, values, args, kwargs, indirect)
        finally:
            _cache_var.reset(token)


class _ComputeContext:
    """Enters a COMPUTE context; yields True when held, False after a tolerated lock timeout."""

    __slots__ = ("async_inner", "entered", "inner", "key", "name", "tolerate")

    def __init__(self, inner: Any, async_inner: Any, tolerate: bool, name: str, key: str) -> None:
        self.inner, self.async_inner, self.tolerate = inner, async_inner, tolerate
        self.name, self.key = name, key  # the warning's label, made only if it is given
        self.entered = False

    def _timed_out(self, error: LockTimeoutError) -> bool:
        if not self.tolerate:
            raise error
        warnings.warn(
            f"{self.name} {self.key}: {error}; computing without the lock (the result is not "
            "stored)",
            LockTimeoutWarning,
            stacklevel=4,
        )
        return False

    def __enter__(self) -> bool:
        try:
            self.inner.__enter__()
        except LockTimeoutError as e:
            return self._timed_out(e)
        self.entered = True
        return True

    def __exit__(self, *exc: Any) -> None:
        if self.entered:
            self.inner.__exit__(*exc)

    async def __aenter__(self) -> bool:
        try:
            await self.async_inner.__aenter__()
        except LockTimeoutError as e:
            return self._timed_out(e)
        self.entered = True
        return True

    async def __aexit__(self, *exc: Any) -> None:
        if self.entered:
            await self.async_inner.__aexit__(*exc)


_HELPERS = frozenset(
    {"call", "digest", "load", "contains", "evict", "rerun", "query", "template", "explain", "bind"}
)


class BoundMethod:
    """A cached method bound to an instance: ``self`` is digested like any argument."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: CachedFunction, instance: Any) -> None:
        self.__func__ = func
        self.__self__ = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__func__, name)
        if name in _HELPERS:
            return functools.partial(attr, self.__self__)
        return attr

    @property
    def fleche(self) -> BoundMethod:
        return self


class BoundWrapper:
    """A plain, picklable callable that runs a cached function under a frozen cache and metadata.

    ``f.bind(*args, **kwargs)`` makes one from the active cache and metadata (tags included), with
    arguments bound in front, like ``functools.partial``: hand it to a process pool, whose workers
    know nothing of the parent's cache. The function travels by reference (module and name),
    the cache by its URL.

    >>> from fleche import cache, tags
    >>> @fleche
    ... def power(x, n=2):
    ...     return x ** n
    >>> with cache("memory://"), tags(batch=1):
    ...     cube = power.bind(n=3)
    >>> type(cube).__name__, cube(2)
    ('BoundWrapper', 8)
    """

    def __init__(self, func: CachedFunction, cache: BaseCache, metadata: tuple[MetaData, ...],
                 args: tuple = (), kwargs: dict | None = None) -> None:  # fmt: skip
        self.func, self.cache, self.metadata = func, cache, metadata
        self.args, self.kwargs = args, dict(kwargs or {})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .state import _meta_var

        cache_token = _cache_var.set(self.cache)
        meta_token = _meta_var.set(self.metadata)
        try:
            return self.func(*self.args, *args, **{**self.kwargs, **kwargs})
        finally:
            _meta_var.reset(meta_token)
            _cache_var.reset(cache_token)

    def __repr__(self) -> str:
        return f"BoundWrapper({self.func!r}, cache={self.cache!r})"


def _unwrap_partial(func: Any) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    while isinstance(func, functools.partial):
        args = func.args + args
        kwargs = {**func.keywords, **kwargs}
        func = func.func
    return func, args, kwargs


def _visible_signature(signature: inspect.Signature, args: tuple, kwargs: dict) -> Any:
    if not args and not kwargs:
        return signature
    params = list(signature.parameters.values())[len(args) :]
    return signature.replace(parameters=[p for p in params if p.name not in kwargs])


def _keyed_parameters(target: Callable[..., Any], signature: inspect.Signature, ignore: set[str],
                      require: set[str]) -> tuple[tuple[int, str], ...]:  # fmt: skip
    """(index, name) of the parameters that enter the key, from ignore/require and annotations."""
    names = list(signature.parameters)
    unknown = (ignore | require) - set(names)
    if unknown:
        raise UsageError(f"{target.__qualname__} has no parameter(s) {sorted(unknown)}")
    for name, param in signature.parameters.items():
        marker = marker_of(param.annotation)
        if marker is IGNORE:
            ignore.add(name)
        elif marker is REQUIRE:
            require.add(name)
    return tuple(
        (i, name)
        for i, name in enumerate(names)
        if name not in ignore and (not require or name in require)
    )


@overload
def fleche(func: F) -> F: ...
@overload
def fleche(func: None = None, **options: Any) -> Callable[[F], F]: ...


def fleche(func: Any = None, **options: Any) -> Any:
    """Cache a function's results by content: ``@fleche`` or ``@fleche(version=2, ...)``.

    Each call is bound to the signature (defaults applied) and looked up under a digest of the
    function's identity and its arguments; a miss computes and stores the result.

    Options:

    - ``version`` (``None``): part of the key; bump it when results change meaning.
      ``hash_version=False`` records it without keying on it.
    - ``hash_module`` (``True``): ``False`` leaves the module out of the key.
    - ``hash_code`` (``False``): ``True`` keys on the function's code too.
    - ``ignore`` / ``require``: parameter names left out of the key / the only ones in it
      (also ``Ignored[T]`` and ``Required[T]`` annotations).
    - ``meta``: metadata recorders for this function's calls.
    - ``cache``: a cache, name, URL or path to use instead of the active cache.
    - ``cache_if``: a function of the result; results it rejects are not stored.
    - ``isolate`` (``False``): ``True`` stores and returns deep copies.
    - ``store_arguments`` (``True``): ``False`` records arguments by digest only.
    - ``on_lock_timeout`` (``"raise"``): ``"compute"`` computes without storing when a key's
      lock cannot be had in time, instead of raising ``LockTimeoutError``.

    Methods, ``functools.partial`` objects and ``async def`` functions can be decorated; a
    generator function raises ``UsageError``. An argument that cannot be digested raises
    ``DigestError`` at call time.

    >>> from fleche import cache
    >>> @fleche
    ... def square(x):
    ...     return x * x
    >>> with cache("memory://"):
    ...     square(4), square(4), square.query().count()
    (16, 16, 1)
    >>> @fleche(version=2, ignore=["verbose"])
    ... def scaled(x, factor=2, verbose=False):
    ...     return x * factor
    >>> scaled.digest(3) == scaled.digest(3, factor=2, verbose=True)
    True
    """

    if func is None:
        return functools.partial(fleche, **options)
    if isinstance(func, classmethod | staticmethod):
        return type(func)(fleche(func.__func__, **options))
    target = _unwrap_partial(func)[0]
    if inspect.iscoroutinefunction(target):
        return AsyncCachedFunction(func, **options)
    return CachedFunction(func, **options)
