"""Storages: what is stored (values, calls) joined with how (memory, files, SQL, Redis).

The names of fleche 0.22.2's storages load on first use (so importing fleche never imports
SQLAlchemy's dialects or the filesystem code it does not need):

>>> from fleche.storage import CallPickleFile, Sql, ValuePickleFile
>>> ValuePickleFile.__name__, CallPickleFile.__name__, Sql.__name__
('ValueFiles', 'CallFiles', 'CallSql')
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    CallMixin,
    CallStorage,
    Intent,
    KeyManagement,
    OperationContext,
    StorageBackend,
    ValueMixin,
    ValueStorage,
)
from .locking import PerKeyLockMixin, SerializingMixin
from .memory import CallMemory, MemoryBackend, ValueMemory
from .void import CallVoid, ValueVoid, VoidBackend

# names kept for code written against fleche 0.22.2 -> the module that defines them
_LAZY = {
    "ValuePickleFile": ".filesystem",
    "CallPickleFile": ".filesystem",
    "Sql": ".sql",
}

__all__ = [
    "CallMemory",
    "CallMixin",
    "CallStorage",
    "CallVoid",
    "Intent",
    "KeyManagement",
    "MemoryBackend",
    "OperationContext",
    "PerKeyLockMixin",
    "SerializingMixin",
    "StorageBackend",
    "ValueMemory",
    "ValueMixin",
    "ValueStorage",
    "ValueVoid",
    "VoidBackend",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
