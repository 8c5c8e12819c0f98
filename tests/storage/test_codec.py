"""The value frame (``serialize.Codec``): every alteration of a frame is refused, whichever of
the two read paths (the small plain-pickle fast path or the general one) takes it."""

from __future__ import annotations

import pickle

import pytest

from fleche.errors import IntegrityError
from fleche.storage.serialize import Codec, Frame

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


SMALL = [*VALUES, "é" * 50, {"nested": [{"deep": (1, 2.5, None)}]}, list(range(300))]


@pytest.mark.parametrize("value", SMALL, ids=lambda v: repr(v)[:24])
def test_a_small_frame_is_the_general_frame_made_shorter(value: object) -> None:
    codec = Codec()
    made = codec.small_frame(KEY, value, 32 * 1024)
    assert type(made) is bytes
    assert made == codec.dumps_bytes(KEY, value)
    assert codec.loads(KEY, made) == value


@pytest.mark.parametrize(
    ("codec", "value", "limit"),
    [
        (Codec(), "x" * 200, 100),  # over the limit
        (Codec(), pickle.PickleBuffer(bytearray(b"b" * 64)), 32 * 1024),  # an out-of-band buffer
        (Codec(secret_key="ab" * 16), "signed", 32 * 1024),
        (Codec(compress="zlib"), "compressed", 32 * 1024),
        (Codec(), lambda x: x, 32 * 1024),  # cloudpickle's
    ],
    ids=["over-limit", "buffer", "signed", "compressed", "cloudpickle"],
)
def test_any_other_frame_comes_back_as_a_frame_pickled_once(codec: Codec, value: object,
                                                            limit: int) -> None:  # fmt: skip
    made = codec.small_frame(KEY, value, limit)
    assert isinstance(made, Frame)
    blob = b"".join(made.parts())
    assert len(blob) == made.nbytes
    loaded = codec.loads(KEY, blob)
    if callable(value):
        assert loaded(3) == 3
    elif isinstance(value, pickle.PickleBuffer):
        assert bytes(loaded) == b"b" * 64
    else:
        assert loaded == value
        assert blob[:25] == codec.dumps_bytes(KEY, value)[:25]  # the same header, same flags
