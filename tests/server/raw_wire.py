"""A bare-bytes client for server tests: exactly what goes on the wire, no client library.

The real clients hide framing, ids and closes; these tests need to send
garbage, stop reading, vanish mid-frame, and see every frame the server
sends (id-less errors and ``bye`` included) and the EOF after it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.server.app import BrokerServer

#: The ``start_server`` fixture: ``await start_server(**config_overrides)``.
StartServer = Callable[..., Awaitable[BrokerServer]]


def hello(request_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {"op": "hello", "id": request_id, "version": PROTOCOL_VERSION, "client": "raw", **fields}


def ping(request_id: int, data: bytes | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "ping", "id": request_id}
    if data is not None:
        frame["data"] = data
    return frame


class RawClient:
    """A TCP (or TLS) stream plus a frame decoder."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = RawFrameDecoder()
        self.pending: list[dict[str, Any]] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *frames: dict[str, Any]) -> None:
        await self.stream.send_all(b"".join(pack_frame(f) for f in frames))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return False
        self.decoder.receive_data(data)
        self.pending.extend(self.decoder.values())
        return True

    async def receive(self, count: int = 1) -> list[dict[str, Any]]:
        """The next ``count`` frames (AssertionError if the server closes first)."""
        while len(self.pending) < count:
            assert await self._fill(), f"EOF after {self.pending!r}, expected {count} frames"
        out, self.pending = self.pending[:count], self.pending[count:]
        return out

    async def receive_one(self) -> dict[str, Any]:
        (frame,) = await self.receive(1)
        return frame

    async def receive_until_eof(self) -> list[dict[str, Any]]:
        """Every frame until the server closes the connection."""
        while await self._fill():
            pass
        out, self.pending = self.pending, []
        return out

    async def handshake(self, **fields: Any) -> dict[str, Any]:
        await self.send(hello(**fields))
        reply = await self.receive_one()
        assert reply["op"] == "ok", reply
        return reply

    def reset(self) -> None:
        """Vanish: close with RST (SO_LINGER 0), no goodbye, unread data discarded."""
        assert isinstance(self.stream, trio.SocketStream)
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.stream.socket.close()

    async def aclose(self) -> None:
        await self.stream.aclose()
