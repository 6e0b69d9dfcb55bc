"""The dashboard's routes: the page, its script and style, /v1/overview, /events.

``/events`` is a server-sent event stream: one JSON snapshot of the broker
(``minibroker.http.overview`` plus the connections) every
``EVENT_INTERVAL`` seconds of the Trio clock. What it costs is bounded:

* at most ``MAX_EVENT_STREAMS`` streams are open at once; one more gets a
  429 ``limit_exceeded`` (an idle dashboard is a task and a socket, so
  thousands of them are refused, not held; the connections themselves are
  capped by ``--http-max-connections``);
* a snapshot is rendered once per interval and shared by every stream of
  the same principal (without permissions: by all of them);
* nothing is queued per stream: a stream sends the latest snapshot when it
  wakes, and a client that reads slowly holds its own task in ``send``,
  not a growing buffer;
* with nobody watching, nothing is rendered at all.

The page is three static files shipped in the package: no build step, no
CDN, no framework, so it works offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import minibroker.http
from minibroker.access.auth import Principal
from minibroker.access.permissions import ACTIONS, KINDS
from minibroker.errors import BrokerError, LimitExceeded
from minibroker.http.overview import overview
from minibroker.http.statuses import error_body, status_of
from minibroker.server.http_listener import Receive, Scope, Send, until_disconnect

if TYPE_CHECKING:
    from minibroker.server.app import BrokerServer
    from minibroker.server.http_app import HttpFace

#: Event streams open at once, over all clients.
MAX_EVENT_STREAMS: Final = 64
#: Seconds between two snapshots on a stream.
EVENT_INTERVAL: Final = 1.0
#: The page's files, shipped in the package beside the HTTP front end.
STATIC_DIR: Final = Path(minibroker.http.__file__).resolve().parent / "static"
_STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


def _protocol_of(session: object) -> str:
    """The front end a session belongs to, from its package (protocol/ is msgpack)."""
    package = type(session).__module__.split(".")[1]
    return "msgpack" if package == "protocol" else package


class Dashboard:
    """Snapshots for the page, and the bounded set of event streams."""

    def __init__(self, face: HttpFace) -> None:
        self.face = face
        self.server: BrokerServer = face.server
        #: Event streams open now.
        self.streams = 0
        self._cache: dict[str | None, tuple[float, bytes]] = {}
        self._files = {
            path: ((STATIC_DIR / name).read_bytes(), kind)
            for path, (name, kind) in _STATIC.items()
        }

    def routes(self) -> list[Route]:
        routes = [Route(path, self._static, methods=["GET"]) for path in self._files]
        routes.append(Route("/v1/overview", self._overview, methods=["GET"]))
        routes.append(Route("/events", _AsgiEndpoint(self._events), methods=["GET"]))
        return routes

    async def _static(self, request: Request) -> Response:
        body, kind = self._files[request.url.path]
        return Response(body, media_type=kind)

    async def _overview(self, request: Request) -> Response:
        try:
            principal = self.face.authenticate(request)
        except BrokerError as error:
            return JSONResponse(error_body(error), status_code=status_of(error.code))
        return JSONResponse(self.snapshot(principal))

    def snapshot(self, principal: Principal) -> dict[str, Any]:
        grants = principal.grants
        if grants is None:
            data = overview(self.server.broker, trio.current_time())
            data["connections"] = self._connections()
        else:
            data = overview(self.server.broker, trio.current_time(), grants.allows_any)
            # Who is connected is for those granted everything.
            sees_all = all(grants.allows(a, k, "#") for a in ACTIONS for k in KINDS)
            data["connections"] = self._connections() if sees_all else []
        data["at"] = trio.current_time()
        return data

    def _connections(self) -> list[dict[str, Any]]:
        """Every connection of every port: the native and front-end ones
        (msgpack, AMQP, Kafka), then the HTTP ports' (this page's own among them)."""
        listed = [
            {
                "connection": conn_id,
                "client": connection.session.client_name,
                "address": connection.peer_name,
                "protocol": _protocol_of(connection.session),
                "bytes_in": connection.bytes_in,
                "bytes_out": connection.bytes_out,
            }
            for conn_id, connection in sorted(self.server.connections.items())
        ]
        listed.extend(self.server.http_connections.listing())
        return listed

    def event(self, principal: Principal) -> bytes:
        """This interval's event for ``principal``, rendered once per interval."""
        key = None if principal.grants is None else principal.name
        now = trio.current_time()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < EVENT_INTERVAL / 2:
            return cached[1]
        event = b"data: " + json.dumps(self.snapshot(principal)).encode() + b"\n\n"
        if len(self._cache) > MAX_EVENT_STREAMS:
            self._cache.clear()
        self._cache[key] = (now, event)
        return event

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = self.face.authenticate(request)
            if self.streams >= MAX_EVENT_STREAMS:
                raise LimitExceeded(
                    f"{MAX_EVENT_STREAMS} event streams are open; close one or poll /v1/overview",
                    limit=MAX_EVENT_STREAMS,
                )
        except BrokerError as error:
            answer = JSONResponse(error_body(error), status_code=status_of(error.code))
            await answer(scope, receive, send)
            return
        self.streams += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_end_on_disconnect, receive, nursery.cancel_scope)
                while True:
                    body = self.event(principal)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    await trio.sleep(EVENT_INTERVAL)
        finally:
            self.streams -= 1


async def _end_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    await until_disconnect(receive)
    scope.cancel()


class _AsgiEndpoint:
    """A raw ASGI endpoint for starlette's router (a class instance is called
    as an ASGI app, not as a request -> response function)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)
