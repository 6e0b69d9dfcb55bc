"""A bare-bytes AMQP client for the front end's wire tests (pamqp frames, no client library).

Real clients never send garbage, oversized frames or methods out of order,
and hide what the server answers; these tests need both.
"""

from __future__ import annotations

import trio
from pamqp import body, commands, frame, header, heartbeat
from pamqp.base import Frame

from minibroker.amqp.framing import PROTOCOL_HEADER

Received = Frame | heartbeat.Heartbeat | object


def take_frame(buffer: bytes) -> tuple[bytes, int, Received] | None:
    """The first whole frame of ``buffer`` as (the rest, channel, pamqp value), or None."""
    if len(buffer) >= 7:
        size = int.from_bytes(buffer[3:7], "big")
        if len(buffer) >= size + 8:
            consumed, channel, value = frame.unmarshal(buffer)
            return buffer[consumed:], channel, value
    return None


def split_frames(data: bytes) -> list[Received]:
    """Every frame of ``data``, which holds whole frames only, as pamqp values
    (what a sans-I/O session's ``data_to_send`` gives)."""
    out: list[Received] = []
    while data:
        consumed, _, value = frame.unmarshal(data)
        out.append(value)
        data = data[consumed:]
    return out


def publish_frames(payload: bytes, channel: int = 1, routing_key: str = "q") -> bytes:
    """A Basic.Publish to the default exchange with its content header and
    body frame: what a client sends for one message."""
    return (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel)
        + frame.marshal(header.ContentHeader(0, len(payload), commands.Basic.Properties()), channel)
        + frame.marshal(body.ContentBody(payload), channel)
    )


class WireClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.eof = False

    @classmethod
    async def connect(cls, port: int) -> WireClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, channel: int, *methods: Frame) -> None:
        await self.stream.send_all(b"".join(frame.marshal(m, channel) for m in methods))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> tuple[int, Received] | None:
        """The next frame as (channel, pamqp value), or None at EOF."""
        while True:
            if (taken := take_frame(self.buffer)) is not None:
                self.buffer, channel, value = taken
                return channel, value
            data = await self.stream.receive_some(65536)
            if not data:
                self.eof = True
                return None
            self.buffer += data

    async def expect(self, kind: type) -> tuple[int, object]:
        """The next frame, which must be a ``kind`` (heartbeats in between are skipped)."""
        got = await self.receive()
        while (
            got is not None
            and isinstance(got[1], heartbeat.Heartbeat)
            and kind is not heartbeat.Heartbeat
        ):
            got = await self.receive()
        assert got is not None, f"EOF while waiting for {kind.__name__}"
        assert isinstance(got[1], kind), f"expected {kind.__name__}, got {got[1]!r}"
        return got

    async def until_eof(self) -> list[object]:
        """Every frame until the server closes the connection."""
        frames = []
        while (got := await self.receive()) is not None:
            frames.append(got[1])
        return frames

    async def login(self, user: str = "guest", password: str = "guest") -> object:
        """Protocol header, then SASL PLAIN; returns Connection.Start."""
        await self.send_bytes(PROTOCOL_HEADER)
        _, start = await self.expect(commands.Connection.Start)
        await self.send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "wire-test"},
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
            ),
        )
        return start

    async def handshake(
        self, *, vhost: str = "/", heartbeat_seconds: int = 0, password: str = "guest"
    ) -> commands.Connection.Start:
        start = await self.login(password=password)
        _, tune = await self.expect(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        await self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat_seconds
            ),
            commands.Connection.Open(virtual_host=vhost),
        )
        await self.expect(commands.Connection.OpenOk)
        assert isinstance(start, commands.Connection.Start)
        return start

    async def open_channel(self, channel: int = 1) -> None:
        await self.send(channel, commands.Channel.Open())
        await self.expect(commands.Channel.OpenOk)

    async def aclose(self) -> None:
        await self.stream.aclose()
