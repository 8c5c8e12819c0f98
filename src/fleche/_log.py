"""Loggers that import :mod:`logging` when the first message is logged, not at ``import fleche``
(``logging`` brings ``re``, ``traceback`` and more: a fifth of the import time)."""

from __future__ import annotations

from typing import Any


class LazyLogger:
    """Stands for ``logging.getLogger(name)``; every attribute is the real logger's."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self.name)
        return getattr(logger, attribute)


def get_logger(name: str) -> Any:
    """The logger of module ``name``, created on first use."""
    return LazyLogger(name)
