"""Serve an ASGI application on the broker's own Trio loop, with hypercorn's Trio worker.

Every HTTP front end (the SQS endpoint, the HTTP face) runs this way: no
thread and no second event loop, so an HTTP request reaches the core the
way a msgpack frame does, between two awaits of the one Trio run, and every
timer it arms (a long poll, a visibility timeout) is on the same Trio clock
that MockClock drives in tests.

Why hypercorn: it is the well-kept ASGI server with a native Trio worker
(``hypercorn.trio.serve``) that can run inside an existing nursery, takes a
``shutdown_trigger`` for graceful shutdown, and reports what it bound (so
port 0 works). It also bounds what a client can make it hold: header size
(``h11_max_incomplete_size``), idle keep-alive connections
(``keep_alive_timeout``). The request *body* is the application's to
bound, in size and in time: ``read_body`` below does both, so a client that
sends too much or too slowly gets a clean 413 or 408, and claims what it
holds from the server's input budget, so many clients together cannot
either.

hypercorn's ``read_timeout`` is left off: when it fires together with the
keep-alive timeout (a test clock jumping far ahead does that), hypercorn
leaves the connection open without reading it, and the client's next
request on it hangs until the client's own timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any, Final, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIFramework

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


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a whole response. With its length known, h11 writes no chunked
    encoding (and no terminating chunk: one write fewer per response)."""
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    name: str,
    shutdown_trigger: Callable[[], Awaitable[None]],
    tls: tuple[str, str] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown_trigger`` returns.

    ``task_status.started(port)`` reports the port actually bound (use 0 for
    any free port) once connections are accepted. ``name`` names the logger
    (``minibroker.<name>``) that hypercorn's error log goes to. ``tls``, a
    (certificate file, key file) pair, serves HTTPS.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger(f"minibroker.{name}")
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.graceful_timeout = 5.0
    if tls is not None:
        config.certfile, config.keyfile = tls
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                serve,
                cast("ASGIFramework", _with_lifespan(app)),
                config,
                shutdown_trigger=shutdown_trigger,
            )
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


def _with_lifespan(app: ASGIApp) -> ASGIApp:
    """Answer ASGI lifespan events, so applications only handle HTTP: they
    start and stop with the broker, not with the HTTP server."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped
