"""Frames no client sends, sent over a raw socket to minibroker and to RabbitMQ.

Each case opens a connection (and channel 1), sends one kind of bad input,
and records how the server answers: the Connection.Close or Channel.Close
with its reply code and the class and method it names, or what else came
back. Both servers must answer alike. The cases where minibroker answers by
the spec and RabbitMQ 3.10 does not (docs/amqp.md lists them under
"differences from RabbitMQ") are not here. RabbitMQ is the one on
127.0.0.1:5672; the test is skipped, saying so, when it is not there.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from amqp_wire import take_frame
from pamqp import commands, frame, heartbeat
from test_differential_rabbitmq import RABBITMQ, _rabbitmq_reachable

from minibroker.amqp.framing import PROTOCOL_HEADER


def _raw(kind: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + end


def _content_header(size: int = 3, class_id: int = 60) -> bytes:
    return _raw(2, 1, struct.pack(">HHQH", class_id, 0, size, 0))


PUBLISH = frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1)
QOS = frame.marshal(commands.Basic.Qos(0, 1, False), 1)


class Raw:
    """A logged-in connection with channel 1 open, over a plain socket."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.buffer = b""
        self.send_bytes(PROTOCOL_HEADER)
        self.expect(commands.Connection.Start)
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={}, mechanism="PLAIN", response="\0guest\0guest"
            ),
        )
        tune = self.expect(commands.Connection.Tune)
        self.send(
            0,
            commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0),
            commands.Connection.Open(virtual_host="/"),
        )
        self.expect(commands.Connection.OpenOk)
        self.send(1, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, channel: int, *methods: Any) -> None:
        self.send_bytes(b"".join(frame.marshal(m, channel) for m in methods))

    def receive(self) -> tuple[int, Any] | None:
        while True:
            if (taken := take_frame(self.buffer)) is not None:
                self.buffer, channel, value = taken
                return channel, value
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not data:
                return None
            self.buffer += data

    def expect(self, kind: type) -> Any:
        while (got := self.receive()) is not None:
            if isinstance(got[1], kind):
                return got[1]
        raise AssertionError(f"no {kind.__name__}")

    def answer(self) -> Any:
        """The first frame that is not a heartbeat, as (name, channel, code, class, method)."""
        try:
            while (got := self.receive()) is not None:
                channel, value = got
                if isinstance(value, heartbeat.Heartbeat):
                    continue
                if isinstance(value, commands.Connection.Close | commands.Channel.Close):
                    return (value.name, channel, value.reply_code, value.class_id, value.method_id)
                return (value.name, channel)
            return "closed without a Close"
        finally:
            self.sock.close()


def _closed_channel(c: Raw) -> None:
    c.send(1, commands.Channel.Close(200, "bye", 0, 0))
    c.expect(commands.Channel.CloseOk)
    c.send(1, commands.Queue.Declare(queue="hostile"))


def _after_a_channel_error(c: Raw) -> None:
    # Frames on a channel the server closed are ignored until Close-Ok.
    c.send(1, commands.Queue.Declare(queue="hostile-missing", passive=True))
    c.expect(commands.Channel.Close)
    c.send(1, commands.Queue.Declare(queue="hostile-missing-too", passive=True))
    c.send(1, commands.Channel.CloseOk(), commands.Channel.Open())


CASES: dict[str, Callable[[Raw], None]] = {
    "a broken frame end": lambda c: c.send_bytes(_raw(1, 1, b"\x00<\x00(" + bytes(8), b"\0")),
    "an unknown frame type": lambda c: c.send_bytes(_raw(9, 1, b"abc")),
    "a frame over frame_max": lambda c: c.send_bytes(struct.pack(">BHI", 3, 1, 200_000)),
    "a heartbeat with a payload": lambda c: c.send_bytes(_raw(8, 0, b"xx")),
    "a method on a channel never opened": lambda c: c.send(2, commands.Queue.Declare(queue="q")),
    "channel.open twice": lambda c: c.send(1, commands.Channel.Open()),
    "a method on a closed channel": _closed_channel,
    "methods after a channel error": _after_a_channel_error,
    "a content header without a publish": lambda c: c.send_bytes(_content_header()),
    "a content header of class 50": lambda c: c.send_bytes(PUBLISH + _content_header(3, 50)),
    "a connection method on channel 1": lambda c: c.send(
        1, commands.Connection.Close(200, "x", 0, 0)
    ),
    "a method where a publish's header is due": lambda c: c.send_bytes(PUBLISH + QOS),
    "a method where a publish's body is due": lambda c: c.send_bytes(
        PUBLISH + _content_header() + QOS
    ),
    "a channel method on channel 0": lambda c: c.send(0, commands.Basic.Qos(0, 1, False)),
    "a method only the server sends": lambda c: c.send(1, commands.Channel.CloseOk()),
    "ack tag 0 multiple with nothing outstanding": lambda c: c.send_bytes(
        frame.marshal(commands.Basic.Ack(0, multiple=True), 1) + QOS
    ),
    "ack multiple up to a tag never delivered": lambda c: c.send_bytes(
        frame.marshal(commands.Basic.Ack(5, multiple=True), 1) + QOS
    ),
}


def _run(address: tuple[str, int]) -> dict[str, Any]:
    seen = {}
    for name, case in CASES.items():
        connection = Raw(address)
        case(connection)
        seen[name] = connection.answer()
    return seen


def test_bad_frames_are_answered_as_rabbitmq_answers_them(minibroker_amqp_url: str) -> None:
    if not _rabbitmq_reachable():
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 (guest/guest) to compare with")
    url = urlparse(minibroker_amqp_url)
    assert url.hostname is not None and url.port is not None
    ours = _run((url.hostname, url.port))
    theirs = _run(RABBITMQ)
    for name in CASES:
        assert ours[name] == theirs[name], (
            f"{name}: minibroker {ours[name]}, RabbitMQ {theirs[name]}"
        )
