"""The exception and warning hierarchy of fleche (SPEC section 10).

Every exception derives from :class:`FlecheError` and from the builtin it behaves like, so a miss is
still a ``KeyError``, a bad configuration a ``ValueError`` and a missing driver an ``ImportError``.
A miss itself is a plain ``KeyError`` (``f.load(...)``, ``cache().load(key)``).

>>> issubclass(ConfigError, FlecheError), issubclass(ConfigError, ValueError)
(True, True)
>>> from fleche import Cache
>>> try:
...     Cache.from_url("memory://").load("0" * 32)
... except KeyError:
...     print("a miss")
a miss

"""

from __future__ import annotations

from collections.abc import Iterable


class FlecheError(Exception):
    """Base of every error raised by fleche.

    >>> issubclass(DigestError, FlecheError), issubclass(LockTimeoutError, FlecheError)
    (True, True)
    """


class DigestError(FlecheError, TypeError):
    """A value cannot be digested; the message names its type and its place in the arguments.

    >>> from fleche import digest
    >>> digest({"data": [1, iter([])]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.DigestError: cannot digest ... builtins.list_iterator: ... (at ['data'][1])
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def at(self, segment: str) -> DigestError:
        """Prefix the location of the offending value with one more step (innermost first)."""
        self.path = segment + self.path
        return self

    def __str__(self) -> str:
        if self.path:
            return f"{self.message} (at {self.path})"
        return self.message


class UsageError(FlecheError, TypeError):
    """The decorator was applied to something it cannot cache (for example a generator function).

    >>> from fleche import fleche
    >>> @fleche
    ... def numbers():
    ...     yield 1  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.UsageError: cannot cache the generator function numbers: ...
    """


class ConfigError(FlecheError, ValueError):
    """Invalid configuration, an unknown cache name or an unknown URL scheme.

    >>> from fleche import cache
    >>> cache("nosuch://somewhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.ConfigError: unknown cache URL scheme 'nosuch' in 'nosuch://somewhere'; known: ...
    """


class MissingDependencyError(FlecheError, ImportError):
    """An optional dependency is missing; the message names the extra to install.

    Raised when a cache URL needs a driver that is not installed (``redis://`` without redis-py:
    ``pip install 'fleche[redis]'``).

    >>> issubclass(MissingDependencyError, ImportError)
    True
    """

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{module!r} is needed{what} but is not installed: pip install 'fleche[{extra}]'",
            name=module,
        )
        self.extra = extra


class StorageError(FlecheError, OSError):
    """A storage failed to read or write.

    >>> issubclass(StorageError, OSError), issubclass(Rejected, StorageError)
    (True, True)
    """


class SaveError(StorageError):
    """A value or call record could not be saved.

    >>> issubclass(SaveError, StorageError)
    True
    """


class Rejected(StorageError):
    """A read-only cache refused a write or an eviction.

    >>> from fleche import Cache, ReadOnlyCache
    >>> ReadOnlyCache(Cache.from_url("memory://")).evict("0" * 32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.Rejected: ReadOnlyCache(Cache('memory://')) is read-only: it cannot evict 000...
    """


class IntegrityError(StorageError):
    """A stored entry failed its checksum or signature check.

    Loading through a cache never raises it: a corrupt entry is a miss with a
    :class:`CorruptEntryWarning` (and is evicted when the cache is writable).

    >>> issubclass(IntegrityError, StorageError)
    True
    """


class InvalidKeyError(FlecheError, ValueError):
    """A key is not lowercase hex of a digest's length; refused before any path or query is built.

    >>> from fleche import Cache
    >>> Cache.from_url("memory://").load("../etc")
    Traceback (most recent call last):
    ...
    fleche.errors.InvalidKeyError: '../etc' is not a full digest (32 hex characters)
    """


class AmbiguousDigestError(FlecheError, ValueError):
    """A digest prefix matches more than one stored key; ``candidates`` lists them.

    >>> from fleche import cache, fleche
    >>> @fleche
    ... def square(x):
    ...     return x * x
    >>> with cache("memory://") as scratch:
    ...     _ = [square(i) for i in range(40)]  # 40 keys: two share a first character
    >>> keys = sorted(scratch.list())
    >>> shared = next(a[0] for a, b in zip(keys, keys[1:]) if a[0] == b[0])
    >>> scratch.expand(shared)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fleche.errors.AmbiguousDigestError: prefix ... is ambiguous: it matches ...
    """

    def __init__(self, prefix: str, candidates: Iterable[str]) -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:10])
        more = " ..." if len(self.candidates) > 10 else ""
        super().__init__(f"prefix {str(prefix)!r} is ambiguous: it matches {shown}{more}")


class LockTimeoutError(FlecheError, TimeoutError):
    """A lock on a key could not be acquired in time.

    >>> issubclass(LockTimeoutError, TimeoutError)
    True
    """


class FlecheWarning(UserWarning):
    """Base of every warning issued by fleche.

    >>> issubclass(CorruptEntryWarning, FlecheWarning), issubclass(FlecheWarning, UserWarning)
    (True, True)
    """


class CorruptEntryWarning(FlecheWarning):
    """A stored entry was corrupt, truncated or wrongly signed; it was treated as a miss."""


class LockTimeoutWarning(FlecheWarning):
    """A lock timed out and ``on_lock_timeout="compute"`` computed without it."""


class UnstorableResultWarning(FlecheWarning):
    """A computed result could not be stored; it was returned to the caller all the same."""
