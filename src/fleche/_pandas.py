"""Digest hooks for pandas objects, registered the first time a pandas value is digested."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .digest import register


def _index(index: pd.Index) -> tuple:
    return (type(index).__name__, str(index.dtype), index.names, index.to_numpy())


def _series(s: pd.Series) -> tuple:
    return (str(s.dtype), s.name, _index(s.index), s.to_numpy())


def _frame(df: pd.DataFrame) -> tuple:
    columns = tuple(_series(df.iloc[:, i]) for i in range(df.shape[1]))
    return (_index(df.columns), _index(df.index), columns)


def _scalar(v: Any) -> Any:
    return str(v) if v is not pd.NaT else None


def install() -> None:
    """Register the hooks (idempotent)."""
    register(pd.DataFrame, _frame)
    register(pd.Series, _series)
    register(pd.Index, _index)
    register(pd.Timestamp, _scalar)
    register(pd.Timedelta, _scalar)
