"""Serialised values and call records: framing, checksums, HMAC signing, compression (SPEC 6).

A value frame is ``header + pickle + out-of-band buffers``. The header holds a magic, flags, the
xxh3-64 checksum of the key and every following byte, and (when signing) an HMAC-SHA256 over the
same. Loading verifies the signature *before* unpickling and the checksum always, so a torn,
altered or moved entry raises ``IntegrityError`` and is never deserialised. Values are pickled with
cloudpickle at protocol 5; large buffers (numpy arrays) travel out of band, without copies, and load
as views of the frame's buffer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import xxhash

from ..errors import ConfigError, IntegrityError, SaveError

__all__ = [
    "BackgroundChecksum",
    "Codec",
    "Frame",
    "check_record_digests",
    "dump_record",
    "load_record",
    "record_checksum",
    "secret_keys_from_env",
]

VALUE_MAGIC = b"FLV1"
RECORD_MAGIC = b"FLC1"
_FLAG_SIGNED, _FLAG_ZLIB, _FLAG_CLOUDPICKLE = 1, 2, 4
# magic, flags, number of out-of-band buffers, pickle length, checksum
_HEAD = struct.Struct("<4sBIQQ")
_PLAIN_HEAD = struct.Struct("<4sBIQ")  # the header before its checksum field
_LEN = struct.Struct("<Q")
_SIG_LEN = 32
_xxh3_64 = xxhash.xxh3_64_intdigest


class _Staged(threading.local):
    """A value whose frame was made, and is being written, before its key was known (see
    ``storage._staging``): ``write`` is that write, for this thread, or None. None is a class
    default: on a plain ``threading.local`` a missing attribute costs an AttributeError, its
    message formatted, at each look (1.2 us, five looks a miss)."""

    write: Any = None


STAGED = _Staged()


def secret_keys_from_env() -> list[bytes]:
    """Keys from ``FLECHE_SECRET_KEY``: colon-separated hex; the first signs, all verify."""
    raw = os.environ.get("FLECHE_SECRET_KEY", "")
    return parse_secret_keys(raw) if raw else []


def parse_secret_keys(raw: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Secret keys from a colon-separated hex string, bytes, or a list of either."""
    if isinstance(raw, bytes):
        return [raw]
    items = raw.split(":") if isinstance(raw, str) else list(raw)
    keys = []
    for item in items:
        if isinstance(item, bytes):
            keys.append(item)
            continue
        try:
            keys.append(bytes.fromhex(item.strip()))
        except ValueError:
            raise ConfigError("a secret key must be hex (FLECHE_SECRET_KEY=hex[:hex...])") from None
    if any(len(k) < 16 for k in keys):
        raise ConfigError("a secret key must be at least 16 bytes (32 hex characters)")
    return keys


def _pickled(value: Any) -> tuple[bytes, list[pickle.PickleBuffer], int]:
    """``value`` pickled at protocol 5 (large buffers out of band), by cloudpickle when plain
    pickle cannot; the frame flags that says which."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        return pickle.dumps(value, protocol=5, buffer_callback=buffers.append), buffers, 0
    except Exception:
        import cloudpickle  # by value: lambdas, local classes, functions of __main__

        buffers.clear()
        try:
            data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        except Exception as e:
            raise SaveError(f"cannot serialise {type(value).__qualname__}: {e}") from e
        return data, buffers, _FLAG_CLOUDPICKLE


class Codec:
    """Turns values into checked (and optionally signed, compressed) frames and back.

    ``secret_key`` (hex string, bytes or a list; default ``FLECHE_SECRET_KEY``) signs every value;
    ``compress`` is ``None`` or ``"zlib"``; ``level`` the zlib level.
    """

    def __init__(
        self,
        secret_key: str | bytes | Sequence[str | bytes] | None = None,
        compress: str | None = None,
        level: int = 3,
    ) -> None:
        self.keys = parse_secret_keys(secret_key) if secret_key else secret_keys_from_env()
        if compress not in (None, "zlib"):
            raise ConfigError(f"unknown compression {compress!r}; known: zlib")
        self.compress = compress
        self.level = level

    @property
    def signed(self) -> bool:
        """True when values are signed and signatures are required on load."""
        return bool(self.keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and (self.keys, self.compress) == (
            other.keys,
            other.compress,
        )

    __hash__ = None  # type: ignore[assignment]

    # --- writing ------------------------------------------------------------------------------
    def frame(self, key: str, value: Any) -> Frame:
        """The frame of ``value`` stored under ``key``, before its checksum is computed."""
        staged = getattr(STAGED, "write", None)
        if staged is not None and staged.value is value and staged.codec is self:
            made = staged.frame  # made ahead by this codec for this very object: not pickled again
            return Frame(key, made.head, made.body, made.secret)
        return self._frame(key, *_pickled(value))

    def _frame(self, key: str, data: bytes, buffers: list[pickle.PickleBuffer], flags: int
               ) -> Frame:  # fmt: skip
        views = [b.raw() for b in buffers]
        if self.compress == "zlib":
            flags |= _FLAG_ZLIB
            data = zlib.compress(data, self.level)
            views = [memoryview(zlib.compress(v, self.level)) for v in views]
        body: list[bytes | memoryview] = [b"".join(_LEN.pack(v.nbytes) for v in views), data]
        body.extend(views)
        if self.keys:
            flags |= _FLAG_SIGNED
        head = _HEAD.pack(VALUE_MAGIC, flags, len(views), len(data), 0)
        return Frame(key, head, body, self.keys[0] if self.keys else None)

    def small_frame(self, key: str, value: Any, limit: int) -> bytes | Frame:
        """The complete frame of ``value`` as bytes when it is a plain one of at most ``limit``
        bytes (unsigned, uncompressed, one pickle without out-of-band buffers: most arguments and
        results), else its :class:`Frame`; pickled once either way. The bytes are the same as
        ``b"".join(self.frame(key, value).parts())``, made without the general path's parts
        (a miss's small values, issue 7, W2)."""
        staged = getattr(STAGED, "write", None)
        if self.keys or self.compress or (staged is not None and staged.value is value):
            return self.frame(key, value)
        data, buffers, flags = _pickled(value)
        if flags or buffers or _HEAD.size + len(data) > limit:
            return self._frame(key, data, buffers, flags)
        head = _PLAIN_HEAD.pack(VALUE_MAGIC, 0, 0, len(data))
        return head + _LEN.pack(_xxh3_64(key.encode() + head + data)) + data

    def dumps(self, key: str, value: Any) -> list[bytes | memoryview]:
        """The frame of ``value`` stored under ``key``, as parts to write in order (no joins)."""
        return self.frame(key, value).parts()

    def dumps_bytes(self, key: str, value: Any) -> bytes:
        """The frame as one bytes object (for SQL and Redis, which take one blob)."""
        return b"".join(self.dumps(key, value))

    # --- reading ------------------------------------------------------------------------------
    def checker(self, key: str) -> FrameChecker | None:
        """A checksum to compute as the frame of ``key`` is read (``_files.read_file``), for
        ``loads``; None when the codec signs (a signed frame is verified after it is read)."""
        return None if self.keys else FrameChecker(key)

    def loads(self, key: str, frame: bytes | bytearray | memoryview,
              checker: FrameChecker | None = None) -> Any:  # fmt: skip
        """The value in ``frame``; ``IntegrityError`` if it is torn, altered or wrongly signed.
        ``checker``: the checksum of ``frame``'s bytes computed while they were read, if any."""
        if type(frame) is bytes and not self.keys and len(frame) >= _HEAD.size:
            # the usual small value: one plain pickle, unsigned, uncompressed, no buffers
            magic, flags, n_buffers, pickle_len, checksum = _HEAD.unpack_from(frame)
            if magic == VALUE_MAGIC and not flags and not n_buffers:
                if _HEAD.size + pickle_len != len(frame):
                    raise IntegrityError(f"entry {key}: length mismatch (truncated?)")
                hasher = xxhash.xxh3_64(key.encode())
                hasher.update(frame[: _HEAD.size - 8])
                hasher.update(frame[_HEAD.size :])
                if hasher.intdigest() != checksum:
                    raise IntegrityError(f"entry {key}: checksum mismatch (corrupt or truncated)")
                try:
                    return pickle.loads(frame[_HEAD.size :])
                except Exception as e:  # checksum passed: the writer's environment differs
                    raise IntegrityError(f"entry {key}: cannot be unpickled here ({e})") from e
        view = memoryview(frame).cast("B") if not isinstance(frame, bytes) else memoryview(frame)
        if view.nbytes < _HEAD.size or view[:4] != VALUE_MAGIC:
            raise IntegrityError(f"entry {key}: not a fleche value frame (truncated or foreign)")
        _, flags, n_buffers, pickle_len, checksum = _HEAD.unpack(view[: _HEAD.size])
        offset = _HEAD.size
        if flags & _FLAG_SIGNED or self.keys:
            if not flags & _FLAG_SIGNED:
                raise IntegrityError(f"entry {key}: not signed, but a secret key is set")
            if not self.keys:
                raise IntegrityError(f"entry {key}: signed, but no secret key is set to verify it")
            signature = bytes(view[offset : offset + _SIG_LEN])
            offset += _SIG_LEN
            body = view[offset:]
            head = view[: _HEAD.size]
            if not any(
                hmac.compare_digest(signature, _sign(k, key, head, [body])) for k in self.keys
            ):
                raise IntegrityError(f"entry {key}: bad signature; it was not unpickled")
        lengths_end = offset + _LEN.size * n_buffers
        if lengths_end + pickle_len > view.nbytes:
            raise IntegrityError(f"entry {key}: truncated")
        if _frame_checksum(key, view, offset, checker) != checksum:
            raise IntegrityError(f"entry {key}: checksum mismatch (corrupt or truncated)")
        lengths = [_LEN.unpack_from(view, offset + i * _LEN.size)[0] for i in range(n_buffers)]
        data = view[lengths_end : lengths_end + pickle_len]
        buffers = []
        position = lengths_end + pickle_len
        for length in lengths:
            buffers.append(view[position : position + length])
            position += length
        if position != view.nbytes:
            raise IntegrityError(f"entry {key}: length mismatch")
        if flags & _FLAG_ZLIB:
            data = memoryview(zlib.decompress(data))
            buffers = [memoryview(bytearray(zlib.decompress(b))) for b in buffers]
        try:
            return pickle.loads(data, buffers=buffers)
        except Exception as e:  # checksum passed: the writer's environment differs from ours
            raise IntegrityError(f"entry {key}: cannot be unpickled here ({e})") from e


class FrameChecker:
    """The checksum of an unsigned frame computed from its bytes in order, fed in pieces as they
    are read (the header's own checksum field left out, as ``_checksum`` leaves it), so a large
    value's check costs no time beside its read (issue 7, W4)."""

    __slots__ = ("_hasher", "_key", "nbytes")

    def __init__(self, key: str) -> None:
        self._key = key
        self._hasher: Any = None  # made on the first piece: most reads are small and feed none
        self.nbytes = 0

    def feed(self, piece: memoryview) -> None:
        """The next ``piece`` of the frame."""
        if self._hasher is None:
            self._hasher = xxhash.xxh3_64(self._key.encode())
        start, field, size = self.nbytes, _HEAD.size - 8, piece.nbytes  # field: bytes [17, 25)
        if start < _HEAD.size:
            self._hasher.update(piece[: max(0, field - start)])
            piece = piece[_HEAD.size - start :]
        self._hasher.update(piece)
        self.nbytes = start + size  # counted once hashed: a failed update leaves it short

    def spoil(self) -> None:
        """Mark it unusable (its feeding failed): ``loads`` then computes the checksum itself."""
        self.nbytes = -1

    def intdigest(self) -> int:
        """The checksum of what was fed (``loads`` uses it only when that was the whole frame)."""
        hasher = self._hasher or xxhash.xxh3_64(self._key.encode())
        return int(hasher.intdigest())


class Frame:
    """A value frame whose header still lacks its checksum: ``head`` (checksum zero), ``body``.

    ``parts()`` completes it at once. A large frame can instead be checksummed on a helper thread
    while its bytes are written (``checksum_in_background``; xxhash releases the GIL), its header
    written last, so hashing a 100 MB result costs no time beside the write (issue 7, W4).
    """

    __slots__ = ("body", "head", "key", "nbytes", "secret")

    def __init__(
        self, key: str, head: bytes, body: list[bytes | memoryview], secret: bytes | None
    ) -> None:
        self.key, self.head, self.body, self.secret = key, head, body, secret
        signature = _SIG_LEN if secret is not None else 0
        self.nbytes = len(head) + signature + sum(memoryview(part).nbytes for part in body)

    @property
    def signed(self) -> bool:
        return self.secret is not None

    def parts(self) -> list[bytes | memoryview]:
        """The complete frame, as parts to write in order."""
        head = self.completed_head(_checksum(self.key, self.head[:-8], self.body))
        parts: list[bytes | memoryview] = [head]
        if self.secret is not None:
            parts.append(_sign(self.secret, self.key, head, self.body))
        parts.extend(self.body)
        return parts

    def checksummed_head(self) -> bytes:
        """The completed header, its checksum computed here (the frame is not signed)."""
        return self.completed_head(_checksum(self.key, self.head[:-8], self.body))

    def completed_head(self, checksum: int) -> bytes:
        """The header carrying ``checksum`` (the same length as ``head``)."""
        return self.head[:-8] + _LEN.pack(checksum)

    def checksum_in_background(self) -> BackgroundChecksum:
        """Start hashing the body on a helper thread (unsigned frames only: a signature covers
        the header, so it must wait for the checksum)."""
        if self.secret is not None:
            raise ValueError("a signed frame is signed after its checksum; use parts()")
        return BackgroundChecksum(self)


class BackgroundChecksum:
    """The checksum of a frame's body, computed on a helper thread; ``head()`` waits for it."""

    __slots__ = ("_checksum", "_error", "_frame", "_thread")

    def __init__(self, frame: Frame) -> None:
        self._frame = frame
        self._checksum: int | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleche-checksum", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        frame = self._frame
        try:
            self._checksum = _checksum(frame.key, frame.head[:-8], frame.body)
        except BaseException as e:  # handed to the writer, which raises it in head()
            self._error = e

    def head(self) -> bytes:
        """The frame's completed header, once the body is hashed."""
        self._thread.join()
        if self._checksum is None:
            raise SaveError(f"cannot checksum the value {self._frame.key}: {self._error}")
        return self._frame.completed_head(self._checksum)

    def join(self) -> None:
        """Wait for the helper thread (after a failed write, before the buffers are let go)."""
        self._thread.join()


def _frame_checksum(key: str, view: memoryview, offset: int, checker: FrameChecker | None) -> int:
    """The checksum of the frame in ``view`` whose body starts at ``offset``: the one ``checker``
    computed while these very bytes were read (an unsigned frame, read whole), or computed here."""
    if checker is not None and offset == _HEAD.size and checker.nbytes == view.nbytes:
        return checker.intdigest()
    return _checksum(key, view[: _HEAD.size - 8], [view[offset:]])


def _checksum(key: str, head: bytes | memoryview, body: Iterable[bytes | memoryview]) -> int:
    hasher = xxhash.xxh3_64(key.encode())
    hasher.update(head)
    for part in body:
        hasher.update(part)
    return hasher.intdigest()


def _sign(secret: bytes, key: str, head: bytes | memoryview, body: Iterable[bytes | memoryview]
          ) -> bytes:  # fmt: skip
    mac = hmac.new(secret, key.encode(), hashlib.sha256)
    mac.update(head)
    for part in body:
        mac.update(part)
    return mac.digest()


# --- call records -----------------------------------------------------------------------------
def record_checksum(key: str, payload: bytes) -> int:
    """The checksum a call record carries: xxh3-64 of its key and its JSON bytes."""
    return xxhash.xxh3_64_intdigest(key.encode() + b"\0" + payload)


def dump_record(key: str, record: dict[str, Any]) -> bytes:
    """A call record as checked JSON bytes (call records are never pickled)."""
    payload = json.dumps(record, separators=(",", ":"), default=_json_default)
    data = payload.encode()
    return RECORD_MAGIC + _LEN.pack(record_checksum(key, data)) + data


def load_record(key: str, data: bytes | memoryview) -> dict[str, Any]:
    """Inverse of :func:`dump_record`; ``IntegrityError`` when the bytes fail their checksum."""
    data = bytes(data)
    if len(data) < 12 or data[:4] != RECORD_MAGIC:
        raise IntegrityError(f"call record {key}: not a fleche record (truncated or foreign)")
    (checksum,) = _LEN.unpack_from(data, 4)
    payload = data[12:]
    if record_checksum(key, payload) != checksum:
        raise IntegrityError(f"call record {key}: checksum mismatch (corrupt or truncated)")
    try:
        record = json.loads(payload)
    except ValueError as e:
        raise IntegrityError(f"call record {key}: invalid JSON ({e})") from e
    return check_record_digests(key, record)


_HEX = frozenset("0123456789abcdef")


def check_record_digests(key: str, record: Any) -> dict[str, Any]:
    """``record`` if its result and argument digests are full hex digests, else ``IntegrityError``.

    A checksum is no secret: a forged record could otherwise name a path (``../..``) as its
    result, which a file storage would read, and delete as corrupt.
    """
    try:
        digests = [*record["arguments"].values(), record.get("result") or "0" * 32]
    except (TypeError, KeyError, AttributeError) as e:
        raise IntegrityError(f"call record {key}: not a call record ({e!r})") from e
    for value in digests:
        if not (isinstance(value, str) and len(value) == 32 and _HEX.issuperset(value)):
            raise IntegrityError(f"call record {key}: {value!r:.60} is not a digest")
    return record


def _json_default(value: Any) -> Any:
    """Metadata must be JSON; anything else is stored as its repr (documented)."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)
