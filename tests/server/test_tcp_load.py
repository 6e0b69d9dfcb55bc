"""Many connections, the connection limit, and the outbound high-water mark, over real TCP."""

from __future__ import annotations

import trio
import trio.testing
from raw_wire import RawClient, StartServer, hello, ping

import minibroker
from minibroker.protocol.codec import pack_frame
from minibroker.server.app import BrokerServer
from minibroker.server.connection import READ_CHUNK


def url(server: BrokerServer) -> str:
    return f"minibroker://127.0.0.1:{server.port}"


async def test_200_concurrent_connections(server: BrokerServer) -> None:
    count = 200
    all_connected = trio.Event()
    connected = 0
    peak = 0

    async def one(index: int) -> None:
        nonlocal connected, peak
        async with minibroker.connect(url(server), client_name=f"c{index}") as mb:
            assert await mb.ping(str(index).encode()) == str(index).encode()
            connected += 1
            if connected == count:
                peak = len(server.sessions)
                all_connected.set()
            # Hold every connection open until all of them are: really concurrent.
            await all_connected.wait()
            assert await mb.ping() is None

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
    assert peak == count
    await trio.testing.wait_all_tasks_blocked()
    assert server.sessions == {}
    assert server.connections_accepted == count


async def test_max_connections(start_server: StartServer) -> None:
    server = await start_server(max_connections=3)
    clients = [await RawClient.connect(server.port) for _ in range(3)]  # type: ignore[arg-type]
    for client in clients:
        await client.handshake()

    refused = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await refused.send(hello())
    frames = await refused.receive_until_eof()
    assert len(frames) == 1
    assert frames[0]["op"] == "error"
    assert "id" not in frames[0]
    assert frames[0]["code"] == "limit_exceeded"
    assert "3 of 3" in frames[0]["message"]
    await refused.aclose()
    assert len(server.sessions) == 3

    # The three admitted connections are unaffected.
    for i, client in enumerate(clients):
        await client.send(ping(2, bytes([i])))
        assert (await client.receive_one())["result"] == bytes([i])

    # A slot frees up when one of them leaves.
    await clients.pop().aclose()
    await trio.testing.wait_all_tasks_blocked()
    async with minibroker.connect(url(server)) as mb:
        assert await mb.ping(b"in") == b"in"
    for client in clients:
        await client.aclose()


async def test_outbound_high_water_mark(start_server: StartServer) -> None:
    """A client that pipelines without reading makes the server stop reading it,
    instead of buffering every answer; once it reads, every answer arrives."""
    high_water = 64 * 1024
    server = await start_server(outbound_high_water=high_water)
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake()
    (session,) = server.sessions.values()

    # Record the session's outbound buffer after every chunk it consumes.
    peak = 0
    receive_data = session.receive_data

    def watched(data: bytes | bytearray, now: float) -> None:
        nonlocal peak
        receive_data(data, now)
        peak = max(peak, session.outbound_bytes)

    session.receive_data = watched  # type: ignore[method-assign]

    # 64 MiB of pings: far more than the kernel's socket buffers hold, so the
    # sender can only finish if the server keeps reading.
    payload = b"p" * 16_000
    count = 4096
    request = b"".join(pack_frame(ping(i, payload)) for i in range(2, 2 + count))
    sent = trio.Event()

    async def send_everything() -> None:
        await client.send_bytes(request)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_everything)
        # Nothing moves any more: the server stopped reading us, so TCP pushed
        # back on our sender, which cannot finish while we do not read.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert not sent.is_set()
        assert server.stats.bytes_in < len(request)
        # The answers to one chunk read (plus the frame it completed) may
        # overshoot the mark; nothing more is ever buffered.
        bound = high_water + 2 * READ_CHUNK
        assert peak <= bound, (peak, bound)

        # Now read: every answer arrives, in order.
        replies = await client.receive(count)
    assert [r["id"] for r in replies] == list(range(2, 2 + count))
    assert all(r["result"] == payload for r in replies)
    assert peak <= bound
    await client.aclose()
