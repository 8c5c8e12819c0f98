"""Calls, their digested form, query templates and lookup keys (SPEC section 3).

A ``Call`` is a function identity plus bound arguments; its lookup key is the digest of
``(qualified name, module, version, code digest, ((parameter, argument digest), ...))``. Metadata and
the result never enter the key.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, get_args, get_origin

from .digest import Digest, _pack_Q, _xxh3_hex, digest, encode_into

if TYPE_CHECKING:
    from .caches import BaseCache

__all__ = [
    "NO_RESULT",
    "Call",
    "DigestedCall",
    "Ignored",
    "LazyArguments",
    "LazyCall",
    "QueryCall",
    "Required",
]

T = TypeVar("T")


class _NoResult:
    """The sentinel for "no result yet" (``None`` is a result like any other)."""

    _instance: _NoResult | None = None

    def __new__(cls) -> _NoResult:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_RESULT"

    def __reduce__(self) -> str:
        return "NO_RESULT"

    def __bool__(self) -> bool:
        return False


NO_RESULT: Any = _NoResult()


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


IGNORE = _Marker("IGNORE")
REQUIRE = _Marker("REQUIRE")


class Ignored(Generic[T]):
    """``x: Ignored[T]`` leaves the argument ``x`` out of the lookup key (like ``ignore=["x"]``).

    >>> from fleche import fleche
    >>> @fleche
    ... def fit(x: int, verbose: Ignored[bool] = False) -> int:
    ...     return x * 10
    >>> fit.digest(1) == fit.digest(1, verbose=True)
    True
    """

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, IGNORE]


class Required(Generic[T]):
    """``x: Required[T]``: only arguments marked so (or named in ``require=``) enter the key.

    >>> from fleche import fleche
    >>> @fleche
    ... def train(data: Required[str], workers: int = 4) -> int:
    ...     return len(data)
    >>> train.digest("abc", workers=1) == train.digest("abc", workers=8)
    True
    """

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, REQUIRE]


class Call:
    """A function call: identity, bound arguments, metadata and (once computed) the result.

    What ``f.call(...)`` returns; its :meth:`lookup_key` is the key a cached function uses.

    >>> def area(w, h=2):
    ...     return w * h
    >>> call = Call.from_call(area, 3)
    >>> call.name, dict(call.arguments)
    ('area', {'w': 3, 'h': 2})
    >>> call.lookup_key() == Call.from_call(area, w=3, h=2).lookup_key()
    True
    """

    __slots__ = ("arguments", "code_digest", "metadata", "module", "name", "result", "version")

    def __init__(
        self,
        name: str,
        arguments: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        module: str | None = None,
        version: Any = None,
        code_digest: str | None = None,
        result: Any = NO_RESULT,
    ) -> None:
        self.name = name
        self.arguments = dict(arguments)
        self.metadata = dict(metadata or {})
        self.module = module
        self.version = version
        self.code_digest = code_digest
        self.result = result

    @classmethod
    def from_call(cls, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        """Bind ``args``/``kwargs`` to ``func``'s signature (defaults applied) as a ``Call``."""
        bound = inspect.signature(func).bind(*args, **kwargs)
        bound.apply_defaults()
        return cls(func.__qualname__, bound.arguments, module=module_of(func))

    def lookup_key(self) -> Digest:
        """The digest under which this call's record is stored."""
        return lookup_key(
            self.name,
            self.module,
            self.version,
            self.code_digest,
            [(k, digest(v)) for k, v in self.arguments.items()],
        )

    def digested(self) -> DigestedCall:
        """The same call with arguments and result replaced by their digests."""
        result = NO_RESULT if self.result is NO_RESULT else digest(self.result)
        return DigestedCall(
            self.name,
            {k: digest(v) for k, v in self.arguments.items()},
            self.metadata,
            self.module,
            self.version,
            self.code_digest,
            result,
        )

    def _fields(self) -> tuple:
        return tuple(getattr(self, f) for f in Call.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return type(self) is type(other) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        result = "" if self.result is NO_RESULT else f" -> {self.result!r}"
        return f"{type(self).__name__}({self.name}({args}){result})"

    def __getstate__(self) -> tuple:
        return self._fields()

    def __setstate__(self, state: tuple) -> None:
        for field, value in zip(Call.__slots__, state, strict=True):
            setattr(self, field, value)


class DigestedCall(Call):
    """A call whose arguments and result are value digests: what a call storage keeps.

    >>> from fleche.digest import digest
    >>> def area(w, h=2):
    ...     return w * h
    >>> record = Call.from_call(area, 3).digested()
    >>> record.arguments["w"] == digest(3)
    True
    >>> DigestedCall.from_record(record.to_record()).lookup_key() == record.lookup_key()
    True
    """

    __slots__ = ()

    def lookup_key(self) -> Digest:
        """The digest under which this call's record is stored."""
        return lookup_key(
            self.name, self.module, self.version, self.code_digest, list(self.arguments.items())
        )

    def digested(self) -> DigestedCall:
        """This call itself: it is digested already."""
        return self

    def to_record(self) -> dict[str, Any]:
        """A JSON-compatible record (call records on disk are JSON, never pickle)."""
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "code_digest": self.code_digest,
            "arguments": dict(self.arguments),
            "result": None if self.result is NO_RESULT else str(self.result),
            "metadata": self.metadata,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DigestedCall:
        """Inverse of :meth:`to_record`."""
        result = record.get("result")
        return cls(
            record["name"],
            {k: Digest(v) for k, v in record["arguments"].items()},
            record.get("metadata") or {},
            record.get("module"),
            record.get("version"),
            record.get("code_digest"),
            NO_RESULT if result is None else Digest(result),
        )


class QueryCall(Call):
    """A template of calls: any field that is ``None`` is a wildcard.

    An argument given as ``None`` means "present, any value"; ``D(None)`` asks for a literal None.
    Arguments match by digest, so a value and its ``Digest`` are the same template.
    ``cache().query(template)`` takes one; ``f.template(...)`` makes one for a cached function.

    >>> def area(w, h=2):
    ...     return w * h
    >>> template = QueryCall(name="area", arguments={"w": 3})
    >>> template.matches(Call.from_call(area, 3).digested())
    True
    >>> template.matches(Call.from_call(area, 4).digested())
    False
    """

    __slots__ = ()

    def __init__(
        self,
        name: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        module: str | None = None,
        version: Any = None,
        code_digest: str | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(
            name,  # type: ignore[arg-type]
            arguments or {},
            metadata,
            module,
            version,
            code_digest,
            result,
        )

    def argument_digests(self) -> dict[str, Digest | None]:
        """Template arguments as digests (``None`` stays a wildcard)."""
        return {k: None if v is None else digest(v) for k, v in self.arguments.items()}

    def matches(self, call: DigestedCall, *, arg_digests: dict | None = None) -> bool:
        """True when ``call`` (a digested call) fits this template."""
        for field in ("name", "module", "version", "code_digest"):
            wanted = getattr(self, field)
            if wanted is not None and getattr(call, field) != wanted:
                return False
        if self.result is not None and call.result != digest(self.result):
            return False
        wanted_args = self.argument_digests() if arg_digests is None else arg_digests
        for name, wanted_digest in wanted_args.items():
            if name not in call.arguments:
                return False
            if wanted_digest is not None and call.arguments[name] != wanted_digest:
                return False
        return metadata_matches(self.metadata, call.metadata)


def metadata_matches(template: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """Nested AND match: every key of the template is present with an equal (or matching) value."""
    for key, wanted in template.items():
        if key not in metadata:
            return False
        have = metadata[key]
        if isinstance(wanted, Mapping):
            if not isinstance(have, Mapping) or not metadata_matches(wanted, have):
                return False
        elif wanted is not None and have != wanted:
            return False
    return True


def lookup_key(
    name: str,
    module: str | None,
    version: Any,
    code: str | None,
    pairs: list[tuple[str, Digest]],
) -> Digest:
    """The lookup key: digest of (name, module, version, code digest, ((param, digest), ...))."""
    return digest((name, module, version, code, tuple(pairs)))


class KeyMaker:
    """Lookup keys for one function with its constant head encoded once (the hot path).

    Gives the same digest as :func:`lookup_key` by construction: it writes the same encoding, with
    the tuple head and each parameter name's bytes computed once (the golden tests check both).
    """

    __slots__ = ("_names", "_prefix")

    def __init__(self, name: str, module: str | None, version: Any, code: str | None) -> None:
        head: list = []
        encode_into((name, module, version, code, ()), head)
        # the last part is the empty pairs tuple; the key appends the real pairs in its place
        self._prefix: bytes = b"".join(head[:-1])
        self._names: dict[str, bytes] = {}

    def _name(self, name: str) -> bytes:
        encoded = self._names.get(name)
        if encoded is None:
            out: list = []
            encode_into(name, out)
            encoded = self._names[name] = b"(" + _pack_Q(2) + b"".join(out) + b"D"
        return encoded

    def fixed(self, names: tuple[str, ...]) -> Callable[[list[str]], str]:
        """A key function for one fixed tuple of parameter names, taking the argument hex digests.

        The hot path of the decorator: the head and the names' bytes are joined once here.
        """
        head = self._prefix + b"(" + _pack_Q(len(names))
        name_bytes = [self._name(n) for n in names]

        def key(hexes: list[str]) -> str:
            parts = [head]
            for encoded_name, hexdigest in zip(name_bytes, hexes, strict=True):
                parts.append(encoded_name)
                parts.append(hexdigest.encode())
            return _xxh3_hex(b"".join(parts))

        return key

    def key(self, pairs: list[tuple[str, Digest]]) -> Digest:
        """The lookup key of one call, given its (parameter, full argument digest) pairs."""
        out = [self._prefix, b"(" + _pack_Q(len(pairs))]
        for name, value_digest in pairs:
            out.append(self._name(name))
            out.append(value_digest.encode())
        return Digest(_xxh3_hex(b"".join(out)))


def module_of(func: Callable[..., Any]) -> str | None:
    """The module that identifies a function; scripts are keyed by file name (``train.py`` → train)."""
    module = getattr(func, "__module__", None)
    if module in ("__main__", "__mp_main__"):  # __mp_main__: the script in a spawned worker
        main = sys.modules.get(module)
        path = getattr(main, "__file__", None)
        return os.path.splitext(os.path.basename(path))[0] if path else "__main__"
    return module


class LazyArguments(Mapping[str, Any]):
    """Arguments of a stored call, loaded from the value storage on first access, one by one."""

    def __init__(self, digests: Mapping[str, Digest], cache: BaseCache) -> None:
        self.digests = dict(digests)
        self._cache = cache
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            self._loaded[name] = self._cache.load_value(self.digests[name])
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def __repr__(self) -> str:
        return f"LazyArguments({', '.join(self.digests)})"


class LazyCall:
    """A stored call whose ``arguments`` and ``result`` load on first access; ``fetch()`` loads all.

    What queries yield and ``cache().load(key)`` returns; ``key`` is its lookup key and ``record``
    the stored :class:`DigestedCall`.

    >>> from fleche import cache, fleche
    >>> @fleche
    ... def tenfold(x):
    ...     return x * 10
    >>> with cache("memory://"):
    ...     tenfold(2)
    ...     stored = tenfold.query(x=2).only()
    ...     stored.name, stored.arguments["x"], stored.result, stored.fetch().result
    20
    ('tenfold', 2, 20, 20)
    """

    def __init__(self, key: Digest, record: DigestedCall, cache: BaseCache) -> None:
        self.key = key
        self.record = record
        self._cache = cache
        self.arguments = LazyArguments(record.arguments, cache)
        self._result: Any = NO_RESULT

    name = property(lambda self: self.record.name, doc="The function's qualified name.")
    module = property(lambda self: self.record.module, doc="The function's module.")
    version = property(lambda self: self.record.version, doc="The ``version`` option, if any.")
    code_digest = property(
        lambda self: self.record.code_digest, doc="The digest of the code (``hash_code``)."
    )
    metadata = property(lambda self: self.record.metadata, doc="The recorded metadata (JSON).")

    @property
    def result(self) -> Any:
        """The stored result, loaded on first access."""
        if self._result is NO_RESULT and self.record.result is not NO_RESULT:
            self._result = self._cache.load_value(self.record.result)
        return self._result

    @property
    def created(self) -> float:
        """When the call was stored (seconds since the epoch), from its metadata."""
        return float(self.record.metadata.get("fleche", {}).get("created", 0.0))

    def fetch(self) -> Call:
        """The full call, arguments and result loaded."""
        return Call(
            self.name,
            dict(self.arguments.items()),
            self.metadata,
            self.module,
            self.version,
            self.code_digest,
            self.result,
        )

    def __repr__(self) -> str:
        return f"LazyCall({self.key[:12]} {self.name}({', '.join(self.record.arguments)}))"


def now() -> float:
    """The wall clock, as stored in call records."""
    return time.time()


def marker_of(annotation: Any) -> _Marker | None:
    """``IGNORE`` or ``REQUIRE`` when an annotation is ``Ignored[T]``/``Required[T]``."""
    if get_origin(annotation) is Annotated:
        for extra in get_args(annotation)[1:]:
            if extra is IGNORE or extra is REQUIRE:
                return extra
    if isinstance(annotation, str):  # postponed annotations: recognise the spelling
        head = annotation.split("[", 1)[0].rsplit(".", 1)[-1]
        return {"Ignored": IGNORE, "Required": REQUIRE}.get(head)
    return None
