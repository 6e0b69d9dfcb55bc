"""One client connection's protocol state, sans-I/O.

The shell feeds received bytes to ``receive_data`` with the time they
arrived, and sends whatever ``data_to_send`` returns; everything between is
synchronous:

    bytes -> FrameDecoder -> request frame -> its row in ops.OPS: permission,
          handler(session, frame, now) -> core -> result
          -> codec.ok -> this session's outbound buffer

A whole received chunk is decoded and dispatched without yielding, and all
responses and pushes produced meanwhile leave in one ``send_all``: that is
the broker's fast path (see docs/internals.md).

The session is also the core's ``Peer`` for this connection: parked requests
are finished through ``resolve``/``reject``, and push sources (subscriptions,
tails, responders) announce themselves with ``push_ready`` and are drained
here, only while the outbound buffer is under its high-water mark. A client
that stops reading therefore stops being fed; its sources apply their own
overflow policy, and nobody else notices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from minibroker._version import __version__
from minibroker.access.auth import Authenticator, Principal
from minibroker.access.permissions import Grants
from minibroker.core.broker import Broker
from minibroker.core.namespace import Namespace
from minibroker.core.peer import PushSource
from minibroker.core.wire_session import WireSession
from minibroker.errors import (
    BrokerError,
    DuplicateId,
    InternalError,
    LimitExceeded,
    NotFound,
    ShuttingDown,
    TooLarge,
    Unauthorized,
    UnsupportedVersion,
)
from minibroker.protocol import codec, frames
from minibroker.protocol.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    HEADER_SIZE,
    HELLO_MAX_FRAME_BYTES,
    FrameDecoder,
    InvalidFrame,
    ProtocolError,
    bye_frame,
    container_limit_for,
    decode_request,
    end_frame,
    error_frame,
    frame_payload_budget,
)
from minibroker.protocol.handlers.parked import PARKED
from minibroker.protocol.handlers.rpc import FAST_OPS, FastOp
from minibroker.protocol.ops import OPS, PUSH_ENCODERS, REQUEST_DECODERS
from minibroker.protocol.stats import ProtocolStats
from minibroker.value_class import Value, field

log = logging.getLogger("minibroker.session")

#: Error codes that say something is wrong with the server, not the request:
#: logged (rate-limited) as well as answered.
_OPERATOR_ERRORS = frozenset({"storage_full", "storage_error", "storage_failed"})

#: Stop draining push sources into the outbound buffer past this many bytes.
DEFAULT_OUTBOUND_HIGH_WATER = 1024 * 1024
#: Unsent output past which a request/reply reply is dropped instead of
#: written, and a woken parked log read answers empty (``Session.takes_reply``):
#: the bound AMQP's direct reply-to has
#: (``AmqpSettings.max_content_in_progress``, docs/amqp.md).
DEFAULT_MAX_REPLY_BACKLOG = 64 * 1024 * 1024

ResultEncoder = Callable[[Any], Any]


class SessionSettings(Value):
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    outbound_high_water: int = DEFAULT_OUTBOUND_HIGH_WATER
    #: Replies are dropped, and woken parked reads answer empty, while more
    #: than this many bytes (or the high-water mark, when that is higher)
    #: wait to be sent.
    max_reply_backlog: int = DEFAULT_MAX_REPLY_BACKLOG
    features: tuple[str, ...] = ("queues", "topics", "logs", "request_reply")
    stats: ProtocolStats = field(default_factory=ProtocolStats)


class Session(WireSession):
    """Protocol state of one connection; also that connection's core ``Peer``."""

    #: op -> fast path for frames of that op (tests set ``{}`` to compare
    #: the generic path with it).
    fast_ops: dict[str, FastOp] = FAST_OPS

    def __init__(
        self,
        broker: Broker,
        conn_id: int,
        *,
        settings: SessionSettings | None = None,
        auth: Authenticator | None = None,
        peer_name: str = "",
    ) -> None:
        super().__init__()
        self.broker = broker
        self.settings = settings or SessionSettings()
        self.stats = self.settings.stats
        self.auth = auth or Authenticator()
        self.peer_name = peer_name
        self._conn_id = conn_id
        # Until hello succeeds only a hello-sized frame is accepted (see
        # HELLO_MAX_FRAME_BYTES); ``hello`` raises the limit.
        self._decoder = FrameDecoder(
            min(HELLO_MAX_FRAME_BYTES, self.settings.max_frame_bytes),
            max_container_len=container_limit_for(broker.config.limits.max_batch),
            decoders=REQUEST_DECODERS,
        )
        #: Item bytes one outgoing batch may carry: ``read`` and ``fetch``
        #: answers and every push are cut to it, so no frame the server sends
        #: is bigger than the ``max_frame_bytes`` it advertises in hello.
        self.frame_budget = frame_payload_budget(self.settings.max_frame_bytes)
        #: Bytes of the longest frame this session may write, length prefix included.
        self._max_frame_length = self.settings.max_frame_bytes + HEADER_SIZE
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: See ``takes_reply``.
        self._reply_backlog = max(
            self.settings.max_reply_backlog, self.settings.outbound_high_water
        )
        self._ready: dict[int, PushSource] = {}
        #: Sub ids the client paused -> whether the source asked to be drained
        #: meanwhile (it is put back in ``_ready`` on resume).
        self._paused: dict[int, bool] = {}
        self._parked: dict[int, tuple[int, ResultEncoder]] = {}
        #: Request id -> token of every parked request: ids still awaiting an
        #: answer, which a new request may not reuse (see ``_dispatch``).
        self._parked_ids: dict[int, int] = {}
        self._next_token = 1
        #: Ids of requests whose confirms wait for the group commit (held
        #: through ``broker.durability``; see ``_confirm_held``).
        self._held_ids: set[int] = set()
        self._next_sub_id = 1
        #: Live push subscriptions of this connection, by sub id.
        self.subscriptions: dict[int, PushSource] = {}
        self.namespace: Namespace | None = None
        self.principal: Principal | None = None
        #: The principal's permissions, checked on every request (None: everything allowed).
        self._grants: Grants | None = None
        self.closed = False
        #: Set once the client sent EOF: answers still go out, pushes no more.
        self.input_ended = False
        #: Set once ``bye`` is written: it is the last frame, nothing follows it.
        self._sealed = False
        #: The time given with the latest input: only for the one core call made
        #: while sending (ending a subscription whose next item fits no frame).
        self._input_time = 0.0

    # ------------------------------------------------------------ Peer port

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        parked = self._unpark(token)
        if parked is None or self.closed:
            return
        request_id, encoder = parked
        self._respond_ok(request_id, encoder(result))
        self.wakeup()

    def reject(self, token: int, error: BrokerError) -> None:
        parked = self._unpark(token)
        if parked is None or self.closed:
            return
        self._respond_error(parked[0], error)
        self.wakeup()

    def takes_reply(self) -> bool:
        """False while more than ``max_reply_backlog`` bytes wait to be sent.

        The connection stops reading past its high-water mark, so a client
        that does not read cannot send more requests; but the replies to
        those it already parked (up to ``max_pending_requests_per_connection``
        of them, each up to ``max_message_bytes``) come when their
        responders answer, and have no queue to wait in. Past this backlog
        the router drops them and answers each request with a small
        ``limit_exceeded`` (core/rpc.py, outcome ``unread``), so what the
        broker holds for such a client stays bounded: the backlog, one
        reply, and an error frame per parked request. Parked log reads
        (up to the same number, each up to a frame) are woken by appends
        the same way; past this backlog they read no records and answer an
        empty batch at their offset (core/log_readers.py, ``ReadWaiter.wake``).
        """
        return self._out_bytes <= self._reply_backlog

    def push_ready(self, source: PushSource) -> None:
        if not self.closed and not self._sealed and not self.input_ended:
            sub_id = source.sub_id
            if sub_id in self._paused:
                self._paused[sub_id] = True
                return
            self._ready[sub_id] = source
            self.wakeup()

    def kick(self, error: BrokerError) -> None:
        """Close this connection after telling the client why."""
        if self.closing is None and not self.closed:
            self._write(bye_frame(error))
            self.closing = error
            # Nothing may follow the goodbye: not a late response (a timer
            # resolving a parked request), not a push.
            self._sealed = True
            self._ready.clear()
            self.wakeup()

    def eof_received(self) -> None:
        """The client sent EOF: answer what it sent, push nothing more.

        Pushes keep coming on a busy subscription or tail; drained after EOF
        they would keep the connection sending until the close deadline.
        """
        self.input_ended = True
        self._ready.clear()

    # -------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Decode and dispatch the complete frames in ``data``, arrived at ``now``; never blocks.

        Dispatching pauses once the outbound buffer reaches its high-water
        mark: the frames not yet dispatched stay in the decoder,
        ``input_paused`` says so, and the shell calls ``resume_input`` once
        it has sent the buffer. Without the pause one small chunk of
        pipelined requests with large answers (a thousand 60-byte ``read``
        requests of 1 MiB each) would all be answered at once, turning 60 KB
        read into a gigabyte of memory.
        """
        if not self.accepting_input():
            return
        self.stats.bytes_in += len(data)
        self.input_paused = False
        self._input_time = now
        high_water = self.settings.outbound_high_water
        fast_ops = self.fast_ops
        stats = self.stats
        pending = self._decoder.values()
        try:
            self._decoder.receive_data(data)
            for value in pending:
                stats.frames_in += 1
                # A request/reply frame of the common shape skips the generic
                # decode and dispatch (handlers/rpc.py::FAST_OPS); anything
                # the fast path does not take goes the generic way below.
                op = value.get("op") if type(value) is dict else None
                fast = fast_ops.get(op) if type(op) is str else None
                if fast is None or not fast(self, value, now):
                    frame = decode_request(value, REQUEST_DECODERS)
                    if type(frame) is InvalidFrame:
                        self._respond_error(frame.id, frame.error)
                    else:
                        self._dispatch(frame, now)  # type: ignore[arg-type]
                if not self.accepting_input():
                    return
                if self._out_bytes >= high_water:
                    self.input_paused = True
                    return
        except ProtocolError as exc:
            self._respond_error(None, exc)
            # Keep the error, never its traceback: the traceback's frames hold
            # the rejected value (up to a gigabyte of decoded junk) and this
            # session, which holds the error: a cycle only a full garbage
            # collection would break.
            exc.__cause__ = exc.__context__ = None
            self.closing = exc.with_traceback(None)
        finally:
            pending.close()  # frames not taken stay buffered in the decoder

    def resume_input(self, now: float) -> None:
        """Dispatch the frames left buffered when ``receive_data`` paused."""
        self.receive_data(b"", now)

    @property
    def pending_input_bytes(self) -> int:
        """Bytes the decoder holds, or will, until its next frame is complete.

        The server reserves this much of its budget for partial frames
        (server/input_budget.py) before it reads more from this connection.
        """
        return self._decoder.pending_frame_bytes

    @property
    def buffered_input_bytes(self) -> int:
        """Bytes received and not yet dispatched."""
        return self._decoder.buffered_bytes

    def discard_input(self) -> None:
        """Free whatever input is buffered; nothing more is read after this."""
        self._decoder.discard()

    def accepting_input(self) -> bool:
        """False once the connection is closing or closed: further input is ignored."""
        return self.closing is None and not self.closed

    @property
    def handshake_done(self) -> bool:
        """True once hello succeeded (the shell's hello deadline stops then)."""
        return self.namespace is not None

    def _dispatch(self, frame: frames.Request, now: float) -> None:
        request_id = frame.id
        try:
            if self.namespace is None and type(frame) is not frames.Hello:
                raise Unauthorized("the first request on a connection must be hello")
            if request_id in self._parked_ids or request_id in self._held_ids:
                raise DuplicateId(
                    f"request id {request_id} is already in use by a request of this "
                    "connection still waiting for its answer; use a fresh id per request",
                    id=request_id,
                )
            op = OPS[frame.op]
            grants = self._grants
            only_visible = None if grants is None else grants.authorize(op.permission, frame)
            handler = op.handle
            generation = self.broker.durability.generation
            xray = self.broker.xray
            if xray is None:
                result = handler(self, frame, now)
            else:
                result = xray.trace_frame(
                    self.namespace, self.conn_id, frame, lambda: handler(self, frame, now)
                )
            if only_visible is not None:
                result = only_visible(result)
        except Exception as exc:
            self.answer_failure(request_id, frame.op, exc)
            return
        if result is PARKED:
            return
        durability = self.broker.durability
        if durability.must_hold(generation):
            self._held_ids.add(request_id)
            durability.hold(partial(self._confirm_held, request_id, result))
            return
        self._respond_ok(request_id, result)

    def answer_failure(self, request_id: int, op: str, exc: Exception) -> None:
        """Answer request ``request_id`` whose handler raised ``exc``: its error
        frame for a ``BrokerError`` (the core changed nothing), else ``internal``,
        with the traceback logged (a bug). The generic dispatch and the fast
        paths (handlers/rpc.py) end a failed request the same way."""
        if isinstance(exc, BrokerError):
            self._respond_error(request_id, exc)
            return
        log.exception("internal error handling %s from %s", op, self.peer_name, exc_info=exc)
        self._respond_error(request_id, InternalError(f"internal error handling {op!r}"))

    def takes_fast_path(self, request_id: int) -> bool:
        """May a fast path (handlers/rpc.py::FAST_OPS) handle request ``request_id``?

        Only after hello (before it, the generic path refuses everything but
        hello), with the x-ray off (it traces through the generic dispatch),
        and for an id not in use (the generic path answers ``duplicate_id``).
        """
        return (
            self.namespace is not None
            and self.broker.xray is None
            and request_id not in self._parked_ids
            and request_id not in self._held_ids
        )

    @property
    def grants(self) -> Grants | None:
        """The principal's permissions (None: everything allowed, or before hello)."""
        return self._grants

    # --------------------------------------------- helpers for the handlers

    def park(self, request_id: int, encoder: ResultEncoder) -> int:
        """Reserve a token for a request the core will finish later; see ``PARKED``."""
        limit = self.broker.config.limits.max_pending_requests_per_connection
        if len(self._parked) >= limit:
            raise LimitExceeded(f"more than {limit} requests are waiting on this connection")
        token = self._next_token
        self._next_token += 1
        self._parked[token] = (request_id, encoder)
        self._parked_ids[request_id] = token
        return token

    def unpark(self, token: int) -> None:
        """Release a token whose request finished synchronously after all."""
        self._unpark(token)

    def _unpark(self, token: int) -> tuple[int, ResultEncoder] | None:
        parked = self._parked.pop(token, None)
        if parked is not None:
            del self._parked_ids[parked[0]]
        return parked

    def parked_token(self, request_id: int) -> int | None:
        """The token of this connection's parked request ``request_id``, if any
        (for ``fetch.cancel``, which names the fetch by its request id)."""
        return self._parked_ids.get(request_id)

    def add_subscription(self, make: Callable[[int], PushSource]) -> int:
        """Create a push source with a fresh sub id and remember it."""
        limit = self.broker.config.limits.max_subscriptions_per_connection
        if len(self.subscriptions) >= limit:
            raise LimitExceeded(f"more than {limit} subscriptions on this connection")
        sub_id = self._next_sub_id
        self._next_sub_id += 1
        self.subscriptions[sub_id] = make(sub_id)
        return sub_id

    def remove_subscription(self, sub_id: int) -> PushSource:
        source = self.subscriptions.pop(sub_id, None)
        if source is None:
            raise NotFound(f"no subscription {sub_id} on this connection")
        self._ready.pop(sub_id, None)
        self._paused.pop(sub_id, None)
        return source

    def pause_subscription(self, sub_id: int) -> None:
        """Push nothing more to ``sub_id`` until ``resume_subscription``.

        The source keeps what it has (a tail its cursor, a responder its
        outbox, a topic subscription its buffer, under its own overflow
        policy): it is only no longer drained. This is how a client whose
        buffer for a tail or responder is full holds that one stream back
        while it keeps reading the answers to its other calls; stopping
        reading the socket instead would hold back those answers too, and a
        client waiting for one of them would never take from the buffer.
        """
        if sub_id not in self.subscriptions:
            raise NotFound(f"no subscription {sub_id} on this connection")
        was_ready = self._ready.pop(sub_id, None) is not None
        self._paused[sub_id] = self._paused.get(sub_id, False) or was_ready

    def resume_subscription(self, sub_id: int) -> None:
        """Drain ``sub_id`` again, from where it stopped (a no-op unless paused)."""
        source = self.subscriptions.get(sub_id)
        if source is None:
            raise NotFound(f"no subscription {sub_id} on this connection")
        if self._paused.pop(sub_id, False):
            self.push_ready(source)

    def end_subscription(self, sub_id: int, error: BrokerError) -> None:
        """The core ended a subscription (its log or queue went away): tell the client."""
        if self.subscriptions.pop(sub_id, None) is None:
            return
        self._ready.pop(sub_id, None)
        self._paused.pop(sub_id, None)
        self._write(end_frame(sub_id, error))
        self.wakeup()

    @property
    def ns(self) -> Namespace:
        """The namespace chosen at hello (handlers run only after hello)."""
        assert self.namespace is not None
        return self.namespace

    def hello(self, frame: frames.Hello) -> dict[str, object]:
        """Check the version and token, pick the namespace; returns the server info."""
        if self.namespace is not None:
            raise Unauthorized("hello was already sent on this connection")
        if frame.version != frames.PROTOCOL_VERSION:
            self.closing = UnsupportedVersion(
                f"protocol version {frame.version} is not supported; this server speaks "
                f"version {frames.PROTOCOL_VERSION}",
                supported=[frames.PROTOCOL_VERSION],
            )
            raise self.closing
        try:
            self.principal = self.auth.authenticate(frame.token)
        except Unauthorized as exc:
            self.closing = exc
            raise
        self._grants = self.principal.grants
        self.namespace = self.broker.join(frame.namespace or "", self)
        self.handshake_ended()
        self._decoder.max_frame_bytes = self.settings.max_frame_bytes
        self.client_name = frame.client
        limits = self.broker.config.limits
        return {
            "server": "minibroker",
            "version": __version__,
            "protocol": frames.PROTOCOL_VERSION,
            "connection": self._conn_id,
            "namespace": self.namespace.name,
            "features": list(self.settings.features),
            "extensions": list(frames.EXTENSIONS),
            "fsync": self.broker.config.fsync,
            "limits": {
                "max_frame_bytes": self.settings.max_frame_bytes,
                "max_message_bytes": limits.max_message_bytes,
                "max_batch": limits.max_batch,
                "max_subscriptions": limits.max_subscriptions_per_connection,
                "max_pending_requests": limits.max_pending_requests_per_connection,
            },
        }

    # ------------------------------------------------------------- output

    def _write(self, data: bytes) -> None:
        if self._sealed:
            return
        # One call per frame (a push encoder's batch counts as one frame).
        self.stats.frames_out += 1
        self._out.append(data)
        self._out_bytes += len(data)

    def _respond_ok(self, request_id: int, result: object) -> None:
        frame = codec.ok_of(request_id, result)
        if len(frame) > self._max_frame_length:
            # Batches are cut to ``frame_budget``, so only an answer nobody
            # sized gets here (a huge queue.inspect or list, a lone record whose
            # key and headers fill the frame). The client's decoder would drop
            # the whole connection on it; an error costs only this request.
            error = self._too_large("the answer", len(frame), "; ask for less")
            self._respond_error(request_id, error)
            return
        self._write(frame)

    def _too_large(self, what: str, frame_length: int, advice: str = "") -> TooLarge:
        limit = self.settings.max_frame_bytes
        return TooLarge(
            f"{what} would be a frame of {frame_length - HEADER_SIZE} bytes, above this "
            f"connection's limit of {limit} bytes (max_frame_bytes){advice}",
            limit=limit,
        )

    def _respond_error(self, request_id: int | None, error: BrokerError) -> None:
        self.stats.count_error(error.code)
        if error.code in _OPERATOR_ERRORS:
            # A full or failing disk refuses every write; the operator must
            # hear of it, but not once per refused request.
            count = self.stats.errors[error.code]
            if count <= 10 or count % 1000 == 0:
                log.warning("%s (%d %s errors so far)", error.message, count, error.code)
        self._write(error_frame(request_id, error, self.settings.max_frame_bytes))

    def _confirm_held(self, request_id: int, result: object, error: BrokerError | None) -> None:
        """The group commit's fsync covered a held request: send its answer, or
        ``error`` when the fsync failed (nothing is confirmed that may be lost)."""
        if self.closed:
            return
        self._held_ids.discard(request_id)
        if error is None:
            self._respond_ok(request_id, result)
        else:
            self._respond_error(request_id, error)
        self.wakeup()

    @property
    def outbound_bytes(self) -> int:
        """Bytes waiting to be sent (the shell pauses reading above the high-water mark)."""
        return self._out_bytes

    @property
    def over_high_water(self) -> bool:
        return self._out_bytes >= self.settings.outbound_high_water

    def has_output(self) -> bool:
        return bool(self._out) or bool(self._ready)

    def data_to_send(self) -> bytes:
        """Everything ready to go, joined: responses first, then pushes within budget.

        Each push encoder gets the bytes left below the high-water mark, but
        never more than ``frame_budget``: a push frame must fit the frame
        limit as much as a response does.
        """
        high_water = self.settings.outbound_high_water
        frame_budget = self.frame_budget
        ready = self._ready
        # A closing connection sends what it answered and its error, no more
        # pushes: a busy subscription would otherwise keep its writer going
        # until the close deadline. (After EOF ``_ready`` stays empty.)
        while ready and self._out_bytes < high_water and self.closing is None:
            sub_id = next(iter(ready))
            source = ready.pop(sub_id)
            encode_push = PUSH_ENCODERS[type(source)]
            data, more = encode_push(source, min(high_water - self._out_bytes, frame_budget))
            if len(data) > self._max_frame_length and self._oversized(data):
                self._end_oversized(source, data)
                continue
            if data:
                self._write(data)
            if more:
                ready[sub_id] = source
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self.stats.bytes_out += len(data)
        self._out = []
        self._out_bytes = 0
        return data

    def _oversized(self, data: bytes) -> int:
        """The length of the first frame in ``data`` above the limit, else 0.

        ``data`` may hold several frames (a ``notice`` before a ``msg``);
        only called when ``data`` as a whole is longer than one frame may be.
        """
        limit = self.settings.max_frame_bytes
        pos = 0
        while pos < len(data):
            length: int = HEADER.unpack_from(data, pos)[0]
            if length > limit:
                return length + HEADER_SIZE
            pos += HEADER_SIZE + length
        return 0

    def _end_oversized(self, source: PushSource, data: bytes) -> None:
        """A push that cannot fit any frame: end its subscription instead of sending it.

        Batches are cut to ``frame_budget``, so only a single item too big
        for a frame on its own gets here (a message whose key and headers
        fill the frame its body left). It cannot be split, and sending it
        would make the client drop the connection; ending the one
        subscription with ``too_large`` keeps everything else going.
        """
        sub_id = source.sub_id
        error = self._too_large(
            f"subscription {sub_id} ended: its next item alone", self._oversized(data)
        )
        log.warning("ending subscription %d of %s: %s", sub_id, self.peer_name, error.message)
        if self.subscriptions.pop(sub_id, None) is not None:
            source.cancel(self._input_time)
        self._paused.pop(sub_id, None)
        self._write(end_frame(sub_id, error))

    # ---------------------------------------------------------- lifecycle

    def connection_lost(self, now: float) -> None:
        """The socket is gone (at ``now``): hand back deliveries, drop subscriptions and waiters."""
        if self.closed:
            return
        self.closed = True
        self._ready.clear()
        self._paused.clear()
        self._held_ids.clear()
        self._decoder.discard()
        if self.namespace is not None:
            self.broker.disconnect(self, self.namespace, now)
        self.subscriptions.clear()
        self._parked.clear()
        self._parked_ids.clear()

    def shutdown(self) -> None:
        """Server shutdown: fail parked requests, say goodbye, close after flushing."""
        error = ShuttingDown("the server is shutting down")
        for token in list(self._parked):
            self.reject(token, error)
        self.kick(error)

