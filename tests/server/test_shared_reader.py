"""The shared read loop (minibroker/server/shared_reader.py) over real TCP connections.

An idle TCP connection lends its socket to the server's one shared loop;
the loop hands it back to the connection's reader whenever anything is
other than "read and dispatch". These tests drive each way back: output
past the high-water mark, EOF in the middle of a frame, a reset, a kick
while lent; that a round reads one chunk per ready socket; and that the
loop serves rounds while Trio is idle, without breaking
``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing
from raw_wire import RawClient, StartServer, hello, ping

from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.server.app import BrokerServer
from minibroker.server.connection import ReadyConnections
from minibroker.server.shared_reader import SharedReader

KiB = 1024


def shared(server: BrokerServer) -> SharedReader:
    reader = server._shared_reader
    assert reader is not None
    return reader


async def connect(server: BrokerServer) -> RawClient:
    assert server.port is not None
    client = await RawClient.connect(server.port)
    await client.handshake()
    return client


async def test_an_idle_tcp_connection_is_served_by_the_shared_loop(server: BrokerServer) -> None:
    client = await connect(server)
    await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 1
    before = shared(server).rounds + shared(server).idle_rounds
    for request_id in range(2, 12):
        await client.send(ping(request_id, b"x"))
        assert (await client.receive_one())["id"] == request_id
    assert shared(server).rounds + shared(server).idle_rounds >= before + 10
    await client.aclose()
    with trio.fail_after(10):
        while server.sessions:
            await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 0


async def test_rounds_are_served_while_trio_is_idle(server: BrokerServer) -> None:
    """On Trio's own clock the idle wait serves the hops (Trio's internals were found):
    if a Trio upgrade moves them, this fails instead of the speed-up quietly going.
    The client is a blocking socket in a thread, so Trio is idle when requests come."""
    assert server.port is not None
    port = server.port

    def round_trips() -> list[int]:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            decoder = RawFrameDecoder()
            ids = []
            for request_id in range(1, 22):
                frame = hello() if request_id == 1 else ping(request_id)
                sock.sendall(pack_frame(frame))
                answers: list[dict[str, Any]] = []
                while not answers:
                    decoder.receive_data(sock.recv(65536))
                    answers = list(decoder.values())
                ids += [a["id"] for a in answers]
            return ids

    before = shared(server).idle_rounds
    assert await trio.to_thread.run_sync(round_trips) == list(range(1, 22))
    assert shared(server).idle_rounds >= before + 10


async def test_wait_all_tasks_blocked_with_a_cushion_returns_while_sockets_are_lent(
    server: BrokerServer,
) -> None:
    """Its cushion is Trio's timeout, and Trio's wait must end with no event: the idle
    wait stays out of the way (it would otherwise wake Trio every cushion, forever)."""
    client = await connect(server)
    await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 1
    with trio.fail_after(10):
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    await client.aclose()


async def test_a_connection_past_its_high_water_mark_is_paused_then_resumes(
    start_server: StartServer,
) -> None:
    """A client that pipelines without reading: the loop hands the socket back at the
    mark (the server stops reading it), and lends it again once the answers drained."""
    high_water = 64 * KiB
    server = await start_server(outbound_high_water=high_water)
    client = await connect(server)
    [session] = server.sessions.values()
    count = 300
    body = b"x" * (16 * KiB)
    frames = b"".join(pack_frame(ping(request_id, body)) for request_id in range(2, count + 2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_bytes, frames)
        # Every buffer on the way fills; then nobody can move until the client reads.
        await trio.testing.wait_all_tasks_blocked()
        assert session.over_high_water
        assert session.outbound_bytes < high_water + 2 * 64 * KiB + len(body)
        assert len(shared(server)) == 0  # the reader holds the socket while it waits
        answers = await client.receive(count)
    assert [a["id"] for a in answers] == list(range(2, count + 2))
    await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 1  # lent again
    await client.send(ping(999))
    assert (await client.receive_one())["id"] == 999
    await client.aclose()


async def test_eof_in_the_middle_of_a_frame(start_server: StartServer) -> None:
    """The frames before it are answered; the partial frame's claim is released."""
    server = await start_server()
    client = await connect(server)
    size = 256 * KiB
    frame = pack_frame(ping(3, b"x" * size))
    await client.send_bytes(pack_frame(ping(2)) + frame[: len(frame) // 2])
    assert (await client.receive_one())["id"] == 2
    await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held >= size  # claimed whole, while it arrives
    assert isinstance(client.stream, trio.SocketStream)
    await client.stream.send_eof()
    with trio.fail_after(10):
        assert await client.receive_until_eof() == []
        while server.sessions:
            await trio.testing.wait_all_tasks_blocked()
    assert server.input_budget.held == 0
    assert len(shared(server)) == 0
    await client.aclose()


async def test_a_lent_connection_reset_by_its_peer(server: BrokerServer) -> None:
    client = await connect(server)
    await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 1
    client.reset()
    with trio.fail_after(10):
        while server.sessions:
            await trio.testing.wait_all_tasks_blocked()
    assert len(shared(server)) == 0
    # The descriptor number is likely reused at once: the next connection works.
    other = await connect(server)
    await other.send(ping(2))
    assert (await other.receive_one())["id"] == 2
    await other.aclose()


async def test_a_lent_connection_kicked_by_the_hello_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Closed by the server while in the epoll (no hello in time): the client gets the
    error and the EOF, the loop lets the socket go, and serving goes on."""
    from minibroker.config import ServerConfig

    server = BrokerServer(ServerConfig(port=0, hello_timeout=5.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            assert server.port is not None
            silent = await trio.open_tcp_stream("127.0.0.1", server.port)
            await trio.testing.wait_all_tasks_blocked()
            assert len(shared(server)) == 1
            decoder = RawFrameDecoder()
            while chunk := await silent.receive_some(4096):
                decoder.receive_data(chunk)
            assert [f["code"] for f in decoder.values()] == ["timeout"]
            # The client stays: the server stops lingering and closes the
            # connection while its socket is still lent (the mock clock jumps).
            while server.sessions:
                await trio.sleep(0.5)
            assert len(shared(server)) == 0
            await silent.aclose()
            talker = await connect(server)
            await talker.send(ping(2))
            assert (await talker.receive_one())["id"] == 2
            await talker.aclose()
        finally:
            server.shutdown()


class _Flooded:
    """A stand-in connection whose socket holds plenty: each read takes one byte."""

    def __init__(self, sock: socket.socket, log: list[str], name: str, done: trio.Event) -> None:
        self.sock = sock
        self.log = log
        self.name = name
        self.done = done

    def read_lent(self) -> bool:
        try:
            self.sock.recv(1)
        except BlockingIOError:
            return False  # dry: handed back
        self.log.append(self.name)
        if len(self.log) >= 400:
            self.done.set()
        return True

    def hand_back(self, outcome: Any) -> None:
        pass


@pytest.mark.parametrize("idle_serving", [True, False])
async def test_flooded_sockets_get_one_read_per_round_and_trio_gets_its_turn(
    idle_serving: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sockets that stay ready are read in turn, one chunk each per round, and a
    task waiting for other I/O runs long before they run dry: with the idle wait
    (Trio's epoll looks ready all along) and without it (the shared task)."""
    if not idle_serving:
        monkeypatch.setattr("minibroker.server.shared_reader._trio_internals", lambda: None)
    reader = SharedReader(ReadyConnections())
    log: list[str] = []
    done = trio.Event()
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, theirs in pairs:
        ours.setblocking(False)
        theirs.sendall(b"." * 4096)
    for name, (ours, _) in zip("ab", pairs[:2], strict=True):
        assert reader.lend(ours.fileno(), _Flooded(ours, log, name, done))  # type: ignore[arg-type]

    async def other_io() -> None:
        await trio.lowlevel.wait_readable(pairs[2][0])
        log.append("t")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.run)
            nursery.start_soon(other_io)
            with trio.fail_after(10):
                await done.wait()
            nursery.cancel_scope.cancel()
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
    assert "t" in log[:100]
    reads = [name for name in log if name != "t"]
    # Each round reads each once, in whichever order epoll gives them.
    assert all(sorted(reads[i : i + 2]) == ["a", "b"] for i in range(0, len(reads) - 1, 2))
    assert (reader.idle_rounds > 0) is idle_serving
