"""Every frame type survives encode -> bytes -> decode, however the stream is cut.

The strategies are derived from each frame dataclass's annotations (the same
annotations the decoder is compiled from), so a frame added to frames.py is
covered here without touching this file. Requests go through the server's
``FrameDecoder``; server frames (responses and pushes) through the clients'
``RawFrameDecoder`` followed by ``DECODERS``.
"""

from __future__ import annotations

import itertools
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibroker.protocol import frames
from minibroker.protocol.codec import (
    HEADER_SIZE,
    FrameDecoder,
    InvalidFrame,
    RawFrameDecoder,
    encode,
    pack_frame,
)
from minibroker.protocol.frame_class import fields, is_frame_class
from minibroker.protocol.frames import DECODERS, REQUEST_TYPES, SERVER_FRAME_TYPES

# The server's request decoders, fast paths included.
from minibroker.protocol.ops import REQUEST_DECODERS

INT_MIN = -(2**63)
UINT_MAX = 2**64 - 1

texts = st.text(max_size=12)
#: What msgpack can carry in an untyped field (``Ok.result``, ``Error.details``).
msgpack_values: st.SearchStrategy[object] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, UINT_MAX)
    | st.floats(allow_nan=False)
    | texts
    | st.binary(max_size=32),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def strategy_for(annotation: object, name: str = "") -> st.SearchStrategy[Any]:
    """Values of one annotated field, covering its whole wire type."""
    if name in {"id", "rid", "sub"} and annotation is int:
        # Ids are unsigned on the wire (a request with a negative id is invalid).
        return st.integers(0, UINT_MAX)
    if annotation is str:
        return texts
    if annotation is bytes:
        return st.binary(max_size=64)
    if annotation is int:
        return st.integers(INT_MIN, UINT_MAX)
    if annotation is float:
        return st.floats(allow_nan=False)
    if annotation is bool:
        return st.booleans()
    if annotation is Any or annotation is object:
        return msgpack_values
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else strategy_for(a, name) for a in args])
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(texts, texts, max_size=3)
    if origin is Literal:
        return st.sampled_from(args)
    if is_frame_class(annotation):
        assert isinstance(annotation, type)
        return frame_strategy(annotation)
    raise AssertionError(f"no strategy for {annotation!r}: extend strategy_for")


def frame_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    strategies = {f.name: strategy_for(hints[f.name], f.name) for f in fields(cls)}
    return st.builds(cls, **strategies)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given positions (sorted, deduplicated)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode_requests(chunks: list[bytes]) -> list[object]:
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    out: list[object] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        out.extend(decoder.frames())
    assert decoder.buffered_bytes == 0
    return out


def decode_server_frames(chunks: list[bytes]) -> list[object]:
    decoder = RawFrameDecoder()
    out: list[object] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        out.extend(DECODERS[value["op"]](value, "") for value in decoder.values())
    assert decoder.buffered_bytes == 0
    return out


cut_points = st.lists(st.integers(min_value=0), max_size=12)
#: The per-type tests run once per frame type (37 of them): a third of the
#: profile's examples each keeps the module at a few seconds by default.
per_type = settings(max_examples=max(10, settings().max_examples // 3))


@pytest.mark.parametrize("cls", REQUEST_TYPES, ids=lambda c: c.op)
@per_type
@given(data=st.data(), cuts=cut_points)
def test_request_round_trip(cls: type, data: st.DataObject, cuts: list[int]) -> None:
    frame = data.draw(frame_strategy(cls))
    decoded = decode_requests(cut(encode(frame), cuts))
    assert decoded == [frame]
    assert type(decoded[0]) is cls


@pytest.mark.parametrize("cls", SERVER_FRAME_TYPES, ids=lambda c: c.op)
@per_type
@given(data=st.data(), cuts=cut_points)
def test_server_frame_round_trip(cls: type, data: st.DataObject, cuts: list[int]) -> None:
    frame = data.draw(frame_strategy(cls))
    decoded = decode_server_frames(cut(encode(frame), cuts))
    assert decoded == [frame]


any_request = st.one_of([frame_strategy(cls) for cls in REQUEST_TYPES])
any_server_frame = st.one_of([frame_strategy(cls) for cls in SERVER_FRAME_TYPES])


@given(batch=st.lists(any_request, min_size=1, max_size=8), cuts=cut_points)
def test_pipelined_requests_under_any_chunking(batch: list[object], cuts: list[int]) -> None:
    stream = b"".join(encode(frame) for frame in batch)
    assert decode_requests(cut(stream, cuts)) == batch


@given(batch=st.lists(any_server_frame, min_size=1, max_size=8), cuts=cut_points)
def test_server_stream_under_any_chunking(batch: list[object], cuts: list[int]) -> None:
    stream = b"".join(encode(frame) for frame in batch)
    assert decode_server_frames(cut(stream, cuts)) == batch


@given(batch=st.lists(any_request, min_size=1, max_size=8))
def test_byte_at_a_time(batch: list[object]) -> None:
    stream = b"".join(encode(frame) for frame in batch)
    assert decode_requests([stream[i : i + 1] for i in range(len(stream))]) == batch


@given(frame=any_request)
def test_length_prefix_is_big_endian_body_length(frame: object) -> None:
    data = encode(frame)
    assert int.from_bytes(data[:HEADER_SIZE], "big") == len(data) - HEADER_SIZE


def test_every_frame_type_is_covered() -> None:
    """The parametrized tests above really see every op of frames.py."""
    assert {cls.op for cls in REQUEST_TYPES} == set(frames.REQUESTS)
    assert {cls.op for cls in SERVER_FRAME_TYPES} == set(frames.SERVER_FRAMES)


def test_nil_fields_are_left_out_and_mean_default() -> None:
    data = encode(frames.Hello(id=7, version=1))
    decoder = RawFrameDecoder()
    decoder.receive_data(data)
    (value,) = decoder.values()
    assert value == {"op": "hello", "id": 7, "version": 1, "client": ""}
    assert next(iter(value)) == "op"
    # An explicit nil decodes exactly like an absent key.
    request = FrameDecoder(decoders=REQUEST_DECODERS)
    request.receive_data(pack_frame({"op": "hello", "id": 7, "version": 1, "token": None}))
    assert list(request.frames()) == [frames.Hello(id=7, version=1)]


def test_invalid_frame_is_not_a_request() -> None:
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    decoder.receive_data(encode(frames.Ok(id=3, result=1)))
    (result,) = decoder.frames()
    assert isinstance(result, InvalidFrame)
    assert result.id == 3
    assert result.error.code == "unknown_op"
