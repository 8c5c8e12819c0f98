"""Content digests: ``Digest``, ``digest()``, ``D()`` and the hook registry (SPEC section 2).

A value is turned into a canonical, type-tagged byte encoding by type-dispatched encoders that append
to one list; ``xxh3_128`` then runs once over the joined bytes. Large buffers (numpy arrays) are kept
out of the join and streamed into the hasher without a copy. Changing any encoding changes digests of
stored caches: bump ``SCHEME_VERSION`` and the golden digests in the tests together.
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime
import enum
import struct
import sys
import types
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import xxhash

from .errors import DigestError

if TYPE_CHECKING:  # imported lazily: a value of these types exists only once its module is loaded
    import fractions
    import uuid

__all__ = [
    "DIGEST_LENGTH",
    "SCHEME_VERSION",
    "D",
    "Digest",
    "Indigestible",
    "code_digest",
    "digest",
    "register",
    "unregister",
]

DIGEST_LENGTH = 32
"""Number of hex characters in a full digest (xxh3-128)."""

SCHEME_VERSION = 1
"""Version of the canonical encoding; stored with every persistent cache."""

Indigestible = DigestError
"""The name fleche 0.22.2 used for :class:`~fleche.errors.DigestError`."""

_HEX = frozenset("0123456789abcdef")
_HEX_ANY_CASE = frozenset("0123456789abcdefABCDEF")
_BIG = 1 << 20  # buffers from this size are streamed into the hasher instead of joined

_pack_q = struct.Struct("<q").pack
_pack_Q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_xxh3_hex = xxhash.xxh3_128_hexdigest


class Digest(str):
    """A digest in lowercase hex: 32 characters when full, fewer for a prefix (a short digest).

    A ``str`` subclass, so it prints, compares and slices as text; passed as an argument to a
    cached function, a full ``Digest`` stands for the value it names.

    >>> d = digest("hello")
    >>> d, len(d), d.is_full
    (D('5fe8f4f3d33e62dd9ef611b5498fbf10'), 32, True)
    >>> D(d[:6]), D(d[:6]).is_full
    (D('5fe8f4'), False)
    >>> digest(d) == d  # a full digest is the digest of the value it names
    True
    """

    __slots__ = ()

    @property
    def is_full(self) -> bool:
        """True for a complete digest, False for a prefix that a storage must expand."""
        return len(self) == DIGEST_LENGTH

    def __repr__(self) -> str:
        return f"D({str.__repr__(self)})"


class _Big:
    """A large buffer kept out of ``b"".join`` (which would copy it); streamed into the hasher."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view


class _Stream:
    """Large content produced in chunks when hashed (``chunks()`` yields buffers in order), so a
    layout that must be copied to be hashed is never copied whole."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: Callable[[], Any]) -> None:
        self.chunks = chunks


Encoder = Callable[[Any, list], None]
Hook = Callable[[Any], Any]

_hooks: dict[type, Hook] = {}
_entry_point_hooks: dict[str, Any] | None = None


def register(cls: type, hook: Hook) -> None:
    """Digest instances of ``cls`` (and subclasses) as ``hook(value)`` tagged with the class.

    The hook must be injective: two values it maps to one representation are one value to the cache.
    """
    _hooks[cls] = hook
    _reset_dispatch()


def unregister(cls: type) -> None:
    """Remove a hook added by :func:`register`."""
    _hooks.pop(cls, None)
    _reset_dispatch()


def _class_id(cls: type) -> bytes:
    name = f"{cls.__module__}:{cls.__qualname__}".encode()
    return _pack_Q(len(name)) + name


def _str_bytes(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return _pack_Q(len(b)) + b


# --- encoders of built-in types -------------------------------------------------------------------


def _enc_none(v: Any, out: list) -> None:
    out.append(b"N")


def _enc_ellipsis(v: Any, out: list) -> None:
    out.append(b"E")


def _enc_bool(v: bool, out: list) -> None:
    out.append(b"T" if v else b"F")


def _enc_int(v: int, out: list) -> None:
    if -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
        out.append(b"i" + _pack_q(v))
    else:
        b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        out.append(b"I" + _pack_Q(len(b)) + b)


def _enc_float(v: float, out: list) -> None:
    out.append(b"f" + _pack_d(v))


def _enc_complex(v: complex, out: list) -> None:
    out.append(b"c" + _pack_d(v.real) + _pack_d(v.imag))


def _enc_str(v: str, out: list) -> None:
    b = v.encode("utf-8", "surrogatepass")
    out.append(b"s" + _pack_Q(len(b)) + b)


def _buffer(tag: bytes, view: memoryview, out: list) -> None:
    out.append(tag + _pack_Q(view.nbytes))
    out.append(_Big(view) if view.nbytes >= _BIG else view)


def _enc_bytes(v: bytes, out: list) -> None:
    if len(v) >= _BIG:
        _buffer(b"b", memoryview(v), out)
    else:
        out.append(b"b" + _pack_Q(len(v)) + v)


def _enc_bytearray(v: bytearray, out: list) -> None:
    _buffer(b"y", memoryview(v), out)


def _enc_memoryview(v: memoryview, out: list) -> None:
    view = v.cast("B") if v.c_contiguous else memoryview(v.tobytes())
    _buffer(b"m", view, out)


def _enc_digest(v: Digest, out: list) -> None:
    if len(v) != DIGEST_LENGTH:
        raise DigestError(f"the short digest {str(v)!r} must be expanded before it is digested")
    out.append(b"D" + v.encode())


def _enc_sequence(tag: bytes) -> Encoder:
    def encode(v: Any, out: list) -> None:
        out.append(tag + _pack_Q(len(v)))
        for i, item in enumerate(v):
            try:
                _encode(item, out)
            except DigestError as e:
                raise e.at(f"[{i}]") from None

    return encode


def _sort_key(parts: list) -> bytes:
    try:
        return b"".join(parts)
    except TypeError:  # holds a large buffer: its digest orders it as well, without a copy
        return b"\xff" + _finish(parts).encode()


_first = itemgetter(0)  # a sort key that never compares the encodings that follow it


def _enc_dict(v: dict, out: list) -> None:
    items = []
    for key, value in v.items():
        try:
            if type(key) is str:  # the commonest key, encoded inline: the same bytes
                b = key.encode("utf-8", "surrogatepass")
                encoded = b"s" + _pack_Q(len(b)) + b
                k: list = [encoded]
            else:
                k = []
                _encode(key, k)
                encoded = _sort_key(k)
            val: list = []
            _encode(value, val)
        except DigestError as e:
            raise e.at(f"[{key!r}]") from None
        items.append((encoded, k, val))
    items.sort(key=_first)
    out.append(b"{" + _pack_Q(len(items)))
    for _, k, val in items:
        out.extend(k)
        out.extend(val)


def _enc_set(tag: bytes) -> Encoder:
    def encode(v: Any, out: list) -> None:
        elements = []
        for item in v:
            e: list = []
            try:
                _encode(item, e)
            except DigestError as err:
                raise err.at(f"{{{item!r}}}") from None
            elements.append((_sort_key(e), e))
        elements.sort(key=_first)
        out.append(tag + _pack_Q(len(elements)))
        for _, e in elements:
            out.extend(e)

    return encode


def _tagged(tag: bytes, cls: type, out: list) -> None:
    out.append(tag + _class_id(cls))


def _enc_fields(cls: type, pairs: list[tuple[str, Any]], out: list) -> None:
    _tagged(b"O", cls, out)
    out.append(_pack_Q(len(pairs)))
    for name, value in pairs:
        out.append(_str_bytes(name))
        try:
            _encode(value, out)
        except DigestError as e:
            raise e.at(f".{name}") from None


def _enc_dataclass(v: Any, out: list) -> None:
    _enc_fields(type(v), [(f.name, getattr(v, f.name)) for f in dataclasses.fields(v)], out)


def _enc_attrs(v: Any, out: list) -> None:
    _enc_fields(type(v), [(a.name, getattr(v, a.name)) for a in type(v).__attrs_attrs__], out)


def _enc_namedtuple(v: Any, out: list) -> None:
    _enc_fields(type(v), list(zip(type(v)._fields, v, strict=True)), out)


def _enc_enum(v: enum.Enum, out: list) -> None:
    _tagged(b"e", type(v), out)
    out.append(_str_bytes(v.name))


def _enc_canonical_text(text: Callable[[Any], str]) -> Encoder:
    def encode(v: Any, out: list) -> None:
        _tagged(b"t", type(v), out)
        out.append(_str_bytes(text(v)))

    return encode


def _datetime_text(v: datetime.datetime | datetime.time) -> str:
    return f"{v.isoformat()}|{v.tzinfo!s}|{v.fold}"


def _enc_timedelta(v: datetime.timedelta, out: list) -> None:
    _tagged(b"t", type(v), out)
    out.append(_pack_q(v.days) + _pack_q(v.seconds) + _pack_q(v.microseconds))


def _enc_fraction(v: fractions.Fraction, out: list) -> None:
    _tagged(b"O", type(v), out)
    _enc_int(v.numerator, out)
    _enc_int(v.denominator, out)


def _enc_uuid(v: uuid.UUID, out: list) -> None:
    _tagged(b"t", type(v), out)
    out.append(v.bytes)


def _enc_range_slice(v: range | slice, out: list) -> None:
    _tagged(b"O", type(v), out)
    for part in (v.start, v.stop, v.step):
        _encode(part, out)


def _enc_global(v: Any, out: list) -> None:
    """Functions, classes and other globals: module + qualified name."""
    module = str(getattr(v, "__module__", None) or "")
    qualname = str(getattr(v, "__qualname__", None) or getattr(v, "__name__", ""))
    out.append(b"G" + _str_bytes(module) + _str_bytes(qualname))
    if "<lambda>" in qualname or "<locals>" in qualname:
        # local functions share a qualified name: their code tells them apart
        out.append(code_digest(v).encode() if isinstance(v, types.FunctionType) else b"")


def _enc_method(v: types.MethodType, out: list) -> None:
    out.append(b"B")
    _encode(v.__func__, out)
    try:
        _encode(v.__self__, out)
    except DigestError as e:
        raise e.at(".__self__") from None


def _enc_module(v: types.ModuleType, out: list) -> None:
    out.append(b"M" + _str_bytes(v.__name__))


def _enc_code(v: types.CodeType, out: list) -> None:
    out.append(b"C" + _str_bytes(v.co_name) + _pack_Q(len(v.co_code)) + v.co_code)
    _encode(v.co_consts, out)
    _encode(v.co_names, out)
    _encode(v.co_varnames, out)


_BUILTIN: dict[type, Encoder] = {
    type(None): _enc_none,
    type(Ellipsis): _enc_ellipsis,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    memoryview: _enc_memoryview,
    Digest: _enc_digest,
    tuple: _enc_sequence(b"("),
    list: _enc_sequence(b"["),
    dict: _enc_dict,
    set: _enc_set(b"S"),
    frozenset: _enc_set(b"Z"),
    datetime.datetime: _enc_canonical_text(_datetime_text),
    datetime.time: _enc_canonical_text(_datetime_text),
    datetime.date: _enc_canonical_text(datetime.date.isoformat),
    datetime.timedelta: _enc_timedelta,
    range: _enc_range_slice,
    slice: _enc_range_slice,
    types.FunctionType: _enc_global,
    types.BuiltinFunctionType: _enc_global,
    types.MethodType: _enc_method,
    types.ModuleType: _enc_module,
    types.CodeType: _enc_code,
    type: _enc_global,
}
_dispatch: dict[type, Encoder] = dict(_BUILTIN)


def _reset_dispatch() -> None:
    _dispatch.clear()
    _dispatch.update(_BUILTIN)


def _encode(v: Any, out: list) -> None:
    encoder = _dispatch.get(type(v))
    if encoder is None:
        encoder = _dispatch[type(v)] = _resolve(type(v))
    encoder(v, out)


def _finish(out: list) -> Digest:
    try:
        return Digest(_xxh3_hex(b"".join(out)))
    except TypeError:
        pass
    hasher = xxhash.xxh3_128()
    pending: list = []
    for part in out:
        if type(part) is _Big:
            hasher.update(b"".join(pending))
            pending.clear()
            hasher.update(part.view)
        elif type(part) is _Stream:
            hasher.update(b"".join(pending))
            pending.clear()
            for view in part.chunks():
                hasher.update(view)
        else:
            pending.append(part)
    hasher.update(b"".join(pending))
    return Digest(hasher.hexdigest())


def digest(value: Any) -> Digest:
    """Return the content digest of ``value``: equal canonical forms give equal digests.

    >>> digest(1) == digest(1), digest(1) == digest(1.0)
    (True, False)

    Raises :class:`~fleche.errors.DigestError` for a value that cannot be digested.
    """
    if type(value) is Digest and len(value) == DIGEST_LENGTH:
        return value
    out: list = []
    try:
        _encode(value, out)
    except RecursionError:
        raise DigestError(
            "cannot digest a value with a reference cycle (or nested deeper than the recursion limit)"
        ) from None
    return _finish(out)


def digest_hex(value: Any) -> str:
    """``str(digest(value))`` without building a ``Digest``: the per-argument hot path."""
    encoder = _dispatch.get(type(value))
    if encoder is _enc_str:  # the commonest arguments, encoded inline: the same bytes
        b = value.encode("utf-8", "surrogatepass")
        return _xxh3_hex(b"s" + _pack_Q(len(b)) + b)
    if encoder is _enc_int and -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
        return _xxh3_hex(b"i" + _pack_q(value))
    if encoder is None or encoder is _enc_digest:
        return str(digest(value))
    out: list = []
    try:
        encoder(value, out)
    except RecursionError:
        return str(digest(value))  # raises the DigestError with its message
    try:
        return _xxh3_hex(out[0] if len(out) == 1 else b"".join(out))
    except TypeError:  # a large buffer: stream it
        return str(_finish(out))


def encode_into(value: Any, out: list) -> None:
    """Append the canonical encoding of ``value`` to ``out`` (used to build lookup keys)."""
    _encode(value, out)


def finish(out: list) -> Digest:
    """Digest an encoding built with :func:`encode_into`."""
    return _finish(out)


def D(value: Any) -> Digest:
    """A non-empty hex string of at most 32 characters as a ``Digest``; anything else digested.

    ``D("2024")`` is a prefix, not the digest of the string ``"2024"``; use ``digest("2024")`` for
    that. ``D(None)`` is the digest of ``None`` (how a query asks for a literal ``None``).

    >>> D("ABC1")
    D('abc1')
    """
    if type(value) is Digest:
        return value
    if (
        isinstance(value, str)
        and 0 < len(value) <= DIGEST_LENGTH
        and _HEX_ANY_CASE.issuperset(value)
    ):
        return Digest(value.lower())
    return digest(value)


def is_hex_key(key: object, *, full: bool = False) -> bool:
    """True when ``key`` is lowercase hex of a valid digest (or prefix) length."""
    if not isinstance(key, str) or not key or len(key) > DIGEST_LENGTH:
        return False
    if full and len(key) != DIGEST_LENGTH:
        return False
    return _HEX.issuperset(key)


# --- resolution of other types --------------------------------------------------------------------


def _hook_encoder(hook: Hook) -> Encoder:
    def encode(v: Any, out: list) -> None:
        _tagged(b"H", type(v), out)
        _encode(hook(v), out)

    return encode


def _method_encoder(v: Any, out: list) -> None:
    _tagged(b"H", type(v), out)
    _encode(v.__digest__(), out)


def _subclass_encoder(base: type, base_encoder: Encoder) -> Encoder:
    def encode(v: Any, out: list) -> None:
        _tagged(b"<", type(v), out)
        base_encoder(base(v), out)
        state = getattr(v, "__dict__", None)
        if state:
            _encode(state, out)

    return encode


def _entry_point_hook(cls: type) -> Hook | None:
    global _entry_point_hooks
    if _entry_point_hooks is None:
        from importlib.metadata import entry_points

        _entry_point_hooks = {ep.name: ep for ep in entry_points(group="fleche.digest")}
    if not _entry_point_hooks:
        return None
    for klass in cls.__mro__:
        ep = _entry_point_hooks.get(f"{klass.__module__}.{klass.__qualname__}")
        if ep is not None:
            hook = ep.load()
            return hook if callable(hook) else None
    return None


def _registered_hook(cls: type) -> Hook | None:
    for klass in cls.__mro__:
        if klass in _hooks:
            return _hooks[klass]
    if cls.__module__.startswith("pandas"):
        from . import _pandas  # registers the pandas hooks on first use

        _pandas.install()
        for klass in cls.__mro__:
            if klass in _hooks:
                return _hooks[klass]
    return None


def _numpy_encoder(cls: type) -> Encoder | None:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    if issubclass(cls, numpy.ndarray) or issubclass(cls, numpy.generic):
        from . import _numpy

        return _numpy.encode_array if issubclass(cls, numpy.ndarray) else _numpy.encode_scalar
    return None


def _resolve(cls: type) -> Encoder:
    """Find the encoder of a type outside the fast table, in the precedence of SPEC section 2."""
    hook = _registered_hook(cls) or _entry_point_hook(cls)
    if hook is not None:
        return _hook_encoder(hook)
    if callable(getattr(cls, "__digest__", None)):
        return _method_encoder
    return _rule_encoder(cls)


def _rule_encoder(cls: type) -> Encoder:
    numpy_encoder = _numpy_encoder(cls)
    if numpy_encoder is not None:
        return numpy_encoder
    if issubclass(cls, enum.Enum):
        return _enc_enum
    if dataclasses.is_dataclass(cls):
        return _enc_dataclass
    if hasattr(cls, "__attrs_attrs__"):
        return _enc_attrs
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _enc_namedtuple
    lazy = _LAZY.get((cls.__module__, cls.__qualname__))
    if lazy is not None:
        return lazy
    if any(f"{k.__module__}.{k.__qualname__}" == "pathlib.PurePath" for k in cls.__mro__):
        return _enc_canonical_text(str)
    if issubclass(cls, type):
        return _enc_global
    if hasattr(cls, "__next__"):
        return _refuse("iterators and generators cannot be digested (digesting would consume them)")
    for base in _SUBCLASSABLE:
        if issubclass(cls, base):
            return _subclass_encoder(base, _BUILTIN[base])
    return _enc_reduce


_SUBCLASSABLE = (
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    tuple,
    list,
    dict,
    set,
    frozenset,
)


# types of modules fleche does not import itself (decimal, fractions, uuid): by name, on first sight
_LAZY: dict[tuple[str, str], Encoder] = {
    ("decimal", "Decimal"): _enc_canonical_text(str),
    ("_decimal", "Decimal"): _enc_canonical_text(str),
    ("_pydecimal", "Decimal"): _enc_canonical_text(str),
    ("fractions", "Fraction"): _enc_fraction,
    ("uuid", "UUID"): _enc_uuid,
}


def _refuse(reason: str) -> Encoder:
    def encode(v: Any, out: list) -> None:
        raise DigestError(f"cannot digest {_type_name(v)}: {reason}")

    return encode


def _type_name(v: Any) -> str:
    cls = type(v)
    return f"an object of type {cls.__module__}.{cls.__qualname__}"


def _enc_reduce(v: Any, out: list) -> None:
    """Fallback: class identity plus the state the object's reduce protocol gives."""
    try:
        reduced = v.__reduce_ex__(4)
    except Exception as e:
        raise DigestError(
            f"cannot digest {_type_name(v)}: it has no digest hook, no __digest__ method and "
            f"cannot be reduced ({e})"
        ) from None
    if isinstance(reduced, str):  # a global singleton, named by its module
        out.append(b"G" + _str_bytes(getattr(v, "__module__", "") or "") + _str_bytes(reduced))
        return
    _tagged(b"R", type(v), out)
    constructor, args, *rest = reduced
    if constructor is not copyreg.__newobj__:  # type: ignore[attr-defined]
        _encode(constructor, out)
    _encode(args[1:] if args and args[0] is type(v) else args, out)
    for extra in rest[:3]:
        if extra is None:
            out.append(b"N")
        elif isinstance(extra, dict):
            _encode(extra, out)
        elif isinstance(extra, tuple | list):
            _encode(tuple(extra), out)
        else:  # list or dict items iterators
            _encode(list(extra), out)


def code_digest(func: Callable[..., Any]) -> Digest:
    """Digest of a function's code: bytecode, constants, names, defaults and captured variables.

    Bytecode differs between Python minor versions, so the digest includes the minor version.
    """
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    if code is None:
        raise DigestError(f"cannot digest the code of {func!r}: it has no __code__")
    out: list = [b"code" + _pack_Q(sys.version_info[0]) + _pack_Q(sys.version_info[1])]
    _enc_code(code, out)
    try:
        _encode(getattr(func, "__defaults__", None), out)
        _encode(getattr(func, "__kwdefaults__", None), out)
        cells = getattr(func, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells, strict=True):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell: the variable is not assigned yet
                out.append(b"N")
                continue
            if contents is func:  # a recursive local function
                out.append(b"self")
                continue
            try:
                _encode(contents, out)
            except DigestError as e:
                raise e.at(f"<closure {name!r}>") from None
    except RecursionError:
        raise DigestError(f"cannot digest the code of {func!r}: a reference cycle") from None
    return _finish(out)
