"""The HTTP face's Trio adapter: routes, bodies, bearer tokens, waiting.

starlette routes each request of the JSON API (``minibroker.http``) to one
endpoint, which

1. authenticates ``Authorization: Bearer TOKEN`` against the same tokens
   and permissions as the native port (401 / 403 otherwise);
2. reads the JSON body within a size and time bound (413 / 408; 415 for a
   body that is not ``application/json``);
3. runs the operation on the core with ``now`` from the Trio clock, then
   pokes the timer task (it may have armed an earlier deadline);
4. waits, if the operation parked, for the core to finish it (a client that
   goes away meanwhile withdraws a parked fetch, so no message is handed to
   nobody), and for group commit if it made a durable write: a put or an
   append is answered once stored, as on the native port;
5. answers JSON, errors as ``{"error": {"code", "message"}}`` with the wire
   protocol's code and the HTTP status ``minibroker.http.statuses`` gives it.

``/openapi.json`` serves the document, ``/metrics`` the same Prometheus
registry as the metrics port, ``/health`` the stores whose fsync failed
(server/health.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote_to_bytes

import trio
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from minibroker.access.auth import Principal
from minibroker.access.permissions import NEEDS
from minibroker.errors import (
    BadRequest,
    BrokerError,
    InternalError,
    LimitExceeded,
    TooLarge,
    Unauthorized,
)
from minibroker.http.fields import parse_fields, parse_query
from minibroker.http.openapi import openapi_document
from minibroker.http.operations import OPERATIONS, Call, HttpPeer, Json, Operation, Parked
from minibroker.http.statuses import error_body, status_of
from minibroker.server.durability import wait_synced
from minibroker.server.health import health
from minibroker.server.http_dashboard import Dashboard
from minibroker.server.http_listener import (
    BodyBudgetExhausted,
    BodyTooLarge,
    read_body,
    serve_asgi,
    wait_unless_client_leaves,
)
from minibroker.server.http_xray import XrayRoutes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from minibroker.server.app import BrokerServer

log = logging.getLogger("minibroker.http")

#: Request body bytes beyond the frame limit: JSON quoting and base64 (4/3) grow a body.
BODY_SLACK: Final = 64 * 1024


class HttpFace:
    """The JSON API of one broker: one core peer, the parked operations' events."""

    def __init__(self, server: BrokerServer, conn_id: int) -> None:
        self.server = server
        self.broker = server.broker
        self.peer = HttpPeer(conn_id, self._finished)
        self._events: dict[int, trio.Event] = {}
        self._results: dict[int, Json | BrokerError] = {}
        self.max_body_bytes = server.config.max_frame_bytes * 2 + BODY_SLACK
        self.limits = self.broker.config.limits
        self._openapi = json.dumps(openapi_document(self.limits)).encode()
        self.dashboard = Dashboard(self)

    def _finished(self, token: int, result: Json | BrokerError) -> None:
        self._results[token] = result
        event = self._events.pop(token, None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------- the app

    def app(self) -> Starlette:
        routes = [
            Route(path, _by_method(endpoints), methods=list(endpoints))
            for path, endpoints in self._endpoints_by_path().items()
        ]
        routes.extend(self.dashboard.routes())
        routes.extend(XrayRoutes(self).routes())
        routes.append(Route("/openapi.json", self._openapi_json, methods=["GET"]))
        routes.append(Route("/metrics", self._metrics, methods=["GET"]))
        routes.append(Route("/health", self._health, methods=["GET"]))
        return Starlette(
            routes=routes,
            exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
        )

    def _endpoints_by_path(self) -> dict[str, dict[str, Callable[[Request], Awaitable[Response]]]]:
        """Each path's operations by method: one route per path, so that a 405's
        ``Allow`` lists every method of the path (with one route per operation,
        starlette answered ``Allow: PUT`` for /v1/queues/{queue}, which GET and
        DELETE serve too)."""
        paths: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for op in OPERATIONS:
            paths.setdefault(op.path, {})[op.method] = self._endpoint(op)
        return paths

    @staticmethod
    def error_response(error: BrokerError) -> Response:
        """``error`` as the API answers it (its status: 415, 408 included)."""
        return _error(error)

    async def _openapi_json(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def _metrics(self, request: Request) -> Response:
        self.authenticate(request)
        return Response(generate_latest(self.server.registry), media_type=CONTENT_TYPE_LATEST)

    async def _health(self, request: Request) -> Response:
        """Whether every store can still sync (server/health.py), behind the same token."""
        self.authenticate(request)
        status, body = health(self.broker)
        return Response(body, status_code=status, media_type="application/json")

    def _endpoint(self, op: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = await self._handle(op, request)
            except BrokerError as error:
                return _error(error)
            except Exception:
                log.exception("HTTP %s failed", op.op)
                return _error(InternalError("internal error (see the broker's log)"))
            if result is None:
                return Response(status_code=499)  # the client left; nobody reads this
            return JSONResponse(result)

        endpoint.__name__ = op.op.replace(".", "_")
        return endpoint

    # ------------------------------------------------------------ handling

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        token = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value:
                raise Unauthorized("use 'Authorization: Bearer TOKEN'")
            token = value.strip()
        return self.server.auth.authenticate(token)

    async def _handle(self, op: Operation, request: Request) -> Json | None:
        principal = self.authenticate(request)
        query = dict(request.query_params)
        namespace = query.pop("namespace", "")
        if op.query:
            params = parse_query(op.fields, query, self.limits)
        else:
            params = parse_fields(op.fields, await self._json_body(request), self.limits)
        name = request.path_params.get(op.resource, "") if op.resource else ""
        if _REPLACED in name or any(_REPLACED in value for value in query.values()):
            _check_escapes(request)
        if principal.grants is not None:
            _authorize(principal, op, name, params)
        generation = self.broker.durability.generation
        try:
            ns = self.broker.namespace(namespace)
            call = Call(ns, name, params, trio.current_time(), self.peer)
            xray = self.broker.xray
            if xray is None:
                result = op.run(call)
            else:
                conn_id = self.peer.conn_id
                result = xray.trace_call(ns, conn_id, op.op, name, params, lambda: op.run(call))
        finally:
            self.server._after_input()
        if isinstance(result, Parked):
            return await self._wait(result, request)
        if self.broker.durability.must_hold(generation):
            await wait_synced(self.broker)
        return result

    async def _json_body(self, request: Request) -> object:
        try:
            body = await read_body(request.receive, self.max_body_bytes, self.server.input_budget)
        except BodyTooLarge:
            raise TooLarge(
                f"the request body is over {self.max_body_bytes} bytes", limit=self.max_body_bytes
            ) from None
        except BodyBudgetExhausted:
            raise LimitExceeded("the server is holding too many request bodies; retry") from None
        except trio.TooSlowError:
            raise _Status(408, "bad_request", "the request body came too slowly") from None
        if not body:
            return {}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Status(415, "bad_request", "send the body as application/json")
        try:
            parsed = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if _SURROGATE_ESCAPE.search(body) and not _encodes_as_utf8(parsed):
            raise BadRequest("the body is not valid JSON: a string holds a lone surrogate")
        return parsed

    async def _wait(self, parked: Parked, request: Request) -> Json | None:
        """The parked operation's answer; None if the client left first.

        A client that goes away (or a server that shuts down) while an
        operation is parked withdraws it from the core: a fetch's messages
        stay ready for another consumer, a read's waiter and a request's
        place with its responder are released at once, not at their deadline.
        """
        token = parked.token
        if token in self._results:
            return self._unwrap(self._results.pop(token))
        event = self._events[token] = trio.Event()
        stayed = False
        try:
            stayed = await wait_unless_client_leaves(event, request.receive)
        finally:
            if token not in self._results:
                self._events.pop(token, None)
                self.peer.forget(token)
                parked.withdraw(trio.current_time())
                self.server._after_input()
                stayed = False
        result = self._results.pop(token, None)
        return self._unwrap(result) if stayed else None

    @staticmethod
    def _unwrap(result: Json | BrokerError) -> Json:
        if isinstance(result, BrokerError):
            raise result
        return result


class _Status(BrokerError):
    """An error whose HTTP status is not its code's (408, 415)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # type: ignore[misc]


def _authorize(principal: Principal, op: Operation, name: str, params: dict[str, Any]) -> None:
    grants = principal.grants
    assert grants is not None
    for action, kind, field in NEEDS.get(op.op, ()):
        value = name if field == op.resource else params.get(field)
        if value is not None:
            grants.require(action, kind, value)


#: What a percent-escape that is not UTF-8 decodes to: the ASGI server and
#: starlette decode the path and the query leniently.
_REPLACED: Final = "\ufffd"


def _check_escapes(request: Request) -> None:
    """Refuse a path or query string whose percent-escapes are not UTF-8 (``%ff``).

    Decoded leniently, each bad escape became U+FFFD, so ``/v1/queues/%ff`` and
    ``/v1/queues/%fe`` declared and used one queue named "\ufffd". Checked only
    when a name or value holds U+FFFD (which a client may also send properly,
    as ``%EF%BF%BD``), so other requests pay nothing.
    """
    try:
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode()
        query = request.scope.get("query_string", b"").decode("latin-1")
        parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("a percent-escape of the path or query is not UTF-8") from None


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


#: A ``\\uD800``-``\\uDFFF`` escape: only through one can a JSON text hold a lone surrogate.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodes_as_utf8(parsed: object) -> bool:
    """False if a string in ``parsed`` (key or value) holds a lone surrogate,
    which json.loads accepts but nothing downstream can encode (names, bodies,
    headers all become UTF-8). Checked only when the body has such an escape."""
    try:
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _by_method(
    endpoints: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for a path's methods (the route has already refused the others;
    HEAD is served as GET, as starlette does)."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return endpoint


def _error(error: BrokerError) -> Response:
    status = error.status if isinstance(error, _Status) else status_of(error.code)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(error), status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """starlette's own 404 / 405, in the API's error shape."""
    code = "not_found" if exc.status_code == 404 else "bad_request"
    body = {"error": {"code": code, "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def serve_http(
    server: BrokerServer, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the HTTP face of ``server`` on its host and ``config.http_port``
    until the server shuts down (HTTPS when the server has TLS);
    ``task_status.started(port)``."""
    config = server.config
    wanted_port = config.http_port
    assert wanted_port is not None
    face = HttpFace(server, next(server._conn_ids))  # one core peer, like a connection
    server.http_face = face
    tls = None
    if config.tls_cert is not None:
        tls = (str(config.tls_cert), str(config.tls_key or config.tls_cert))

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        await serve_asgi(
            face.app(),
            config.host,
            wanted_port,
            name="http",
            shutdown_trigger=server._shutdown_requested.wait,
            tls=tls,
            connections=server.http_connections,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve)
        host = f"[{config.host}]" if ":" in config.host else config.host
        log.info("HTTP API on %s://%s:%d", "https" if tls else "http", host, port)
        task_status.started(port)
