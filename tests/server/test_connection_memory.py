"""A connection that ends is freed at once, by reference counting (issue 14).

The session's ``wakeup`` is a bound method of its Connection, and the
Connection holds the session: a reference cycle. Left in place, every ended
connection (its session, decoder, sockets and whatever they still hold) waited
for the cycle collector, which in a long-running server runs its full
collection rarely: after the 1,000,000-frame fuzz (benchmarks/frame_fuzz.py) a
``gc.collect()`` gave back up to 15 MiB of RSS. Ending a connection now breaks
the cycle. Checked with the collector off, for a connection that hangs up and
for one the server closes on a bad frame.
"""

from __future__ import annotations

import gc
import struct
import weakref
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from raw_wire import RawClient

from minibroker.server.app import BrokerServer


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def open_session(
    server: BrokerServer, transport: str
) -> tuple[RawClient, weakref.ref[object], weakref.ref[object]]:
    if transport == "tcp":
        assert server.port is not None
        client = await RawClient.connect(server.port)
    else:
        client = RawClient(server.open_in_process_stream())
    await client.handshake()
    [session] = server.sessions.values()
    connection = session.wakeup.__self__  # type: ignore[attr-defined]
    return client, weakref.ref(session), weakref.ref(connection)


@pytest.mark.parametrize("transport", ["tcp", "memory"])
@pytest.mark.parametrize("ending", ["hang_up", "bad_frame"])
async def test_an_ended_connection_needs_no_cycle_collection(
    server: BrokerServer, no_cycle_collector: None, ending: str, transport: str
) -> None:
    client, session, connection = await open_session(server, transport)
    if ending == "hang_up":
        await client.aclose()
    else:
        body = b"\xc1" * 100  # never valid msgpack: bad_frame, and the server closes
        await client.send_bytes(struct.pack(">I", len(body)) + body)
        frames = await client.receive_until_eof()
        assert [f["code"] for f in frames] == ["bad_frame"]
        await client.aclose()
    with trio.fail_after(10):
        while server.sessions:
            await trio.testing.wait_all_tasks_blocked()
    assert session() is None
    assert connection() is None
