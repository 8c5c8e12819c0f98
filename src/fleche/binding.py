"""Precompiled argument binders: ``inspect.Signature.bind`` kept off the hot path (SPEC section 4).

A binder maps ``(args, kwargs)`` to the argument values in signature order with defaults applied.
Simple signatures (no ``*args``/``**kwargs``) get a fast path; anything unusual, including every
call that is an error, goes through ``inspect`` so the messages are Python's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Binder"]

_EMPTY = inspect.Parameter.empty
_SIMPLE = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Binder:
    """Bind calls to one signature; ``names`` gives the parameter names in order."""

    __slots__ = ("_defaults", "_index", "_n", "_simple", "names", "signature")

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        self.signature = signature
        self.names: tuple[str, ...] = tuple(p.name for p in params)
        self._n = len(params)
        self._simple = all(p.kind in _SIMPLE for p in params)
        self._defaults = tuple(p.default for p in params)
        self._index = {
            p.name: i
            for i, p in enumerate(params)
            if p.kind is not inspect.Parameter.POSITIONAL_ONLY
        }

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | list[Any]:
        """Argument values in signature order (defaults applied); TypeError like Python's."""
        if self._simple:
            if not kwargs and len(args) == self._n:
                return args
            values = self._bind_simple(args, kwargs)
            if values is not None:
                return values
        return self._bind_slow(args, kwargs)

    def _bind_simple(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        n = len(args)
        if n > self._n:
            return None
        values = list(args)
        values.extend(self._defaults[n:])
        index = self._index
        for name, value in kwargs.items():
            i = index.get(name)
            if i is None or i < n:
                return None  # unknown or given twice: let inspect raise the right TypeError
            values[i] = value
        if any(v is _EMPTY for v in values[n:]):
            return None  # a required argument is missing
        return values

    def _bind_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return [bound.arguments[name] for name in self.names]

    def bind_partial(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Only the arguments given (no defaults): what a query template binds."""
        return dict(self.signature.bind_partial(*args, **kwargs).arguments)

    def unbind(self, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` that call the function with the given argument values."""
        bound = inspect.BoundArguments(self.signature, values)
        return bound.args, bound.kwargs


def signature_of(func: Callable[..., Any]) -> inspect.Signature:
    """The signature used to bind calls (``follow_wrapped`` so decorators do not hide it)."""
    return inspect.signature(func)
