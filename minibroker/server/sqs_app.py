"""The SQS endpoint's Trio adapter: an ASGI application around the sans-I/O handler.

``serve_sqs`` serves it on the broker's own Trio loop (``http_listener``).
Per request: read the body (bounded), parse it (``minibroker.sqs.wire``),
let ``SqsHandler`` carry it out on the core with ``now`` from the Trio
clock, poke the timer task (a long poll or visibility timeout may have
armed an earlier deadline), wait for group commit if the request made a
durable write (the publisher confirm, as on the native port), and answer.

A long-polling ReceiveMessage is parked in the core like a native fetch;
the request task waits on an Event that the handler's ``on_finished``
sets, while watching for the client to go away: then the parked receive
is withdrawn (``Queue.cancel_wait``) so no message is handed to nobody.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from minibroker.errors import BrokerError
from minibroker.server.durability import GroupCommit
from minibroker.server.http_listener import (
    BodyBudgetExhausted,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    read_body,
    respond,
    serve_asgi,
    wait_unless_client_leaves,
)
from minibroker.server.input_budget import InputBudget
from minibroker.sqs.errors import SqsError, internal_error
from minibroker.sqs.handler import Answer, Parked, SqsHandler
from minibroker.sqs.signing import check_signature
from minibroker.sqs.wire import (
    HttpAnswer,
    parse_request,
    protocol_of,
    render_error,
    render_result,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from minibroker.core.broker import Broker
    from minibroker.server.app import BrokerServer

log = logging.getLogger("minibroker.sqs")

#: Largest request body: a batch of ten 256 KiB messages, form-encoded (up to 3x).
MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024


class SqsApp:
    """The ASGI application of one SQS endpoint."""

    def __init__(
        self,
        broker: Broker,
        conn_id: int,
        *,
        after_request: Callable[[], None],
        group_commit: GroupCommit | None,
        input_budget: InputBudget,
        keys: dict[str, str] | None = None,
    ) -> None:
        self._broker = broker
        #: The server-wide budget request bodies claim while they arrive.
        self._input_budget = input_budget
        #: Access key id -> secret: Signature V4 is checked when set.
        self._keys = keys
        self._after_request = after_request
        self._group_commit = group_commit
        self.handler = SqsHandler(broker, conn_id, self._finished)
        self._finished_events: dict[int, trio.Event] = {}
        self._results: dict[int, Answer | SqsError] = {}

    def _finished(self, token: int, result: Answer | SqsError) -> None:
        self._results[token] = result
        event = self._finished_events.pop(token, None)
        if event is not None:
            event.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        protocol = protocol_of(headers)
        try:
            body = await read_body(receive, MAX_REQUEST_BYTES, self._input_budget)
        except BodyTooLarge:
            error = SqsError("RequestEntityTooLarge", "The request is too large.", status=413)
            await _send_answer(send, render_error(protocol, error))
            return
        except BodyBudgetExhausted:
            error = SqsError(
                "ServiceUnavailable",
                "The server is holding too many request bodies; retry.",
                status=503,
                sender_fault=False,
            )
            await _send_answer(send, render_error(protocol, error))
            return
        except trio.TooSlowError:
            error = SqsError("RequestTimeout", "The request body came too slowly.", status=408)
            await _send_answer(send, render_error(protocol, error))
            return
        if body is None:
            return
        result = await self._carry_out(scope, headers, body, receive)
        if result is None:
            return  # the client left during a long poll
        action, outcome = result
        if isinstance(outcome, SqsError):
            await _send_answer(send, render_error(protocol, outcome))
        else:
            await _send_answer(send, render_result(protocol, action, outcome))

    async def _carry_out(
        self, scope: Scope, headers: dict[str, str], body: bytes, receive: Receive
    ) -> tuple[str, Answer | SqsError] | None:
        generation = self._broker.write_generation
        action = ""
        try:
            if self._keys is not None:
                check_signature(
                    self._keys,
                    scope["method"],
                    scope.get("raw_path") or scope["path"].encode(),
                    scope["query_string"],
                    scope["headers"],
                    body,
                )
            request = parse_request(
                scope["method"],
                _base_url(scope, headers),
                scope["path"],
                scope["query_string"],
                headers,
                body,
            )
            action = request.action
            outcome = self.handler.handle(request, trio.current_time())
        except SqsError as exc:
            return action, exc
        except Exception:
            log.exception("SQS %s failed", action or "request")
            return action, internal_error("internal error (see the broker's log)")
        finally:
            self._after_request()
        if isinstance(outcome, Parked):
            finished = await self._wait(outcome.token, receive)
            if finished is None:
                return None
            return action, finished
        written = self._broker.write_generation
        if written != generation and self._group_commit is not None:
            try:
                await self._group_commit.wait_synced(written)
            except BrokerError as exc:
                return action, internal_error(f"{exc.code}: {exc.message}")
        return action, outcome

    async def _wait(self, token: int, receive: Receive) -> Answer | SqsError | None:
        """Wait for a parked receive; None if the client disconnected first.

        A client that leaves (or a server that shuts down) while the receive
        is parked withdraws it, so its messages stay ready for someone else.
        If they were handed out in the same instant, they come back after
        their visibility timeout, as with SQS.
        """
        if token in self._results:
            return self._results.pop(token)
        event = self._finished_events[token] = trio.Event()
        stayed = False
        try:
            stayed = await wait_unless_client_leaves(event, receive)
        finally:
            if token not in self._results:
                self._finished_events.pop(token, None)
                self.handler.cancel(token, trio.current_time())
                self._after_request()
                stayed = False
        result = self._results.pop(token, None)
        return result if stayed else None


async def _send_answer(send: Send, answer: HttpAnswer) -> None:
    await respond(send, answer.status, answer.headers, answer.body)


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    """How the client addressed us: queue URLs it gets back work from where it is."""
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


async def serve_sqs(
    server: BrokerServer, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the SQS endpoint of ``server`` on its host and ``config.sqs_port``
    until the server shuts down; ``task_status.started(port)``."""
    config = server.config
    wanted_port = config.sqs_port
    assert wanted_port is not None
    app = SqsApp(
        server.broker,
        next(server._conn_ids),  # the endpoint is one peer of the core, like a connection
        after_request=server._after_input,
        group_commit=server.group_commit if server.settings.hold_until_synced else None,
        input_budget=server.input_budget,
        keys=config.sqs_keys,
    )

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        await serve_asgi(
            app,
            config.host,
            wanted_port,
            name="sqs",
            shutdown_trigger=server._shutdown_requested.wait,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve)
        host = f"[{config.host}]" if ":" in config.host else config.host
        log.info("SQS endpoint on http://%s:%d", host, port)
        task_status.started(port)
