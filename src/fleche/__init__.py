"""fleche: a content-addressed memoization cache.

>>> from fleche import fleche
>>> @fleche
... def add(a, b):
...     return a + b
>>> add(1, 2)
3
"""

from __future__ import annotations

from .caches import BaseCache, Cache, RefreshingCache, VoidCache
from .call import Call, DigestedCall, Ignored, LazyCall, QueryCall, Required
from .composite import CachePool, CacheStack, FilteredCache, ReadOnlyCache, SizeLimitedCache
from .config import cache_from_config, cache_to_config, register_storage
from .digest import DIGEST_LENGTH, D, Digest, digest
from .errors import (
    AmbiguousDigestError,
    ConfigError,
    DigestError,
    FlecheError,
    FlecheWarning,
    IntegrityError,
    InvalidKeyError,
    LockTimeoutError,
    MissingDependencyError,
    Rejected,
    SaveError,
    StorageError,
    UsageError,
)
from .metadata import Environment, Git, Runtime, Tags
from .state import cache, meta, project, tags
from .wrapper import BoundWrapper, fleche

__version__ = "0.1.0"

__all__ = [
    "DIGEST_LENGTH",
    "AmbiguousDigestError",
    "BaseCache",
    "BoundWrapper",
    "Cache",
    "CachePool",
    "CacheStack",
    "Call",
    "ConfigError",
    "D",
    "Digest",
    "DigestError",
    "DigestedCall",
    "Environment",
    "FilteredCache",
    "FlecheError",
    "FlecheWarning",
    "Git",
    "Ignored",
    "IntegrityError",
    "InvalidKeyError",
    "LazyCall",
    "LockTimeoutError",
    "MissingDependencyError",
    "QueryCall",
    "ReadOnlyCache",
    "RefreshingCache",
    "Rejected",
    "Required",
    "Runtime",
    "SaveError",
    "SizeLimitedCache",
    "StorageError",
    "Tags",
    "UsageError",
    "VoidCache",
    "cache",
    "cache_from_config",
    "cache_to_config",
    "digest",
    "fleche",
    "meta",
    "project",
    "register_storage",
    "tags",
]
