"""Helpers for the security tests: a valid sample of every request, and a raw wire client.

``sample_request(op)`` is a frame that decodes cleanly (so whatever answer it
gets comes from the authorization checks, not from the field checks);
``RawClient`` speaks bytes to a server, so the tests see every frame the
server sends, id-less errors and ``bye`` included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from minibroker.protocol import frames
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frame_class import fields
from minibroker.server.app import BrokerServer

#: The ``serve`` fixture (conftest.py): ``await serve(**config_overrides)``.
StartServer = Callable[..., Awaitable[BrokerServer]]

#: Valid example values by field name; the rest come from the field's type.
_EXAMPLES: dict[str, Any] = {
    "version": frames.PROTOCOL_VERSION,
    "queue": "jobs.a",
    "topic": "orders.eu",
    "pattern": "orders.#",
    "log": "events",
    "subject": "svc.echo",
    "group": "g",
    "messages": [{"body": b"x"}],
    "records": [{"body": b"x"}],
    "deliveries": [1],
    "sub": 1,
    "rid": 1,
    "fetch": 1,
    "request": 1,
    "offset": 0,
    "client": "security-test",
    "namespace": "elsewhere",
}


def sample_request(op: str, request_id: int = 7, **overrides: Any) -> dict[str, Any]:
    """A well-formed ``op`` request with its required fields filled in."""
    cls = frames.REQUESTS[op]
    frame: dict[str, Any] = {"op": op, "id": request_id}
    for field in fields(cls):
        if field.name == "id" or field.name in overrides:
            continue
        if field.required:
            frame[field.name] = _EXAMPLES[field.name]
    frame.update(overrides)
    return frame


def hello(request_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {"op": "hello", "id": request_id, "version": frames.PROTOCOL_VERSION, **fields}


class RawClient:
    """A byte stream plus a frame decoder: exactly what goes over the wire."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = RawFrameDecoder()
        self.pending: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *frames_: dict[str, Any]) -> None:
        await self.stream.send_all(b"".join(pack_frame(f) for f in frames_))

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        if not data:
            return False
        self.decoder.receive_data(data)
        self.pending.extend(self.decoder.values())
        return True

    async def receive_one(self) -> dict[str, Any]:
        while not self.pending:
            assert await self._fill(), "the server closed the connection"
        return self.pending.pop(0)

    async def response(self, request_id: int) -> dict[str, Any]:
        """The response to ``request_id`` (pushes and other responses are skipped)."""
        while True:
            frame = await self.receive_one()
            if frame.get("id") == request_id and frame["op"] in ("ok", "error"):
                return frame

    async def until_eof(self) -> list[dict[str, Any]]:
        while await self._fill():
            pass
        out, self.pending = self.pending, []
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()
