"""Digests of numpy arrays and scalars, imported only when a numpy value is digested.

Contiguous arrays are hashed through the buffer protocol without a copy; other layouts are streamed
in C order in bounded chunks, so C- and Fortran-ordered equal arrays agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .digest import _BIG, _Big, _class_id, _encode, _pack_Q, _str_bytes, _Stream
from .errors import DigestError

_CHUNK = 4 << 20  # a copied chunk may live beside the next one: at most 8 MiB extra in all


def _dtype_text(dtype: np.dtype) -> str:
    return str(dtype.descr) if dtype.fields is not None else dtype.str


def _header(a: np.ndarray, tag: bytes) -> bytes:
    head = tag + _str_bytes(_dtype_text(a.dtype)) + _pack_Q(a.ndim)
    head += b"".join(_pack_Q(n) for n in a.shape)
    if type(a) is not np.ndarray:
        head += _class_id(type(a))
    return head


def _append(view: memoryview, out: list) -> None:
    out.append(_Big(view) if view.nbytes >= _BIG else view)


def encode_array(a: np.ndarray, out: list) -> None:
    """Append dtype, shape and the logical content (C order) of ``a``."""
    if a.dtype.hasobject:
        out.append(_header(a, b"A"))
        for i, item in enumerate(a.ravel(order="C")):
            try:
                _encode(item, out)
            except DigestError as e:
                raise e.at(f"[{i}]") from None
        return
    out.append(_header(a, b"a") + _pack_Q(a.nbytes))
    if a.flags.c_contiguous:
        _append(a.reshape(-1).view(np.uint8).data, out)
        return
    rows = max(1, _CHUNK // max(1, a[0].nbytes)) if a.ndim else 1

    def chunks() -> Any:
        for start in range(0, len(a), rows):
            yield np.ascontiguousarray(a[start : start + rows]).reshape(-1).view(np.uint8).data

    if a.nbytes <= _CHUNK:
        for chunk in chunks():
            _append(chunk, out)
    else:  # copied one chunk at a time while hashed, never all at once
        out.append(_Stream(chunks))


def encode_scalar(v: Any, out: list) -> None:
    """numpy scalars differ from Python numbers: their dtype is part of the digest."""
    if v.dtype.hasobject:
        _encode(v.item(), out)
        return
    data = np.asarray(v).tobytes()
    out.append(b"n" + _str_bytes(_dtype_text(v.dtype)) + _pack_Q(len(data)) + data)
