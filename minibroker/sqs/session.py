"""One SQS client connection, sans-I/O: HTTP/1.1 requests in, SQS answers out.

The SQS port is a front end like the AMQP and Kafka ports: the server's
``Connection`` (minibroker/server/connection.py) reads chunks, hands them to
``SqsSession.receive_data``, and writes what ``data_to_send`` returns, with
the same coalesced and direct writes, backpressure, TLS, connection limit
and graceful shutdown as the native port. So an SQS request costs the
broker an HTTP parse (``http11``), the SQS parse (``wire``), the action
(``handler``) and one write: no ASGI server, no task per request.

What the connections share is an ``SqsEndpoint``: the one ``SqsHandler``
(the whole endpoint is one core peer, so any client may settle any receipt
handle, as in SQS), the signing keys, and which connection each parked
long poll belongs to.

Per connection, answers go out in request order. A request whose answer
cannot be given at once (a long poll parked in the core, or a durable
write waiting for group commit) holds back the requests pipelined behind
it: they wait, parsed or as bytes, bounded by ``MAX_BACKLOG_BYTES``.

Deadlines run on the core's timers (the Trio clock, so MockClock moves
them): a request must arrive in full within ``REQUEST_SECONDS`` of its first
byte (else 408), and a connection idle for ``IDLE_SECONDS`` is closed (the
keep-alive timeout). One timer per connection: moved earlier only when a
request starts after a quiet spell, else re-armed when it fires, so a busy
connection arms about one timer per 30 s, not one per request.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Final, Protocol

from minibroker.core.broker import Broker
from minibroker.core.timers import Timer
from minibroker.core.wire_session import WireSession
from minibroker.errors import BrokerError, ConnectionClosed, Timeout
from minibroker.sqs.errors import SqsError, broker_failure, internal_error
from minibroker.sqs.handler import Answer, Parked, SqsHandler
from minibroker.sqs.http11 import CONTINUE, HttpError, HttpRequest, RequestReader, response
from minibroker.sqs.signing import check_signature
from minibroker.sqs.wire import HttpAnswer, parse_request, protocol_of, render_error, render_result
from minibroker.sqs.wire import Protocol as WireProtocol

log = logging.getLogger("minibroker.sqs")

#: Largest request body: a batch of ten 256 KiB messages, form-encoded (up to 3x).
MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024
#: Bytes of request line and headers a client may send.
MAX_HEADER_BYTES: Final = 16 * 1024
#: Seconds from a request's first byte to its last.
REQUEST_SECONDS: Final = 30.0
#: Seconds an idle keep-alive connection is kept; a long poll is not idle.
IDLE_SECONDS: Final = 75.0
#: Input held behind an unanswered request (pipelining behind a long poll).
MAX_BACKLOG_BYTES: Final = 1024 * 1024
#: Answers not yet written past which the connection stops reading.
OUTPUT_HIGH_WATER: Final = 1024 * 1024
#: The SQS error for each HTTP-level refusal.
_HTTP_ERRORS: Final = {
    400: "MalformedHttpRequest",
    408: "RequestTimeout",
    413: "RequestEntityTooLarge",
    431: "RequestHeaderFieldsTooLarge",
    503: "ServiceUnavailable",
}


class BodyBudget(Protocol):
    """The server-wide budget for request bodies still arriving (``InputBudget``)."""

    refused: int

    def claim(self, current: int, wanted: int, *, pre_auth: bool = False) -> bool: ...

    def release(self, nbytes: int, *, pre_auth: bool = False) -> None: ...


class SqsEndpoint:
    """What every SQS connection shares."""

    def __init__(
        self,
        broker: Broker,
        conn_id: int,
        *,
        budget: BodyBudget,
        scheme: str = "http",
        keys: dict[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.budget = budget
        #: Access key id -> secret: Signature V4 is checked when set.
        self.keys = keys
        self.scheme = scheme
        #: ``host:port`` for queue URLs when a request has no Host header.
        self.default_host = "localhost"
        self.handler = SqsHandler(broker, conn_id, self._finished)
        #: Parked long polls: token -> the connection waiting for the answer.
        self.waiting: dict[int, SqsSession] = {}
        #: Answers to polls the core finished before their connection took
        #: the token (within the very call that parked them).
        self.early: dict[int, Answer | SqsError] = {}

    def session(self, conn_id: int, peer_name: str, now: float) -> SqsSession:
        return SqsSession(self, peer_name, now)

    def _finished(self, token: int, result: Answer | SqsError) -> None:
        session = self.waiting.pop(token, None)
        if session is None:
            self.early[token] = result
        else:
            session.finish_parked(token, result)


class _Pending:
    """The request being answered when its answer is not ready at once."""

    __slots__ = ("action", "keep_alive", "protocol", "token")

    def __init__(
        self, protocol: WireProtocol, action: str, keep_alive: bool, token: int | None
    ) -> None:
        self.protocol = protocol
        self.action = action
        self.keep_alive = keep_alive
        #: The parked long poll's token; None while waiting for group commit.
        self.token = token


class SqsSession(WireSession):
    """One connection's HTTP/1.1 state (a ``WireSession`` for the server's shell)."""

    def __init__(self, endpoint: SqsEndpoint, peer_name: str, now: float) -> None:
        super().__init__()
        self.now = now
        self.peer_name = peer_name
        self._endpoint = endpoint
        self._broker = endpoint.broker
        self._handler = endpoint.handler
        self._reader = RequestReader(
            max_header_bytes=MAX_HEADER_BYTES, max_body_bytes=MAX_REQUEST_BYTES
        )
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: Input that arrived while an answer was outstanding, not parsed yet.
        self._backlog = bytearray()
        #: The request whose answer is outstanding, if any.
        self._pending: _Pending | None = None
        #: A durable write's answer waiting for group commit (held through
        #: ``broker.durability``; see ``_synced``).
        self._held: bytes | None = None
        #: An HTTP error that ends the connection once earlier requests are answered.
        self._broken: HttpError | None = None
        self._continued = False
        #: Close once the held answer is out (the server is shutting down).
        self._close_after_held = False
        #: Bytes of the body now arriving claimed from the server-wide budget,
        #: and whether from its pre-auth share (before the first request was served).
        self._claimed = 0
        self._claimed_pre_auth = True
        #: Set once a request has been served (its signature checked, with keys):
        #: the connection's "handshake" (see ``handshake_done``).
        self._served = False
        self._request_started: float | None = None
        self._idle_since = now
        self._timer: Timer | None = None
        self._resume_timer: Timer | None = None
        self._protocol: WireProtocol = "json"
        self._ensure_timer(now + IDLE_SECONDS)

    # ------------------------------------------------------ the shell's view

    @property
    def handshake_done(self) -> bool:
        """True once a request was served, its signature checked when the
        endpoint has keys. HTTP has no handshake, but until then the client
        has proved nothing: the shell's hello deadline closes a connection
        that sends no request, and its body claims from the budget's
        pre-auth share (server/input_budget.py)."""
        return self._served

    @property
    def pending_input_bytes(self) -> int:
        return 0  # bodies claim their budget here (a refusal is an HTTP 503)

    @property
    def buffered_input_bytes(self) -> int:
        return len(self._backlog)

    @property
    def over_high_water(self) -> bool:
        return self._out_bytes > OUTPUT_HIGH_WATER

    def accepting_input(self) -> bool:
        return self.closing is None

    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        self._out_bytes = 0
        return data

    def discard_input(self) -> None:
        self._backlog.clear()

    def resume_input(self, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        self.input_paused = False

    def receive_data(self, data: bytes | bytearray, now: float | None = None) -> None:
        """Handle ``data``; ``now`` (the shell's clock) becomes ``self.now``
        (None, in unit tests: keep the last one)."""
        if now is not None:
            self.now = now
        if self.closing is not None or self._broken is not None:
            return
        if self._pending is not None or self._resume_timer is not None:
            self._backlog += data
            if len(self._backlog) > MAX_BACKLOG_BYTES:
                self._backlog.clear()
                self._broken = HttpError(
                    400, "Too much input pipelined behind a request still unanswered."
                )
            return
        self._pump(data)

    def kick(self, error: BrokerError) -> None:
        self.closing = error
        self.wakeup()

    def handshake_timed_out(self, seconds: float) -> None:
        """No request served within the shell's hello timeout: close a
        connection that is idle. A request on its way keeps its own deadline
        (``REQUEST_SECONDS``, then a 408), as a first request may be a large
        batch on a slow link."""
        if self._reader.in_request or self._pending is not None or self._backlog:
            return
        self.kick(Timeout(f"no request within {seconds:g} seconds"))

    def eof_received(self) -> None:
        """Nothing to stop: HTTP has no pushes, only responses, which still go out."""

    def shutdown(self) -> None:
        """Server shutdown: a parked long poll is answered with no messages (its
        messages stay ready); a held answer goes out once synced; then close."""
        pending = self._pending
        if pending is not None and pending.token is not None:
            self._endpoint.waiting.pop(pending.token, None)
            self._handler.cancel(pending.token, self.now)
            self._pending = None
            self._emit(render_result(pending.protocol, pending.action, {}), close=True)
        if self._held is None:
            self.closing = ConnectionClosed("the server is shutting down")
        else:
            self._close_after_held = True
        self.wakeup()

    def connection_lost(self, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        pending = self._pending
        if pending is not None and pending.token is not None:
            # Withdrawn, so no message is handed to a client that is gone.
            self._endpoint.waiting.pop(pending.token, None)
            self._handler.cancel(pending.token, self.now)
        self._pending = None
        self._held = None
        self._endpoint.budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
        self._claimed = 0
        for timer in (self._timer, self._resume_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._resume_timer = None
        self._backlog.clear()

    def _synced(self, held: bytes, error: BrokerError | None) -> None:
        """The group commit's fsync covered the held answer: send it, or an
        internal error in its place when the fsync failed."""
        if self._held is not held:
            return  # the connection is gone
        if error is None:
            self._send_held(held)
        elif self._pending is not None:
            answer = render_error(self._pending.protocol, broker_failure(error))
            self._send_held(_bytes_of(answer, close=not self._pending.keep_alive))

    # ------------------------------------------------------------ requests

    def _pump(self, data: bytes | bytearray | None) -> None:
        """Parse ``data`` and answer every complete request, in order, until one
        must wait; then what arrived meanwhile (the backlog)."""
        reader = self._reader
        while True:
            if data:
                try:
                    reader.feed(data)
                except HttpError as exc:
                    self._broken = exc
                data = None
                self._progress()
            requests = reader.requests
            while requests and self._pending is None and self.closing is None:
                self._serve(requests.popleft())
            if self._pending is not None or self.closing is not None:
                return
            if self._broken is not None:
                self._refuse(self._broken)
                return
            if not self._backlog:
                return
            data = bytes(self._backlog)
            self._backlog.clear()

    def _progress(self) -> None:
        """Note a request in progress: its deadline, its body's budget claim,
        ``100 Continue``."""
        reader = self._reader
        wanted = 0
        if reader.in_request:
            if self._request_started is None:
                self._request_started = self.now
                self._ensure_timer(self.now + REQUEST_SECONDS)
            if reader.in_body:
                wanted = (
                    reader.declared_length if reader.declared_length <= MAX_REQUEST_BYTES else 0
                )
                if reader.expects_continue and not self._continued:
                    self._continued = True
                    if reader.declared_length > MAX_REQUEST_BYTES:
                        # Refused before the body is sent, as Expect is for
                        # (RFC 9110 10.1.1): not 100 and then 8 MiB read to drop.
                        self._broken = HttpError(413, "The request is too large.")
                    elif self._pending is None and not reader.requests:
                        self._out.append(CONTINUE)
        else:
            self._request_started = None
            self._continued = False
        if wanted != self._claimed:
            budget = self._endpoint.budget
            pre_auth = not self._served
            if pre_auth != self._claimed_pre_auth:
                budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
                self._claimed = 0
                self._claimed_pre_auth = pre_auth
            if budget.claim(self._claimed, wanted, pre_auth=pre_auth):
                self._claimed = wanted
            else:
                budget.release(self._claimed, pre_auth=pre_auth)
                self._claimed = 0
                budget.refused += 1
                self._broken = HttpError(
                    503, "The server is holding too many request bodies; retry."
                )

    def _serve(self, request: HttpRequest) -> None:
        headers = request.headers
        protocol = self._protocol = protocol_of(headers)
        if not self.client_name:
            self.client_name = headers.get("user-agent", "sqs client").split(" ", 1)[0][:100]
        if request.too_large:
            error = SqsError("RequestEntityTooLarge", "The request is too large.", status=413)
            self._emit(render_error(protocol, error), close=not request.keep_alive)
            return
        endpoint = self._endpoint
        broker = self._broker
        generation = broker.durability.generation
        action = ""
        try:
            if endpoint.keys is not None:
                check_signature(
                    endpoint.keys,
                    request.method,
                    request.path,
                    request.query,
                    request.raw_headers,
                    request.body,
                )
            if not self._served:
                self._served = True
                self.handshake_ended()
            parsed = parse_request(
                request.method,
                f"{endpoint.scheme}://{headers.get('host') or endpoint.default_host}",
                request.path.decode("latin-1"),
                request.query,
                headers,
                request.body,
            )
            action = parsed.action
            outcome = self._handler.handle(parsed, self.now)
        except SqsError as exc:
            self._emit(render_error(protocol, exc), close=not request.keep_alive)
            return
        except Exception:
            log.exception("SQS %s failed", action or "request")
            error = internal_error("internal error (see the broker's log)")
            self._emit(render_error(protocol, error), close=not request.keep_alive)
            return
        if isinstance(outcome, Parked):
            self._pending = _Pending(protocol, action, request.keep_alive, outcome.token)
            early = endpoint.early.pop(outcome.token, None)
            if early is None:
                endpoint.waiting[outcome.token] = self
            else:
                self.finish_parked(outcome.token, early)
            return
        answer = render_result(protocol, action, outcome)
        if broker.durability.must_hold(generation):
            # The publisher confirm, as on the native port: answered once fsynced.
            self._pending = _Pending(protocol, action, request.keep_alive, None)
            held = self._held = _bytes_of(answer, close=not request.keep_alive)
            broker.durability.hold(partial(self._synced, held))
            return
        self._emit(answer, close=not request.keep_alive)

    def finish_parked(self, token: int, result: Answer | SqsError) -> None:
        """The core ended a parked long poll (messages came, time ran out, the
        queue went): answer it, then go on with what waited behind it."""
        pending = self._pending
        if pending is None or pending.token != token:
            return
        self._pending = None
        if isinstance(result, SqsError):
            answer = render_error(pending.protocol, result)
        else:
            answer = render_result(pending.protocol, pending.action, result)
        self._emit(answer, close=not pending.keep_alive)
        self._resume_later()
        self.wakeup()

    def _send_held(self, data: bytes) -> None:
        self._held = None
        pending, self._pending = self._pending, None
        self._out.append(data)
        self._out_bytes += len(data)
        if pending is not None and not pending.keep_alive:
            self.closing = ConnectionClosed("the client asked to close")
        if self._close_after_held:
            self.closing = ConnectionClosed("the server is shutting down")
        self._became_idle()
        self._resume_later()
        self.wakeup()

    def _resume_later(self) -> None:
        """Requests wait behind the one just answered: serve them from a timer,
        not from inside the core's call that finished it."""
        waiting = self._reader.requests or self._backlog or self._broken
        if waiting and self.closing is None and self._resume_timer is None:
            self._resume_timer = self._broker.timers.call_at(self.now, self._resume)

    def _resume(self, now: float) -> None:
        self._resume_timer = None
        self.now = now
        if self.closing is None:
            self._pump(None)
            self.wakeup()

    def _emit(self, answer: HttpAnswer, *, close: bool) -> None:
        data = _bytes_of(answer, close=close)
        self._out.append(data)
        self._out_bytes += len(data)
        if close:
            self.closing = ConnectionClosed("the client asked to close")
        self._became_idle()

    def _refuse(self, error: HttpError) -> None:
        """Answer an HTTP-level error and close: the stream cannot be framed any more."""
        code = _HTTP_ERRORS.get(error.status, "MalformedHttpRequest")
        sqs_error = SqsError(
            code, error.message, status=error.status, sender_fault=error.status < 500
        )
        self._emit(render_error(self._protocol, sqs_error), close=True)
        self.closing = ConnectionClosed(f"HTTP {error.status}: {error.message}")
        self._endpoint.budget.release(self._claimed, pre_auth=self._claimed_pre_auth)
        self._claimed = 0
        self.wakeup()

    # ----------------------------------------------------------- deadlines

    def _became_idle(self) -> None:
        if not self._reader.in_request:
            self._idle_since = self.now
            self._ensure_timer(self.now + IDLE_SECONDS)

    def _ensure_timer(self, at: float) -> None:
        """Have the deadline timer fire at ``at`` or earlier (it re-checks then)."""
        timer = self._timer
        if timer is not None:
            if timer.when <= at:
                return
            timer.cancel()
        self._timer = self._broker.timers.call_at(at, self._deadline)

    def _deadline(self, now: float) -> None:
        self._timer = None
        if self.closing is not None or self._pending is not None:
            return  # an outstanding answer re-arms it once given
        self.now = now
        started = self._request_started
        if started is not None:
            if now >= started + REQUEST_SECONDS:
                self._refuse(HttpError(408, "The request came too slowly."))
            else:
                self._ensure_timer(started + REQUEST_SECONDS)
            return
        if now >= self._idle_since + IDLE_SECONDS:
            self.closing = ConnectionClosed(f"idle for {IDLE_SECONDS:g} seconds")
            self.wakeup()
        else:
            self._ensure_timer(self._idle_since + IDLE_SECONDS)


def _bytes_of(answer: HttpAnswer, *, close: bool) -> bytes:
    return response(answer.status, answer.headers, answer.body, close=close)

