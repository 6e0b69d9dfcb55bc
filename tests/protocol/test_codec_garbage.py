"""Hostile input to the decoder: only frames, InvalidFrame or ProtocolError, in bounded memory.

Whatever a peer sends, the decoder must answer with one of three outcomes:
a request dataclass, an ``InvalidFrame`` (a readable map that is not a valid
request: the server answers with an error and goes on), or a
``ProtocolError`` (the stream is broken: the server closes the connection).
Any other exception would escape into the connection and is a bug. And it
must never buffer more than one maximal frame plus one received chunk.
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

# The server's request decoders, fast paths included (handlers register them).
from minibroker.protocol.codec import (
    HEADER_SIZE,
    FrameDecoder,
    FrameTooLarge,
    InvalidFrame,
    ProtocolError,
    RawFrameDecoder,
    decode_request,
    pack_frame,
)
from minibroker.protocol.frame_class import fields
from minibroker.protocol.frames import REQUESTS, Request

# The server's request decoders, fast paths included.
from minibroker.protocol.ops import REQUEST_DECODERS

MAX_FRAME = 256


def feed(decoder: FrameDecoder, chunks: list[bytes]) -> list[object]:
    """Feed chunks, draining after each; check outcomes and the buffer bound."""
    out: list[object] = []
    for chunk in chunks:
        try:
            decoder.receive_data(chunk)
            for frame in decoder.frames():
                assert isinstance(frame, Request | InvalidFrame), frame
                out.append(frame)
        except ProtocolError:
            return out
        # What stays buffered is at most one incomplete maximal frame.
        assert decoder.buffered_bytes < HEADER_SIZE + MAX_FRAME
        assert decoder.buffered_bytes <= HEADER_SIZE + MAX_FRAME + len(chunk)
    return out


@given(chunks=st.lists(st.binary(max_size=600), max_size=10))
def test_arbitrary_bytes(chunks: list[bytes]) -> None:
    feed(FrameDecoder(MAX_FRAME, decoders=REQUEST_DECODERS), chunks)


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@given(bodies=st.lists(st.binary(max_size=80), max_size=6), split=st.integers(0, 10_000))
def test_well_framed_random_bodies(bodies: list[bytes], split: int) -> None:
    """Valid length prefixes around random bytes reach the msgpack parser."""
    stream = b"".join(framed(body) for body in bodies)
    split %= len(stream) + 1
    feed(FrameDecoder(MAX_FRAME, decoders=REQUEST_DECODERS), [stream[:split], stream[split:]])


# Arbitrary msgpack values, including maps keyed by arrays and maps (valid
# msgpack, but unhashable in Python), extension types and deep nesting.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
raw_values = st.recursive(
    scalars | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(scalars, inner, max_size=3),
    max_leaves=10,
)
nested_names = st.sampled_from(["body", "key", "headers", "topic", "rid", "subject"])


def _request_like(op: str) -> st.SearchStrategy[dict[str, object]]:
    names = [f.name for f in fields(REQUESTS[op]) if f.name != "id"]
    values = scalars | raw_values | st.lists(st.dictionaries(nested_names, scalars, max_size=3))
    return st.fixed_dictionaries(
        {"op": st.just(op), "id": st.integers(0, 2**64 - 1) | scalars},
        optional=dict.fromkeys(names, values),
    )


# Maps that look like requests: a real op, its real field names, values of any type.
request_like = st.sampled_from(sorted(REQUESTS)).flatmap(_request_like)


@given(value=raw_values | request_like)
def test_any_msgpack_value(value: object) -> None:
    """Any msgpack value in a valid frame: a request, InvalidFrame or ProtocolError."""
    decoder = FrameDecoder(1 << 20, decoders=REQUEST_DECODERS)
    decoder.receive_data(pack_frame(value))  # type: ignore[arg-type]
    try:
        results = list(decoder.frames())
    except ProtocolError:
        assert type(value) is not dict
        return
    assert len(results) == 1
    if isinstance(results[0], InvalidFrame):
        assert results[0].error.code in {"bad_request", "unknown_op"}
    else:
        assert isinstance(value, dict)
        assert type(results[0]) is REQUESTS[value["op"]]


@given(value=request_like)
def test_request_like_maps_never_raise(value: dict[str, object]) -> None:
    result = decode_request(value)
    assert isinstance(result, Request | InvalidFrame)


def test_unhashable_map_key_is_a_protocol_error() -> None:
    # {[1]: 1}: a map keyed by an array.
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    decoder.receive_data(framed(b"\x81\x91\x01\x01"))
    with pytest.raises(ProtocolError, match="map key"):
        list(decoder.frames())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty frame"),
        (b"\xc1", "not valid msgpack: a byte that begins no msgpack value"),  # never used
        (b"\x80\x80", "more than one msgpack value"),
        (b"\x92\x01", "not valid msgpack"),  # truncated array
        (b"\x91" * 5000 + b"\xc0", "not valid msgpack: arrays or maps nested too deep"),
        (b"\xa2\xff\xfe", "not valid msgpack"),  # str that is not UTF-8
        (b"\x93\x01\x02\x03", "must be a msgpack map"),
        (b"\xc0", "must be a msgpack map"),
    ],
)
def test_broken_frames(body: bytes, message: str) -> None:
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    decoder.receive_data(framed(body))
    with pytest.raises(ProtocolError, match=message) as info:
        list(decoder.frames())
    assert info.value.code == "bad_frame"


def test_the_frame_after_a_broken_one_is_never_decoded() -> None:
    decoder = FrameDecoder(decoders=REQUEST_DECODERS)
    decoder.receive_data(framed(b"\xc1") + pack_frame({"op": "ping", "id": 1}))
    with pytest.raises(ProtocolError):
        list(decoder.frames())


# ------------------------------------------------------ the length limit


@given(limit=st.integers(0, 1 << 30), excess=st.integers(1, 1 << 20))
def test_oversized_length_refused_on_the_fourth_byte(limit: int, excess: int) -> None:
    """Refused as soon as the prefix is complete, before any body byte arrives."""
    decoder = RawFrameDecoder(limit)
    header = struct.pack(">I", limit + excess)
    for byte in header[:3]:
        decoder.receive_data(bytes([byte]))
    with pytest.raises(FrameTooLarge) as info:
        decoder.receive_data(header[3:])
    assert info.value.code == "too_large"
    assert info.value.details == {"limit": limit}
    assert str(limit + excess) in info.value.message


def test_length_at_the_limit_is_accepted() -> None:
    body = msgpack.packb({"op": "ping", "id": 1})
    decoder = FrameDecoder(len(body))
    decoder.receive_data(framed(body))
    assert len(list(decoder.frames())) == 1
    smaller = FrameDecoder(len(body) - 1)
    with pytest.raises(FrameTooLarge):
        smaller.receive_data(framed(body))


def test_oversized_frame_after_a_good_one_is_refused_before_its_body() -> None:
    decoder = FrameDecoder(MAX_FRAME, decoders=REQUEST_DECODERS)
    decoder.receive_data(pack_frame({"op": "ping", "id": 1}) + struct.pack(">I", MAX_FRAME + 1))
    frames = decoder.frames()
    assert next(frames) == REQUESTS["ping"](id=1)
    with pytest.raises(FrameTooLarge):
        next(frames)


def test_too_large_is_still_a_protocol_error() -> None:
    """The session closes the connection on any ProtocolError, this one included."""
    assert issubclass(FrameTooLarge, ProtocolError)


@given(
    sizes=st.lists(st.integers(0, MAX_FRAME - 2), min_size=1, max_size=20),
    chunk=st.integers(1, 97),
)
def test_buffer_holds_at_most_one_frame_plus_one_chunk(sizes: list[int], chunk: int) -> None:
    """Frames of every size up to the limit, read in small chunks, never pile up."""
    bodies = [msgpack.packb(b"x" * size) for size in sizes]  # bin 8: size + 2 bytes
    stream = b"".join(framed(body) for body in bodies)
    decoder = RawFrameDecoder(MAX_FRAME)
    received: list[object] = []
    for start in range(0, len(stream), chunk):
        piece = stream[start : start + chunk]
        decoder.receive_data(piece)
        assert decoder.buffered_bytes <= HEADER_SIZE + MAX_FRAME + len(piece)
        received.extend(decoder.values())
        assert decoder.buffered_bytes < HEADER_SIZE + MAX_FRAME
    assert received == [b"x" * size for size in sizes]
