"""The hello timeout on the AMQP and Kafka ports (docs/security.md), on Trio's mock clock.

Each door's "hello" is its own handshake: AMQP's up to Connection.OpenOk,
Kafka's first request, or with tokens its SASL login. A connection that has
not done it by the deadline is closed; one that has is left alone.
"""

from __future__ import annotations

import logging
import struct

import pytest
import trio
import trio.testing
from pamqp import commands, frame

from minibroker.config import ServerConfig
from minibroker.server.app import BrokerServer


async def _until_eof(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    return data


def _amqp_frames(data: bytes) -> list[object]:
    out = []
    while data:
        consumed, _, value = frame.unmarshal(data)
        out.append(value)
        data = data[consumed:]
    return out


def _api_versions_v0(correlation_id: int) -> bytes:
    body = struct.pack(">hhih", 18, 0, correlation_id, 1) + b"x"
    return struct.pack(">i", len(body)) + body


async def test_silent_connections_on_the_amqp_and_kafka_ports_are_closed_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = BrokerServer(
        ServerConfig(port=0, hello_timeout=10.0, amqp_port=0, kafka_port=0, tokens={"t0k": "ci"})
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            ports = server.front_end_ports
            amqp = await trio.open_tcp_stream("127.0.0.1", ports["amqp"])
            await amqp.send_all(b"AMQP\x00\x00\x09\x01")  # then nothing: no StartOk
            kafka = await trio.open_tcp_stream("127.0.0.1", ports["kafka"])
            await kafka.send_all(_api_versions_v0(1))  # answered, but no login
            started = trio.current_time()
            amqp_data = await _until_eof(amqp)
            assert trio.current_time() - started >= 10.0
            # RabbitMQ's handshake_timeout: Connection.Start, then the socket
            # closes; no Connection.Close (RabbitMQ sends none before Open).
            assert [type(f) for f in _amqp_frames(amqp_data)] == [commands.Connection.Start]
            kafka_data = await _until_eof(kafka)
            assert trio.current_time() - started >= 10.0
            (size,) = struct.unpack_from(">i", kafka_data)
            assert len(kafka_data) == 4 + size  # the ApiVersions answer, then EOF
        finally:
            server.shutdown()


async def test_a_kafka_connection_without_tokens_is_hello_d_by_its_first_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = BrokerServer(ServerConfig(port=0, hello_timeout=10.0, kafka_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            port = server.front_end_ports["kafka"]
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            talker = await trio.open_tcp_stream("127.0.0.1", port)
            await talker.send_all(_api_versions_v0(1))
            await talker.receive_some(65536)
            assert await _until_eof(silent) == b""
            await trio.sleep(60)
            await talker.send_all(_api_versions_v0(2))
            assert await talker.receive_some(65536)  # still served
        finally:
            server.shutdown()


async def test_an_amqp_client_stuck_in_the_handshake_is_closed_as_rabbitmq_closes_it(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """After Tune too: no Connection.Close, and the log says ``handshake_timeout``
    (RabbitMQ's word for it), not the msgpack door's hello."""
    caplog.set_level(logging.INFO)
    server = BrokerServer(ServerConfig(port=0, hello_timeout=10.0, amqp_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            amqp = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["amqp"])
            await amqp.send_all(
                b"AMQP\x00\x00\x09\x01"
                + frame.marshal(commands.Connection.StartOk({}, "PLAIN", "\0guest\0guest"), 0)
            )  # then no TuneOk, no Open
            data = await _until_eof(amqp)
            assert [type(f) for f in _amqp_frames(data)] == [
                commands.Connection.Start,
                commands.Connection.Tune,
            ]
        finally:
            server.shutdown()
    closes = [r.getMessage() for r in caplog.records if "closed" in r.getMessage()]
    assert any("handshake_timeout" in line for line in closes), closes
    assert not any("hello within" in r.getMessage() for r in caplog.records)


async def test_a_kafka_connection_closed_at_the_deadline_is_logged_as_idle(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = BrokerServer(
        ServerConfig(port=0, hello_timeout=10.0, kafka_port=0, tokens={"t0k": "ci"})
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            kafka = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
            assert await _until_eof(kafka) == b""
        finally:
            server.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert any("no SASL login within 10 seconds" in m for m in messages), messages
    assert not any("hello within" in m for m in messages)
