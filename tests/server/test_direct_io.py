"""DirectSocket: non-blocking writes and checkpoint-light reads on a Trio TCP stream.

The broker and the Trio client write through it; these tests pin the
contract they rely on: a write never blocks (it reports how much the kernel
took), a read returns what arrived or b"" at EOF, and a vanished or closed
peer shows up as Trio's own stream errors.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import trio
import trio.testing
from raw_wire import RawClient, StartServer, ping

import minibroker
from minibroker import direct_io
from minibroker.direct_io import DirectSocket, direct_socket
from minibroker.errors import ConnectionClosed
from minibroker.server.memory_stream import memory_stream_pair


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        client_box: list[trio.SocketStream] = []

        async def connect() -> None:
            client_box.append(await trio.open_tcp_stream("127.0.0.1", port))

        nursery.start_soon(connect)
        server = await listener.accept()
    await listener.aclose()
    return client_box[0], server


async def test_only_plain_tcp_streams_get_direct_io() -> None:
    client, server = await tcp_pair()
    left, right = memory_stream_pair()
    try:
        assert isinstance(direct_socket(client), DirectSocket)
        assert direct_socket(left) is None
    finally:
        await client.aclose()
        await server.aclose()
        await left.aclose()
        await right.aclose()


async def test_write_then_read_round_trip() -> None:
    client, server = await tcp_pair()
    writer, reader = DirectSocket(client), DirectSocket(server)
    assert writer.try_write(b"hello") == 5
    assert await reader.receive_some(100) == b"hello"
    await client.aclose()
    assert await reader.receive_some(100) == b""  # EOF
    await server.aclose()


async def test_a_full_socket_takes_part_of_a_write_and_then_nothing() -> None:
    client, server = await tcp_pair()
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = DirectSocket(client)
    chunk = b"x" * 1_000_000
    total = 0
    with trio.fail_after(5):
        while (sent := writer.try_write(chunk)) > 0:  # never blocks
            assert sent <= len(chunk)
            total += sent
    assert 0 < total < 50_000_000
    assert writer.try_write(b"more") == 0
    # The peer drains what was written; every byte arrives in order.
    received = 0
    reader = DirectSocket(server)
    with trio.fail_after(10):
        while received < total:
            received += len(await reader.receive_some(1 << 20))
    assert received == total
    await client.aclose()
    await server.aclose()


async def test_writing_to_a_vanished_peer_is_a_broken_resource() -> None:
    client, server = await tcp_pair()
    await server.aclose()
    writer = DirectSocket(client)
    with pytest.raises(trio.BrokenResourceError), trio.fail_after(5):
        # The first write may still be accepted; the peer's reset breaks a later one.
        while True:
            writer.try_write(b"x" * 65536)
            await trio.lowlevel.checkpoint()
    await client.aclose()


async def test_closing_the_stream_wakes_a_parked_reader_with_closed_resource() -> None:
    client, server = await tcp_pair()
    reader = DirectSocket(server)
    outcome: list[BaseException] = []

    async def read() -> None:
        try:
            await reader.receive_some(100)
        except trio.ClosedResourceError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        await server.aclose()
    assert len(outcome) == 1
    with pytest.raises(trio.ClosedResourceError):
        reader.try_write(b"x")
    await client.aclose()


async def test_a_parked_read_is_cancellable() -> None:
    client, server = await tcp_pair()
    reader = DirectSocket(server)
    with trio.move_on_after(0.01) as scope:
        await reader.receive_some(100)
    assert scope.cancelled_caught
    # Nothing was consumed: data written afterwards is read whole.
    DirectSocket(client).try_write(b"after")
    assert await reader.receive_some(100) == b"after"
    await client.aclose()
    await server.aclose()


class _CountingOs:
    """``os`` for direct_io, counting the reads it tries (failed ones included)."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, fd: int, n: int) -> bytes:
        self.reads += 1
        return os.read(fd, n)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.mark.parametrize("drained", [False, True])
async def test_a_read_in_a_cancelled_scope_raises_and_loses_nothing(drained: bool) -> None:
    # A drained read has no checkpoint of its own before it parks: the wait
    # is the checkpoint. Either way a cancelled caller reads nothing, and the
    # data stays in the socket for the next read.
    client, server = await tcp_pair()
    try:
        await client.send_all(b"kept")
        await trio.testing.wait_all_tasks_blocked()
        reader = DirectSocket(server)
        with trio.CancelScope() as scope:
            scope.cancel()
            await reader.receive_some(100, drained=drained)
        assert scope.cancelled_caught
        assert await reader.receive_some(100) == b"kept"
    finally:
        await client.aclose()
        await server.aclose()


async def test_a_drained_read_waits_for_data_without_trying_a_read_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = _CountingOs()
    monkeypatch.setattr(direct_io, "os", counting)
    client, server = await tcp_pair()
    reader, writer = DirectSocket(server), DirectSocket(client)
    received: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            received.append(await reader.receive_some(100, drained=True))

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert counting.reads == 0  # parked without a read that could only fail
        writer.try_write(b"now")
    assert received == [b"now"] and counting.reads == 1
    # Data that is already there is returned at once (readiness is level-triggered).
    writer.try_write(b"waiting")
    with trio.fail_after(5):
        assert await reader.receive_some(100, drained=True) == b"waiting"
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await reader.receive_some(100, drained=True)
    await client.aclose()


async def test_the_broker_reads_each_sequential_request_once(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection's reader waits for readiness after a short read instead of
    trying a read that fails: one read per request, not two."""
    server = await start_server()
    client = await RawClient.connect(server.port)  # Trio's own socket calls, not counted
    await client.handshake()
    counting = _CountingOs()
    monkeypatch.setattr(direct_io, "os", counting)
    requests = 20
    with trio.fail_after(10):
        for request_id in range(2, 2 + requests):
            await client.send(ping(request_id, b"x"))
            assert (await client.receive_one())["id"] == request_id
    assert requests <= counting.reads <= requests + 1
    await client.aclose()


async def test_a_connection_whose_output_fails_to_encode_does_not_stop_the_others(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One chunk routes a message to two subscribers; encoding the first one's
    output raises (a bug). The second still gets its message at once, the
    publisher's connection is unharmed, and only the broken one is closed."""
    server = await start_server()
    url = f"minibroker://127.0.0.1:{server.port}"
    async with (
        minibroker.connect(url, client_name="broken") as broken,
        minibroker.connect(url, client_name="healthy") as healthy,
        minibroker.connect(url, client_name="publisher") as publisher,
        broken.subscribe("news.*") as broken_sub,
        healthy.subscribe("news.*") as healthy_sub,
    ):
        (session,) = [s for s in server.sessions.values() if s.client_name == "broken"]

        def explode() -> bytes:
            raise RuntimeError("a bug in an encoder")

        session.data_to_send = explode  # type: ignore[method-assign]
        await publisher.publish("news.today", b"hello")
        with trio.fail_after(10):
            message = await healthy_sub.__anext__()
            assert message.body == b"hello"
            assert await publisher.ping(b"still here") == b"still here"
            with pytest.raises((ConnectionClosed, StopAsyncIteration)):
                await broken_sub.__anext__()
    assert "flushing the output of" in caplog.text
