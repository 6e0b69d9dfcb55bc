"""The HTTP ports' connections: capped, released when clients close them, counted.

The server runs in this Trio run; the clients are raw sockets, so that a
test controls exactly when a connection opens, sits idle and closes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from minibroker import open_broker
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker
from minibroker.server import http_dashboard, http_listener
from minibroker.server.http_connections import HttpConnections

REQUEST = b"GET /v1/queues HTTP/1.1\r\nhost: test\r\n\r\n"
#: Only ever reached when something is broken (a connection never released).
GUARD_SECONDS = 30


@pytest.fixture
async def broker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedBroker]:
    # An hour of keep-alive: a connection released within the test's guard
    # was released because its client closed it, not by the timer.
    monkeypatch.setattr(http_listener, "KEEP_ALIVE_SECONDS", 3600.0)
    config = ServerConfig(http_max_connections=20)
    async with open_broker(config=config, http=True) as broker:
        yield broker


async def _connect(broker: EmbeddedBroker) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", broker.server.http_port)


async def _response(stream: trio.SocketStream) -> bytes:
    """One whole response (the API's answers carry a content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, f"the connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


async def _until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Let the server's tasks run until ``condition`` holds (no event exists for it)."""
    with trio.fail_after(GUARD_SECONDS):
        while not condition():
            await trio.sleep(0.001)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_connections_closed_by_their_clients_are_released_at_once(
    broker: EmbeddedBroker,
) -> None:
    """hypercorn alone kept each such socket in CLOSE-WAIT for its 75 s keep-alive."""
    connections = broker.server.http_connections
    before = _open_fds()
    for _round in range(3):
        clients = [await _connect(broker) for _ in range(15)]
        for client in clients:
            await client.send_all(REQUEST)
            assert (await _response(client)).startswith(b"HTTP/1.1 200")
        assert len(connections.open) == 15
        for client in clients:
            await client.aclose()
        await _wait_until(lambda: not connections.open)
    assert _open_fds() <= before


async def test_connections_past_the_cap_get_503_and_the_native_port_does_not_notice(
    broker: EmbeddedBroker,
) -> None:
    connections = broker.server.http_connections
    idle = []
    for _ in range(20):
        client = await _connect(broker)
        await client.send_all(REQUEST)
        await _response(client)  # accepted and answered; now it sits idle
        idle.append(client)
    assert len(connections.open) == 20
    for _ in range(200):
        refused = await _connect(broker)
        await refused.send_all(REQUEST)
        answer = await _until_closed(refused)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"code": "limit_exceeded"' in answer
        await refused.aclose()
    assert len(connections.open) == 20
    assert connections.refused == 200
    async with broker.connect() as mb:  # the native port still serves
        await mb.declare_queue("still-fine")
        await mb.put("still-fine", b"x")
    await idle.pop().aclose()
    await _wait_until(lambda: len(connections.open) == 19)
    again = await _connect(broker)
    await again.send_all(REQUEST)
    assert (await _response(again)).startswith(b"HTTP/1.1 200")
    await again.aclose()
    for client in idle:
        await client.aclose()


async def test_a_client_that_closes_mid_request_is_released(broker: EmbeddedBroker) -> None:
    connections = broker.server.http_connections
    client = await _connect(broker)
    await client.send_all(
        b"POST /v1/queues/q/messages HTTP/1.1\r\nhost: t\r\ncontent-length: 99\r\n"
    )
    await _wait_until(lambda: len(connections.open) == 1)
    await client.aclose()
    await _wait_until(lambda: not connections.open)


async def test_bytes_are_counted_per_http_connection(broker: EmbeddedBroker) -> None:
    client = await _connect(broker)
    await client.send_all(REQUEST)
    answer = await _response(client)
    connections = broker.server.http_connections
    # Counted once send_all returns, which may be after the client has read it.
    await _wait_until(lambda: connections.listing()[0]["bytes_out"] == len(answer))
    [listed] = connections.listing()
    assert (listed["protocol"], listed["bytes_in"]) == ("http", len(REQUEST))
    await client.aclose()


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        HttpConnections(0)


async def test_thousands_of_dashboards_get_clear_answers_and_hold_a_bounded_set(
    broker: EmbeddedBroker,
) -> None:
    """2,000 clients open /events and stay: as many as the connection cap
    (20 here, below the 64 streams the dashboard allows) get their stream,
    everyone else a 503 and a closed socket. What the server holds stays at
    the cap; the native port serves on. (Past the stream cap, below the
    connection cap: tests/http/test_dashboard_api.py, 429.)"""
    connections = broker.server.http_connections
    dashboard = broker.server.http_face.dashboard
    kept: list[trio.SocketStream] = []
    statuses: dict[bytes, int] = {}
    for _ in range(2000):
        client = await _connect(broker)
        await client.send_all(b"GET /events HTTP/1.1\r\nhost: test\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await client.receive_some(65536)
            assert chunk, "closed without an answer"
            head += chunk
        status = head.split(b" ", 2)[1]
        statuses[status] = statuses.get(status, 0) + 1
        if status == b"503":
            await client.aclose()
        else:
            kept.append(client)
    assert statuses == {b"200": 20, b"503": 1980}
    assert dashboard.streams == 20 < http_dashboard.MAX_EVENT_STREAMS
    assert len(connections.open) == 20
    async with broker.connect() as mb:
        await mb.declare_queue("still-fine")
    for client in kept:
        await client.aclose()
    await _wait_until(lambda: not connections.open and not dashboard.streams)
