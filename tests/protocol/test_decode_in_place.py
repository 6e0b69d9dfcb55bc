"""Big frames are decoded from a view of the receive buffer: same values, and the
buffer stays free to grow while the caller holds a decoded value.

``RawFrameDecoder.values`` decodes frames of ``DECODE_IN_PLACE_FROM`` bytes or
more (a log read or tail push) without copying them out of the buffer first.
A view left on the buffer would make its next ``+=`` raise BufferError, so
these tests receive data between two values of the same generator.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibroker.protocol.codec import (
    DECODE_IN_PLACE_FROM,
    HEADER,
    ProtocolError,
    RawFrameDecoder,
)


def frame(value: object) -> bytes:
    body = msgpack.packb(value)
    return HEADER.pack(len(body)) + body


def big(tag: int) -> dict[str, object]:
    return {"op": "records", "sub": tag, "data": bytes([tag]) * DECODE_IN_PLACE_FROM}


@given(
    st.lists(st.sampled_from([0, 10, DECODE_IN_PLACE_FROM, 3 * DECODE_IN_PLACE_FROM]), max_size=5)
)
def test_small_and_big_frames_decode_alike(sizes: list[int]) -> None:
    values = [{"i": i, "data": b"x" * size} for i, size in enumerate(sizes)]
    decoder = RawFrameDecoder(max_frame_bytes=1 << 24)
    decoder.receive_data(b"".join(frame(v) for v in values))
    assert list(decoder.values()) == values
    assert decoder.buffered_bytes == 0


def test_buffer_grows_while_a_big_value_is_held() -> None:
    decoder = RawFrameDecoder(max_frame_bytes=1 << 24)
    decoder.receive_data(frame(big(1)) + frame(big(2)))
    values = decoder.values()
    first = next(values)
    # The generator is suspended just after the first big frame: the reader
    # appends what arrived meanwhile, as the connections do.
    decoder.receive_data(frame(big(3)))
    assert [first, *values] == [big(1), big(2)]  # what was there when it started
    assert list(decoder.values()) == [big(3)]
    assert decoder.buffered_bytes == 0


def test_a_bad_big_frame_is_dropped_and_the_buffer_still_grows() -> None:
    body = msgpack.packb({"data": b"y" * DECODE_IN_PLACE_FROM}) + b"\xc1"  # one value too many
    decoder = RawFrameDecoder(max_frame_bytes=1 << 24)
    decoder.receive_data(HEADER.pack(len(body)) + body)
    with pytest.raises(ProtocolError):
        next(decoder.values())
    decoder.receive_data(frame(big(4)))
    assert list(decoder.values()) == [big(4)]
