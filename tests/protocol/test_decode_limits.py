"""Decode bombs: what a frame may make the server build, and that a refused one is freed.

Before hello only a hello-sized frame is accepted (anyone who can connect
may send it); after hello every array and map is bounded while decoding;
and a frame that is refused after decoding (a hello-sized array of 60,000
empty maps is 4 MB of Python objects) leaves nothing behind, not even for
the garbage collector to find.
"""

from __future__ import annotations

import gc
import struct
import tracemalloc
from collections.abc import Iterator

import msgpack
import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.protocol import frames
from minibroker.protocol.codec import (
    HEADER_SIZE,
    HELLO_MAX_FRAME_BYTES,
    MIN_CONTAINER_LEN,
    FrameDecoder,
    ProtocolError,
    container_limit_for,
    pack_frame,
)
from minibroker.storage import MemoryLog
from tests.protocol.helpers import Net

MiB = 1024 * 1024


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def empty_maps(count: int) -> bytes:
    """A msgpack array of ``count`` empty maps: one byte each on the wire."""
    return b"\xdd" + struct.pack(">I", count) + b"\x80" * count


def test_before_hello_a_big_frame_is_refused_on_its_length_prefix() -> None:
    net = Net()
    client = net.connect(hello=False)
    client.send_bytes(struct.pack(">I", 16 * MiB))
    (error,) = client.other
    assert error["code"] == "too_large"
    assert error["details"] == {"limit": HELLO_MAX_FRAME_BYTES}
    assert client.session.closing is not None
    # Nothing of the body is waited for, let alone buffered.
    assert client.session._decoder.buffered_bytes <= HEADER_SIZE


def test_a_hello_of_the_largest_size_passes_and_then_big_frames_do() -> None:
    net = Net()
    client = net.connect(hello=False)
    hello = {"op": "hello", "id": 1, "version": frames.PROTOCOL_VERSION, "client": "x"}
    overhead = len(pack_frame({**hello, "token": ""})) - HEADER_SIZE
    # An unused token is ignored without authentication: it only makes the frame big.
    hello["token"] = "t" * (HELLO_MAX_FRAME_BYTES - overhead - 2)
    frame = pack_frame(hello)
    assert len(frame) - HEADER_SIZE == HELLO_MAX_FRAME_BYTES
    client.send_bytes(frame)
    assert client.result(1)["server"] == "minibroker"
    big = b"x" * (4 * HELLO_MAX_FRAME_BYTES)
    assert client.call("ping", data=big) == big


def test_a_container_over_the_limit_is_refused_while_decoding() -> None:
    limits = Limits(max_batch=1000)
    limit = container_limit_for(limits.max_batch)
    assert limit == 2000
    client = Net(Broker(CoreConfig(limits=limits), memory_log=MemoryLog)).connect()
    client.send_bytes(framed(b"\x83\xa2op\xa4ping\xa2id\x02\xa4junk" + empty_maps(limit + 1)))
    (error,) = client.other
    assert error["code"] == "bad_frame"
    assert f"more than {limit} elements" in error["message"]
    assert client.session.closing is not None


def test_a_batch_just_over_max_batch_still_gets_bad_request() -> None:
    client = Net(Broker(CoreConfig(limits=Limits(max_batch=1000)), memory_log=MemoryLog)).connect()
    client.call("queue.declare", queue="q")
    messages = [{"body": b""}] * 1001
    assert client.error("put", queue="q", messages=messages).code == "bad_request"
    assert client.session.closing is None


def test_containers_are_bounded_at_twice_the_batch_or_a_floor() -> None:
    assert container_limit_for(100_000) == 200_000
    assert container_limit_for(2) == MIN_CONTAINER_LEN


def test_a_short_frame_skips_the_container_check_it_cannot_fail() -> None:
    """Frames no longer than the limit decode on the unchecked fast path, and may."""
    decoder = FrameDecoder(max_container_len=100)
    decoder.receive_data(framed(b"\x82\xa2op\xa4ping\xa2id\x01"))
    assert [type(f).__name__ for f in decoder.frames()] == ["Ping"]
    body = msgpack.packb({"op": "ping", "id": 1, "data": [None] * 101})
    decoder.receive_data(framed(body))
    with pytest.raises(ProtocolError, match="more than 100 elements"):
        list(decoder.frames())


@pytest.fixture
def no_garbage_collector(traced_memory: None) -> Iterator[None]:
    """What is not freed by reference counting alone is counted as kept."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_garbage_collector")
def test_a_refused_value_is_freed_at_once() -> None:
    """A hello-sized frame decoding to 60,000 empty maps is refused, and its 4 MB freed.

    The value is refused only after decoding (it is not a map), so it
    exists for a moment; keeping the ProtocolError with its traceback would
    keep the value alive through the traceback's frames.
    """
    net = Net()
    client = net.connect(hello=False)
    bomb = framed(empty_maps(HELLO_MAX_FRAME_BYTES - 5))
    before, _ = tracemalloc.get_traced_memory()
    client.send_bytes(bomb)
    after, peak = tracemalloc.get_traced_memory()
    (error,) = client.other
    assert error["code"] == "bad_frame"
    assert client.session.closing is not None
    assert peak - before > 3 * MiB  # the value was built...
    assert after - before < 512 * 1024  # ...and is gone


@pytest.mark.usefixtures("no_garbage_collector")
def test_a_value_refused_by_its_handler_is_freed_at_once() -> None:
    """After hello, a valid frame whose field is junk: answered, connection open, freed."""
    client = Net().connect()
    before, _ = tracemalloc.get_traced_memory()
    rid = client.send("queue.declare", queue=[{}] * 60_000)
    assert client.response(rid)["code"] == "bad_request"
    after, _ = tracemalloc.get_traced_memory()
    assert client.session.closing is None
    assert after - before < 512 * 1024
