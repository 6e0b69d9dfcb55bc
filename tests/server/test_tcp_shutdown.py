"""Graceful shutdown with clients connected: stop accepting, say bye, return."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from raw_wire import RawClient, ping

import minibroker
from minibroker.config import ServerConfig
from minibroker.errors import ConnectionClosed, ShuttingDown
from minibroker.server.app import BrokerServer


async def test_graceful_shutdown_with_connected_clients() -> None:
    server = BrokerServer(ServerConfig(port=0))
    returned = trio.Event()

    async def run_server(
        task_status: trio.TaskStatus[BrokerServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await server.run(task_status=task_status)
        returned.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_server)
            assert server.port is not None
            raws = [await RawClient.connect(server.port) for _ in range(3)]
            for raw in raws:
                await raw.handshake()
            async with minibroker.connect(f"minibroker://127.0.0.1:{server.port}") as mb:
                assert await mb.ping() is None
                assert len(server.sessions) == 4

                server.shutdown()

                # Every raw client is told why, then sees the connection end.
                for raw in raws:
                    frames = await raw.receive_until_eof()
                    assert frames == [
                        {
                            "op": "bye",
                            "code": "shutting_down",
                            "message": "the server is shutting down",
                        }
                    ]
                    await raw.aclose()
                # The Trio client's calls now fail with a clear error, not a hang.
                with pytest.raises((ConnectionClosed, ShuttingDown)):
                    await mb.ping()
            await returned.wait()

    assert server.stopped.is_set()
    assert server.sessions == {}
    # No longer listening.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.port)


async def test_shutdown_gives_up_on_clients_that_do_not_read() -> None:
    """A client that never reads cannot hold the server past its grace period."""
    server = BrokerServer(ServerConfig(port=0, shutdown_grace=0.5, outbound_high_water=1024))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            assert server.port is not None
            stuck = await RawClient.connect(server.port)
            await stuck.handshake()

            async def flood() -> None:
                # Requests whose answers we never read, until the server hangs up.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while True:
                        await stuck.send(*(ping(i, b"s" * 60_000) for i in range(100)))

            nursery.start_soon(flood)
            # Everyone is stuck: the socket buffers are full both ways.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            server.shutdown()
            await server.stopped.wait()
            await stuck.aclose()
    assert server.sessions == {}


async def test_shutdown_with_no_clients_and_twice() -> None:
    server = BrokerServer(ServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await trio.sleep(0)  # let the accept loop start waiting
        server.shutdown()
        server.shutdown()  # idempotent
    assert server.stopped.is_set()


async def test_in_process_streams_refused_after_shutdown() -> None:
    server = BrokerServer(ServerConfig(listen=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert server.port is None
        server.shutdown()
    with pytest.raises(RuntimeError, match="not running"):
        server.open_in_process_stream()
