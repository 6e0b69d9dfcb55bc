"""An HTTP port's connections: a cap on how many are open, and their byte counts.

A TCP connection to the HTTP face holds a file
descriptor and a few hypercorn tasks whether or not it carries a request.
Without a cap, a client that opens connections and leaves them idle (or a
crowd of long polls and dashboards) could take every descriptor the process
has, and then the native port could not accept either. So, as the native
port has ``--max-connections``, the HTTP face has ``--http-max-connections``
(``BrokerServer.http_connections``, which the dashboard lists; an HTTP port
given the same table shares its cap): past it a new connection is answered
``503`` and closed (``minibroker/server/http_listener.py``). A port started
without one has a cap of its own, ``DEFAULT_HTTP_MAX_CONNECTIONS``.

Each open connection's stream is wrapped in a :class:`CountedStream`, which
adds the bytes it receives and sends to two integers: the dashboard lists
them beside the native connections' (``Connection.bytes_in``), at the cost
of one addition per ``receive_some`` / ``send_all``, not per message.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Final

import trio

#: HTTP connections open at once on a port not given a table to share.
DEFAULT_HTTP_MAX_CONNECTIONS: Final = 1000


class CountedStream(trio.abc.HalfCloseableStream):
    """A TCP stream that counts what goes through it (one accepted HTTP connection).

    ``socket`` is passed through: hypercorn reads the peer's and its own
    address from it, directly or under TLS from ``transport_stream.socket``.
    """

    def __init__(self, stream: trio.SocketStream, conn_id: int, address: str, protocol: str):
        self.stream = stream
        self.socket = stream.socket
        self.conn_id = conn_id
        self.address = address
        #: The front end it came through ("http"; the dashboard's protocol column).
        self.protocol = protocol
        self.bytes_in = 0
        self.bytes_out = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        self.bytes_in += len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)
        self.bytes_out += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class HttpConnections:
    """Every open connection of the HTTP ports sharing this table and its cap."""

    def __init__(self, limit: int = DEFAULT_HTTP_MAX_CONNECTIONS, ids: Iterator[int] | None = None):
        if type(limit) is not int or limit < 1:
            raise ValueError(f"the HTTP connection limit must be a positive integer, got {limit!r}")
        self.limit = limit
        #: Connection ids, drawn from the server's counter so that the
        #: dashboard's ids are unique across every port.
        self._ids = ids if ids is not None else itertools.count(1)
        self.open: dict[int, CountedStream] = {}
        #: Connections refused since start because the cap was reached.
        self.refused = 0
        #: Bytes received and sent by the connections already closed.
        self._closed_bytes_in = 0
        self._closed_bytes_out = 0

    @property
    def full(self) -> bool:
        return len(self.open) >= self.limit

    def add(self, stream: trio.SocketStream, address: str, protocol: str) -> CountedStream:
        """Register an accepted connection (the caller checked ``full``)."""
        counted = CountedStream(stream, next(self._ids), address, protocol)
        self.open[counted.conn_id] = counted
        return counted

    def remove(self, counted: CountedStream) -> None:
        if self.open.pop(counted.conn_id, None) is not None:
            self._closed_bytes_in += counted.bytes_in
            self._closed_bytes_out += counted.bytes_out

    @property
    def bytes_in(self) -> int:
        """Bytes received since start on every connection, open or closed
        (what tells the memory settler that HTTP clients keep the server busy)."""
        return self._closed_bytes_in + sum(c.bytes_in for c in self.open.values())

    @property
    def bytes_out(self) -> int:
        """Bytes sent since start on every connection, open or closed."""
        return self._closed_bytes_out + sum(c.bytes_out for c in self.open.values())

    def listing(self) -> list[dict[str, Any]]:
        """The open connections as the dashboard lists them."""
        return [
            {
                "connection": c.conn_id,
                "client": "",
                "address": c.address,
                "protocol": c.protocol,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
            }
            for c in self.open.values()
        ]
