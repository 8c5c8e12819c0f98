"""Storages: what is stored (values, calls) joined with how (memory, files, SQL, Redis)."""

from __future__ import annotations

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
