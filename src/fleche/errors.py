"""The exception and warning hierarchy of fleche (SPEC section 10).

Every exception derives from :class:`FlecheError` and from the builtin it behaves like, so a miss is
still a ``KeyError``, a bad configuration a ``ValueError`` and a missing driver an ``ImportError``.
"""

from __future__ import annotations

from collections.abc import Iterable


class FlecheError(Exception):
    """Base of every error raised by fleche."""


class DigestError(FlecheError, TypeError):
    """A value cannot be digested; the message names its type and its place in the arguments."""

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
    """The decorator was applied to something it cannot cache (for example a generator function)."""


class ConfigError(FlecheError, ValueError):
    """Invalid configuration, an unknown cache name or an unknown URL scheme."""


class MissingDependencyError(FlecheError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{module!r} is needed{what} but is not installed: pip install 'fleche[{extra}]'",
            name=module,
        )
        self.extra = extra


class StorageError(FlecheError, OSError):
    """A storage failed to read or write."""


class SaveError(StorageError):
    """A value or call record could not be saved."""


class Rejected(StorageError):
    """A read-only cache refused a write or an eviction."""


class IntegrityError(StorageError):
    """A stored entry failed its checksum or signature check."""


class InvalidKeyError(FlecheError, ValueError):
    """A key is not lowercase hex of a digest's length; refused before any path or query is built."""


class AmbiguousDigestError(FlecheError, ValueError):
    """A digest prefix matches more than one stored key."""

    def __init__(self, prefix: str, candidates: Iterable[str]) -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:10])
        more = " ..." if len(self.candidates) > 10 else ""
        super().__init__(f"prefix {prefix!r} is ambiguous: it matches {shown}{more}")


class LockTimeoutError(FlecheError, TimeoutError):
    """A lock on a key could not be acquired in time."""


class FlecheWarning(UserWarning):
    """Base of every warning issued by fleche."""


class CorruptEntryWarning(FlecheWarning):
    """A stored entry was corrupt, truncated or wrongly signed; it was treated as a miss."""


class LockTimeoutWarning(FlecheWarning):
    """A lock timed out and ``on_lock_timeout="compute"`` computed without it."""


class UnstorableResultWarning(FlecheWarning):
    """A computed result could not be stored; it was returned to the caller all the same."""
