"""Connections still in their handshake cannot keep others out (``BrokerServer._make_room``).

A client that connects and never authenticates is closed by the hello
timeout, and can connect again at once: a few thousand such clients held
every ``--max-connections`` slot, and nobody could connect, on any port.
At a limit (``--max-connections``, or ``--max-handshaking-connections``
when set lower) the oldest connection still in its handshake now makes
room for the new one; only when every connection has completed its handshake
is a new one refused (``test_tcp_load.py::test_max_connections``).
"""

from __future__ import annotations

import os
import socket
import struct

import trio
import trio.testing
from raw_wire import RawClient, StartServer

from minibroker.server.app import BrokerServer

TOKENS = {"secret": "alice"}


async def silent(port: int) -> trio.SocketStream:
    """A TCP connection that sends nothing."""
    return await trio.open_tcp_stream("127.0.0.1", port)


async def closed_by_server(stream: trio.SocketStream) -> bool:
    """Whether the server has closed ``stream`` (EOF or reset), without waiting.

    On loopback the server's close has reached our socket once its tasks are
    blocked (``wait_all_tasks_blocked``): a non-blocking peek tells.
    """
    await trio.lowlevel.checkpoint()
    peek = socket.socket(fileno=os.dup(stream.socket.fileno()))
    try:
        return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        peek.close()


async def authenticated(server: BrokerServer) -> RawClient:
    client = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await client.handshake(token="secret")
    return client


async def test_at_max_connections_a_new_client_takes_the_slot_of_the_oldest_unauthenticated(
    start_server: StartServer,
) -> None:
    server = await start_server(max_connections=4, tokens=TOKENS, amqp_port=0, kafka_port=0)
    first = await authenticated(server)
    idle = [
        await silent(server.front_end_ports["amqp"]),
        await silent(server.front_end_ports["kafka"]),
    ]
    second = await authenticated(server)  # below the limit: nobody makes room
    await trio.testing.wait_all_tasks_blocked()
    assert len(server.sessions) == 4
    assert not await closed_by_server(idle[0]) and not await closed_by_server(idle[1])

    third = await authenticated(server)  # refused with limit_exceeded before
    await trio.testing.wait_all_tasks_blocked()
    assert await closed_by_server(idle[0])  # the oldest in its handshake made room
    assert not await closed_by_server(idle[1])
    fourth = await authenticated(server)
    await trio.testing.wait_all_tasks_blocked()
    assert await closed_by_server(idle[1])
    assert len(server.sessions) == 4 and not server.handshaking

    # Every slot is authenticated now: the next one is refused, as before.
    refused = await RawClient.connect(server.port)  # type: ignore[arg-type]
    (error,) = await refused.receive_until_eof()
    assert (error["op"], error["code"]) == ("error", "limit_exceeded")
    assert "4 of 4" in error["message"]
    for client in (first, second, third, fourth):
        await client.send(dict(op="ping", id=9))
        assert (await client.receive_one())["id"] == 9


async def test_connections_in_their_handshake_have_a_limit_of_their_own(
    start_server: StartServer,
) -> None:
    server = await start_server(
        max_connections=10, max_handshaking_connections=2, tokens=TOKENS, amqp_port=0, sqs_port=0
    )
    idle = [await silent(server.port), await silent(server.front_end_ports["amqp"])]
    await trio.testing.wait_all_tasks_blocked()
    assert len(server.handshaking) == 2
    newest = await silent(server.sqs_port)  # type: ignore[arg-type]
    await trio.testing.wait_all_tasks_blocked()
    assert await closed_by_server(idle[0])
    assert not await closed_by_server(idle[1]) and not await closed_by_server(newest)
    assert len(server.handshaking) == 2 and len(server.sessions) == 2
    # A client that completes its handshake leaves the count.
    client = await authenticated(server)
    await trio.testing.wait_all_tasks_blocked()
    assert await closed_by_server(idle[1])
    assert next(iter(server.handshaking.values())).session.handshake_done is False
    await client.send(dict(op="ping", id=2))
    assert (await client.receive_one())["id"] == 2
    assert len(server.handshaking) == 1  # ``newest`` only


async def test_every_front_end_reports_the_end_of_its_handshake(
    start_server: StartServer,
) -> None:
    """The count must not keep an authenticated connection: each front end
    calls ``handshake_ended`` where its handshake succeeds."""
    import pika

    server = await start_server(amqp_port=0, kafka_port=0, sqs_port=0)
    native = await RawClient.connect(server.port)  # type: ignore[arg-type]
    await native.handshake()

    amqp_port = server.front_end_ports["amqp"]
    parameters = pika.ConnectionParameters("127.0.0.1", amqp_port)
    amqp = await trio.to_thread.run_sync(pika.BlockingConnection, parameters)

    kafka = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
    body = struct.pack(">hhih", 18, 0, 7, 1) + b"t"  # ApiVersions v0, client id "t"
    await kafka.send_all(struct.pack(">i", len(body)) + body)
    await kafka.receive_some(65536)

    sqs = await trio.open_tcp_stream("127.0.0.1", server.sqs_port)  # type: ignore[arg-type]
    await sqs.send_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 25\r\n\r\nAction=ListQueues&Version"
    )
    assert (await sqs.receive_some(65536)).startswith(b"HTTP/1.1 ")

    await trio.testing.wait_all_tasks_blocked()
    assert len(server.sessions) == 4
    assert not server.handshaking
    await trio.to_thread.run_sync(amqp.close)
    for stream in (native, kafka, sqs):
        await stream.aclose()
