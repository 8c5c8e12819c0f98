"""The value frame (``serialize.Codec``): every alteration of a frame is refused, whichever of
the two read paths (the small plain-pickle fast path or the general one) takes it."""

from __future__ import annotations

import pytest

from fleche.errors import IntegrityError
from fleche.storage.serialize import Codec

KEY = "0123456789abcdef" * 2
VALUES = [{"a": 1, "b": "x"}, "", None, 0, b"\x00" * 40, [1.5, (2, 3)]]


@pytest.mark.parametrize("value", VALUES, ids=repr)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_frame_round_trips_from_any_buffer(value: object, kind: type) -> None:
    codec = Codec()
    frame = codec.dumps_bytes(KEY, value)
    assert codec.loads(KEY, kind(frame)) == value


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_every_flipped_byte_is_refused(kind: type) -> None:
    codec = Codec()
    frame = codec.dumps_bytes(KEY, {"a": 1, "b": "x"})
    for position in range(len(frame)):
        altered = bytearray(frame)
        altered[position] ^= 0x40
        with pytest.raises(IntegrityError):
            codec.loads(KEY, kind(altered))


def test_every_truncation_and_extension_is_refused() -> None:
    codec = Codec()
    frame = codec.dumps_bytes(KEY, {"a": 1, "b": "x"})
    for end in range(len(frame)):
        with pytest.raises(IntegrityError):
            codec.loads(KEY, frame[:end])
    with pytest.raises(IntegrityError):
        codec.loads(KEY, frame + b"\x00")


def test_a_frame_read_under_another_key_is_refused() -> None:
    codec = Codec()
    frame = codec.dumps_bytes(KEY, "value")
    with pytest.raises(IntegrityError, match="checksum"):
        codec.loads("f" * 32, frame)


def test_an_unsigned_frame_is_refused_when_a_secret_key_is_set() -> None:
    frame = Codec().dumps_bytes(KEY, "value")
    with pytest.raises(IntegrityError, match="not signed"):
        Codec(secret_key="ab" * 16).loads(KEY, frame)


def test_compressed_frames_take_the_general_path_and_round_trip() -> None:
    codec = Codec(compress="zlib")
    value = {"text": "abc" * 1000}
    assert codec.loads(KEY, codec.dumps_bytes(KEY, value)) == value
