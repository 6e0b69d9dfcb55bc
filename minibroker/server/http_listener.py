"""Serve an ASGI application on the broker's own Trio loop, with hypercorn's Trio worker.

The HTTP face runs this way (the SQS endpoint, whose cost per request is
the product, parses HTTP itself as a front end of the server's shell; see
``minibroker/sqs/http11.py``): no thread and no second event loop, so an
HTTP request reaches the core the way a msgpack frame does, between two
awaits of the one Trio run, and every timer it arms (a long poll, a
visibility timeout) is on the same Trio clock that MockClock drives in
tests.

Why hypercorn: it is the well-kept ASGI server with a native Trio worker
whose per-connection handler (``hypercorn.trio.tcp_server.TCPServer``)
runs inside an existing nursery. It bounds what a client can make it hold:
header size (``h11_max_incomplete_size``), idle keep-alive connections
(``keep_alive_timeout``). The request *body* is the application's to
bound, in size and in time: ``read_body`` below does both, so a client that
sends too much or too slowly gets a clean 413 or 408, and claims what it
holds from the server's input budget, so many clients together cannot
either.

The accept loop is ours (``serve_asgi``), not ``hypercorn.trio.serve``'s:
it caps the open connections (``--http-max-connections``; see
``server/http_connections.py``), counts
each one's bytes for the dashboard, and releases a connection as soon as
its client has closed it, where hypercorn would keep the socket in
CLOSE-WAIT until its keep-alive timer ran out.

hypercorn's ``read_timeout`` is left off: when it fires together with the
keep-alive timeout (a test clock jumping far ahead does that), hypercorn
leaves the connection open without reading it, and the client's next
request on it hangs until the client's own timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, cast

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Event as HypercornEvent
from hypercorn.events import Updated
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState

from minibroker.server.accept import serve_listeners
from minibroker.server.http_connections import HttpConnections
from minibroker.server.input_budget import InputBudget

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds an idle keep-alive connection is kept; a long poll is not idle.
KEEP_ALIVE_SECONDS: Final = 75.0
#: Seconds a client may take to send a request's body.
BODY_TIMEOUT_SECONDS: Final = 30.0
#: Bytes of request line and headers a client may send (hypercorn's own default).
MAX_HEADER_BYTES: Final = 16 * 1024
#: Seconds a connection refused for the cap may hold its descriptor, at most.
REFUSAL_SECONDS: Final = 1.0
#: Bytes of a refused connection's request read (and dropped) before closing it.
REFUSAL_DRAIN_BYTES: Final = 64 * 1024
#: Refusals answering at once; past it a refused connection is closed unanswered.
MAX_REFUSING: Final = 64
READ_CHUNK: Final = 65536


class BodyTooLarge(Exception):
    """The request body is over the limit the application set."""


class BodyBudgetExhausted(Exception):
    """The server-wide budget for bodies still arriving is used up by other requests."""


async def read_body(
    receive: Receive,
    limit: int,
    budget: InputBudget,
    timeout: float = BODY_TIMEOUT_SECONDS,
) -> bytes | None:
    """The request body, at most ``limit`` bytes (BodyTooLarge beyond) within
    ``timeout`` seconds (trio.TooSlowError beyond); None if the client
    disconnected first. Chunks are joined once, at the end.

    Every byte held while the body arrives is claimed from ``budget``, the
    server-wide budget the native port's partial frames share: without it,
    a thousand clients each sending most of a 32 MiB body, slowly, would
    hold 32 GB. A chunk the budget cannot take refuses the request
    (BodyBudgetExhausted) rather than waiting, since every waiter would
    hold a partial claim and they could wait on each other for good.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.fail_after(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                if size + len(chunk) > limit:
                    raise BodyTooLarge(f"request body over {limit} bytes")
                if not budget.claim(size, size + len(chunk)):
                    budget.refused += 1
                    raise BodyBudgetExhausted("the server is holding too many request bodies")
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    finally:
        budget.release(size)


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (anything else it sends is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def wait_unless_client_leaves(event: trio.Event, receive: Receive) -> bool:
    """Wait for ``event`` (a parked operation finishing) while watching the
    client: True if the event came, False if the client disconnected first."""
    left = False

    async def watch_client(cancel: trio.CancelScope) -> None:
        nonlocal left
        await until_disconnect(receive)
        left = True
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_client, nursery.cancel_scope)
        await event.wait()
        nursery.cancel_scope.cancel()
    return not left


async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    name: str,
    shutdown_trigger: Callable[[], Awaitable[None]],
    tls: tuple[str, str] | None = None,
    connections: HttpConnections | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown_trigger`` returns.

    ``task_status.started(port)`` reports the port actually bound (use 0 for
    any free port) once connections are accepted. ``name`` names the logger
    (``minibroker.<name>``) that hypercorn's error log goes to, and the
    protocol the dashboard shows. ``tls``, a (certificate file, key file)
    pair, serves HTTPS. ``connections`` caps and counts the open
    connections, shared with the server's other HTTP port (None: a cap of
    ``DEFAULT_HTTP_MAX_CONNECTIONS`` of this port's own).

    The accept loop is ours, around hypercorn's per-connection handler, for
    the cap and the byte counts, and so that a connection whose client has
    closed it is released at once (see :class:`_Connection`). At shutdown
    idle connections close, and requests in progress get
    ``config.graceful_timeout`` seconds to finish.
    """
    config = _config(name, tls)
    if connections is None:
        connections = HttpConnections()
    ssl_context = config.create_ssl_context()
    context = WorkerContext(None)
    asgi = ASGIWrapper(cast("ASGIFramework", app))
    refusing = _Refusals(connections, https=ssl_context is not None, log=config.errorlog)

    async def handle(stream: trio.SocketStream) -> None:
        if connections.full:
            await refusing.refuse(stream)
            return
        counted = connections.add(stream, _address(stream), name)
        try:
            transport: trio.abc.Stream = counted
            if ssl_context is not None:
                transport = trio.SSLStream(
                    counted, ssl_context, server_side=True, https_compatible=True
                )
            # (hypercorn types the stream as TLS; a plain one is handled alike)
            tcp_stream = cast("trio.SSLStream[trio.SocketStream]", transport)
            await _Connection(asgi, config, context, ConnectionState({}), tcp_stream).run()
        finally:
            connections.remove(counted)

    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as handlers:
        with trio.CancelScope() as accepting:
            handlers.start_soon(_accept_until, shutdown_trigger, accepting)
            task_status.started(listeners[0].socket.getsockname()[1])
            await serve_listeners(handle, listeners, handler_nursery=handlers)
        # Shutting down: idle keep-alive connections close, requests in
        # progress get the grace period, then everything is cut.
        await context.terminated.set()
        handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout


async def _accept_until(
    shutdown_trigger: Callable[[], Awaitable[None]], accepting: trio.CancelScope
) -> None:
    await shutdown_trigger()
    accepting.cancel()


def _config(name: str, tls: tuple[str, str] | None) -> Config:
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger(f"minibroker.{name}")
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.graceful_timeout = 5.0
    if tls is not None:
        config.certfile, config.keyfile = tls
    return config


def _address(stream: trio.SocketStream) -> str:
    try:
        address: Any = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


class _Connection(TCPServer):
    """hypercorn's handler of one connection, releasing it once the client has closed it.

    hypercorn keeps a connection's keep-alive timer running after the client
    closed its end, and the handler waits for that timer: the socket stays
    in CLOSE-WAIT, holding its descriptor, for the whole keep-alive timeout
    (75 s). A client that opens and closes connections in a loop would pile
    up thousands. Once the read loop has ended (the client's EOF, a reset),
    nothing more can arrive and no answer can be delivered, so the timer is
    stopped and not restarted: the handler ends, closing the socket, as soon
    as a request still running has seen ``http.disconnect`` and returned.
    """

    _client_gone = False

    async def _read_data(self) -> None:
        await super()._read_data()
        self._client_gone = True
        await self.idle_task.stop()

    async def protocol_send(self, event: HypercornEvent) -> None:
        if self._client_gone and isinstance(event, Updated) and event.idle:
            return  # no keep-alive for a client that has left
        await super().protocol_send(event)


class _Refusals:
    """Connections past the cap: a short 503 where it can be sent, then close.

    A refusal holds its descriptor for at most ``REFUSAL_SECONDS`` (to send
    the answer and read what the client had sent, so that closing does not
    reset the connection under the answer), and at most
    ``MAX_REFUSING`` refusals do so at once: past that, or under TLS (an
    answer would need a handshake first), the connection is just closed.
    """

    def __init__(self, connections: HttpConnections, *, https: bool, log: Any) -> None:
        self._connections = connections
        self._https = https
        self._log = log
        self._refusing = 0
        limit = connections.limit
        message = f"too many HTTP connections (the limit is {limit}); retry later"
        body = json.dumps({"error": {"code": "limit_exceeded", "message": message}}).encode()
        self._answer = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    async def refuse(self, stream: trio.SocketStream) -> None:
        connections = self._connections
        connections.refused += 1
        if connections.refused == 1 or connections.refused % 1000 == 0:
            self._log.warning(
                "refused an HTTP connection: %d open, the limit (--http-max-connections); "
                "%d refused so far",
                len(connections.open),
                connections.refused,
            )
        if self._https or self._refusing >= MAX_REFUSING:
            return  # the caller closes the stream
        self._refusing += 1
        try:
            with (
                trio.move_on_after(REFUSAL_SECONDS),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await stream.send_all(self._answer)
                await stream.send_eof()
                drained = 0
                while drained < REFUSAL_DRAIN_BYTES:
                    data = await stream.receive_some(READ_CHUNK)
                    if not data:
                        break
                    drained += len(data)
        finally:
            self._refusing -= 1
