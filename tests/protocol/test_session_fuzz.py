"""Fuzz the decoder behind a live session: whatever arrives, in whatever pieces.

A stream mixes well-formed requests, request-like maps with junk values,
arbitrary msgpack values, raw bytes, oversized length prefixes and decode
bombs, cut into random chunks, before and after hello. Whatever happens,
``receive_data`` never raises, the session holds no more than one frame
(a hello-sized one before hello), every frame it writes decodes and fits
its limit, an error that ends the connection is the last thing said, and a
connection that survives still answers a ping. The long run (a million
frames through a real server) is ``python -m benchmarks.frame_fuzz``; see
docs/reliability.md.
"""

from __future__ import annotations

import itertools
import struct

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

import minibroker.protocol.handlers  # noqa: F401 (registers the fast-path decoders)
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.protocol.codec import (
    HEADER_SIZE,
    HELLO_MAX_FRAME_BYTES,
    container_limit_for,
    pack_frame,
)
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.protocol.session import SessionSettings
from minibroker.storage import MemoryLog
from tests.protocol.helpers import Net
from tests.protocol.test_codec_garbage import raw_values, request_like

MAX_FRAME = 4096
LIMITS = Limits(max_batch=600)
CONTAINER_LIMIT = container_limit_for(LIMITS.max_batch)


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


HELLO = pack_frame({"op": "hello", "id": 0, "version": PROTOCOL_VERSION, "client": "fuzz"})
valid_requests = st.sampled_from(
    [
        {"op": "ping", "data": b"p"},
        {"op": "queue.declare", "queue": "fz"},
        {"op": "put", "queue": "fz", "messages": [{"body": b"m"}]},
        {"op": "fetch", "queue": "fz", "max_messages": 2},
        {"op": "publish", "topic": "fz.t", "messages": [{"body": b"t"}]},
        {"op": "subscribe", "pattern": "fz.#", "buffer_bytes": 1000},
        {"op": "log.create", "log": "fz"},
        {"op": "append", "log": "fz", "records": [{"body": b"r"}]},
        {"op": "read", "log": "fz", "start": 0},
    ]
)


@st.composite
def pieces(draw: st.DrawFn) -> bytes:
    """One frame's worth of bytes, well formed or not."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        request = dict(draw(valid_requests))
        return pack_frame({**request, "id": draw(st.integers(1, 1000))})
    if kind == 1:
        return pack_frame(draw(request_like))
    if kind == 2:
        return pack_frame(draw(raw_values))  # type: ignore[arg-type]
    if kind == 3:
        return framed(draw(st.binary(max_size=64)))
    if kind == 4:
        return draw(st.binary(max_size=64))  # no framing at all
    if kind == 5:
        return struct.pack(">I", draw(st.integers(MAX_FRAME + 1, 2**32 - 1)))
    # Bombs: one container longer than any request's (refused while
    # decoding), or several within the bound (decoded, then refused).
    count = draw(st.integers(CONTAINER_LIMIT + 1, CONTAINER_LIMIT + 700))
    if draw(st.booleans()):
        return framed(b"\x81\xa1x" + empty_maps(count))
    return framed(b"\x81\xa1x\x93" + empty_maps(count // 3) * 3)


def empty_maps(count: int) -> bytes:
    return b"\xdc" + struct.pack(">H", count) + b"\x80" * count


@settings(max_examples=200, deadline=None)
@given(
    hello_first=st.booleans(),
    stream=st.lists(pieces(), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_whatever_arrives_the_session_answers_within_its_limits(
    hello_first: bool, stream: list[bytes], cuts: list[int]
) -> None:
    net = Net(Broker(CoreConfig(limits=LIMITS), memory_log=MemoryLog))
    client = net.connect(hello=False, settings=SessionSettings(max_frame_bytes=MAX_FRAME))
    session = client.session
    data = (HELLO if hello_first else b"") + b"".join(stream)
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    received: list[dict[str, object]] = []
    for start, end in itertools.pairwise(bounds):
        session.receive_data(data[start:end], net.now)  # never raises
        limit = MAX_FRAME if session.namespace is not None else HELLO_MAX_FRAME_BYTES
        if session.closing is None:
            assert session.pending_input_bytes <= HEADER_SIZE + min(limit, MAX_FRAME)
        output = session.data_to_send()
        pos = 0
        while pos < len(output):
            (length,) = struct.unpack_from(">I", output, pos)
            assert length <= MAX_FRAME
            frame = msgpack.unpackb(output[pos + HEADER_SIZE : pos + HEADER_SIZE + length])
            assert isinstance(frame, dict)
            assert frame["op"] in {"ok", "error", "msg", "notice", "bye"}
            received.append(frame)
            pos += HEADER_SIZE + length
    assert not any(f.get("code") == "internal" for f in received), received
    if session.closing is not None:
        # The error that ends the connection is the last frame written.
        last = received[-1]
        assert last["op"] == "error"
        if last["code"] in {"bad_frame", "too_large"}:
            assert "id" not in last  # the stream broke: no request to answer
        else:  # a refused hello
            assert last["code"] in {"unsupported_version", "unauthorized"}
        return
    if session.pending_input_bytes:
        return  # the stream ended inside a frame: the session waits for its rest
    client.send_bytes(HELLO)  # a second hello is refused, a first one accepted
    assert client.call("ping", data=b"still here") == b"still here"
