"""One Kafka client connection, sans-I/O: request frames in, response frames out.

The Trio shell (``server.connection.Connection``) drives this object exactly
as it drives the msgpack ``Session``: it feeds bytes to ``receive_data``,
sends what ``data_to_send`` returns. An answer to a request that made a
durable write waits in its slot until the group commit's fsync, held
through ``broker.durability`` (core/durability.py).

Kafka answers every request on a connection **in request order** (clients
pipeline up to five and match answers by position as much as by correlation
id). Some answers are ready at once, some wait: a Produce until its fsync, a
Fetch until records arrive or ``max_wait_ms`` passes, a JoinGroup until the
round ends. So each request takes a *slot* in a queue when it arrives; a
handler fills its slot now or later, and only the filled prefix of the queue
goes out. A Produce with ``acks=0`` takes no slot: Kafka sends no answer.

When the server has tokens, a connection must log in with SASL first
(``handlers/sasl.py``): until then only ApiVersions, SaslHandshake and
SaslAuthenticate are served, and anything else closes the connection, as
Kafka does. The namespace is joined only once the connection is
authenticated, so a client that has not logged in changes nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from minibroker.access.auth import Principal
from minibroker.access.permissions import Grants
from minibroker.core.broker import Broker
from minibroker.core.peer import PushSource
from minibroker.core.wire_session import WireSession
from minibroker.errors import (
    BadFrame,
    BrokerError,
    ShuttingDown,
    StorageError,
    Timeout,
    Unauthorized,
)
from minibroker.kafka import wire
from minibroker.kafka.handlers import HANDLERS, NO_RESPONSE, unsupported_version

if TYPE_CHECKING:
    from minibroker.kafka.sasl import Mechanism
    from minibroker.kafka.service import KafkaNamespace, KafkaService

log = logging.getLogger("minibroker.kafka")

#: Requests one connection may have waiting for their answers. Kafka clients
#: keep at most five in flight; past this many the client is not following
#: the protocol, and it is closed rather than allowed to pile up answers.
MAX_IN_FLIGHT: Final = 1000
#: Bytes of answers waiting to be sent before dispatching pauses (backpressure).
OUTBOUND_HIGH_WATER: Final = 1024 * 1024
#: Answers held (sent or waiting their turn) past which a parked Fetch woken
#: by an append answers without records (``takes_reply``); the native
#: protocol's ``max_reply_backlog`` default (protocol/session.py).
MAX_ANSWER_BACKLOG: Final = 64 * 1024 * 1024
#: APIs served before a SASL login: ApiVersions, SaslHandshake, SaslAuthenticate.
BEFORE_LOGIN: Final = frozenset({18, 17, 36})
#: Seconds between a failed login's answer and closing the connection (Kafka's
#: ``connection.failed.authentication.delay.ms``): the client reads the error
#: before it sees the connection end, and does not reconnect in a tight loop.
FAILED_LOGIN_CLOSE_DELAY: Final = 0.1


@dataclass(slots=True)
class Slot:
    """One request's place in the answer order."""

    correlation_id: int
    api_key: int
    version: int
    #: The encoded answer once known, and the buffers that follow it (a Fetch
    #: answer's records, kept apart: see ``wire.encode_response_split``).
    body: bytes | None = None
    tail: tuple[bytes, ...] = ()
    #: Waiting for the group commit's fsync before the answer may go.
    held: bool = False
    #: Applied to the response before it is encoded: adds the entries a
    #: permission check took out of the request (``kafka/authorize.py``).
    patch: Callable[[Any], Any] | None = None
    #: The answer waits for other group members (a JoinGroup until the round
    #: ends, a SyncGroup until the leader's assignment), whose requests may
    #: come on this very connection: see ``KafkaSession.input_held``.
    waits_for_peers: bool = False

    @property
    def flexible_header(self) -> bool:
        """The answer's header is v1 (a flexible version; never ApiVersions,
        whose answer a client must read before it knows the versions)."""
        return self.api_key != 18 and wire.is_flexible(self.api_key, self.version)


class KafkaSession(WireSession):
    """Protocol state of one Kafka connection; also its core ``Peer``."""

    def __init__(self, service: KafkaService, broker: Broker, conn_id: int, peer_name: str):
        super().__init__()
        self.service = service
        self.broker = broker
        self.peer_name = peer_name
        self._conn_id = conn_id
        self.now = 0.0
        self.closed = False
        self.namespace: KafkaNamespace | None = None
        #: Who this connection is: set at once when the server has no tokens,
        #: else by a SASL login (``handlers/sasl.py``).
        self.principal: Principal | None = service.anonymous_principal()
        #: The login in progress (a ``kafka.sasl.Mechanism``), after SaslHandshake.
        self.sasl: Mechanism | None = None
        #: A SASL login has succeeded (one per connection, as in Kafka).
        self.sasl_done = False
        self._login_failed = False
        self._client_id: str | None = None
        self._buffer = bytearray()
        self._frames: deque[bytes] = deque()
        self._slots: deque[Slot] = deque()
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: Bytes of answers filled in slots that wait behind an earlier slot
        #: (or an fsync): held as much as ``_out`` is (see ``takes_reply``);
        #: past the high-water mark no more requests are read (``input_blocked``).
        self._slotted_bytes = 0
        #: Parked core reads (Fetch long-polls): token -> callback.
        self._parked: dict[int, Callable[[object], None]] = {}
        self._next_token = 1

    # ----------------------------------------------------------- Peer port

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        callback = self._parked.pop(token, None)
        if callback is not None and not self.closed:
            callback(result)

    def reject(self, token: int, error: BrokerError) -> None:
        self.resolve(token, error)

    def takes_reply(self) -> bool:
        """False while more than :data:`MAX_ANSWER_BACKLOG` bytes of answers are held.

        Up to :data:`MAX_IN_FLIGHT` Fetches may be parked on one connection
        (a client may pipeline them, then stop reading), and an append wakes
        them all at once: each would read up to ``fetch.max.bytes`` of
        records into its answer. Past this backlog a woken Fetch answers as
        at ``max_wait_ms``, without records (handlers/fetch.py), so the
        client fetches again from the same offset once it reads.
        """
        return self._out_bytes + self._slotted_bytes <= MAX_ANSWER_BACKLOG

    def push_ready(self, source: PushSource) -> None:
        """Kafka has no push subscriptions: consumers fetch."""

    def park(self, callback: Callable[[object], None]) -> int:
        """A token for a core read that answers later through ``resolve``."""
        token = self._next_token
        self._next_token += 1
        self._parked[token] = callback
        return token

    def unpark(self, token: int) -> None:
        self._parked.pop(token, None)

    # --------------------------------------------------------------- input

    @property
    def handshake_done(self) -> bool:
        """Kafka has no hello; the first request ends the shell's handshake deadline."""
        return self.namespace is not None

    def receive_data(self, data: bytes | bytearray, now: float | None = None) -> None:
        """Handle ``data``; ``now`` (the shell's clock) becomes ``self.now``,
        which the handlers read (None, in unit tests: keep the last one)."""
        if now is not None:
            self.now = now
        if not self.accepting_input() or self._login_failed:
            return
        self.input_paused = False
        self._buffer += data
        try:
            self._frames.extend(wire.split_frames(self._buffer, self.service.max_request_bytes))
        except wire.FrameTooLarge as exc:
            self._frames.clear()
            self.kick(BadFrame(str(exc)))
            return
        frames = self._frames
        while frames:
            if self._out_bytes >= OUTBOUND_HIGH_WATER:
                self.input_paused = True
                return
            if self.input_held():
                # Answers wait behind an earlier request (a parked Fetch): none
                # can be sent, so the shell would never see the mark, and
                # answers to pipelined requests would pile up in their slots
                # (999 Fetches behind a parked one held a copy of their
                # records each). Read nothing more until the earlier request
                # is answered (``_flush`` unblocks).
                self.input_blocked = self.input_paused = True
                return
            self._dispatch(frames.popleft())
            if not self.accepting_input():
                frames.clear()
                return

    def input_held(self) -> bool:
        """Whether the answers waiting in slots stop the reading of requests.

        They do past :data:`OUTBOUND_HIGH_WATER` bytes when the first
        unanswered request will be answered without more input: a parked
        Fetch (at its ``max_wait_ms`` at the latest), a Produce waiting for
        its fsync. When it is a JoinGroup or SyncGroup waiting for other
        members (``Slot.waits_for_peers``), the request that ends its wait
        may be one not read yet on this same connection (two members of a
        group sharing it): blocking there stalled both until the round's
        timeout. Then the reading goes on up to :data:`MAX_ANSWER_BACKLOG`
        bytes of answers, the bound a connection's held answers have anyway
        (``takes_reply``); only a client that pipelines that much behind
        its own group wait stalls, until the round's timeout ends the wait.
        """
        if self._slotted_bytes < OUTBOUND_HIGH_WATER:
            return False
        front = self._slots[0]
        if front.waits_for_peers and front.body is None:
            return self._slotted_bytes >= MAX_ANSWER_BACKLOG
        return True

    def resume_input(self, now: float | None = None) -> None:
        self.receive_data(b"", now)

    @property
    def pending_input_bytes(self) -> int:
        """Bytes held until the next request is complete: its declared size
        (size prefix included) once the prefix is in, or what is buffered if
        that is more. The shell claims this from its partial-frame budget."""
        buffer = self._buffer
        if len(buffer) < wire.SIZE.size:
            return len(buffer)
        size: int = wire.SIZE.unpack_from(buffer, 0)[0]
        return max(wire.SIZE.size + max(size, 0), len(buffer))

    @property
    def buffered_input_bytes(self) -> int:
        """Bytes received and not yet dispatched (cut requests and the rest)."""
        return len(self._buffer) + sum(map(len, self._frames))

    def discard_input(self) -> None:
        """Free the buffered input (the connection is refused or gone)."""
        self._buffer.clear()
        self._frames.clear()

    def accepting_input(self) -> bool:
        return self.closing is None and not self.closed

    def _dispatch(self, frame: bytes) -> None:
        try:
            header = wire.parse_header(frame)
        except wire.MalformedRequest as exc:
            self.kick(BadFrame(str(exc)))
            return
        self._client_id = header.client_id
        if self.principal is None and header.api_key not in BEFORE_LOGIN:
            self.kick(Unauthorized(f"{_api(header.api_key)} before a SASL login"))
            return
        if self.namespace is None and self.principal is not None and not self.join_namespace():
            return
        if len(self._slots) >= MAX_IN_FLIGHT:
            self.kick(BadFrame(f"more than {MAX_IN_FLIGHT} requests waiting for answers"))
            return
        slot = Slot(header.correlation_id, header.api_key, header.api_version)
        self._slots.append(slot)
        implemented = wire.IMPLEMENTED.get(header.api_key)
        if implemented is None or not implemented[0] <= header.api_version <= implemented[1]:
            self._fill(slot, unsupported_version(header.api_key))
            return
        try:
            request = wire.decode_request(
                header.api_key, header.api_version, frame, header.body_offset
            )
        except Exception as exc:  # kio raises several unrelated types on garbage
            self.kick(BadFrame(f"undecodable {_api(header.api_key)} request: {exc}"))
            return
        durability = self.broker.durability
        generation = durability.generation
        try:
            response = HANDLERS[header.api_key](self, slot, request)
        except Exception:
            log.exception(
                "internal error handling %s from %s", _api(header.api_key), self.peer_name
            )
            self.kick(BrokerError(f"internal error handling {_api(header.api_key)}"))
            return
        if response is NO_RESPONSE:
            self._slots.remove(slot)
            self._flush()
            return
        if durability.must_hold(generation):
            slot.held = True
            durability.hold(partial(self._synced, slot))
        if response is not None:
            self.answer(slot, response)

    def join_namespace(self) -> bool:
        """Join the namespace the client id selects (False: refused, closing)."""
        try:
            self.namespace = self.service.namespace_for(self._client_id, self)
        except BrokerError as exc:
            self.kick(exc)
            return False
        self.handshake_ended()
        self.client_name = self._client_id or ""
        return True

    def logged_in(self, principal: Principal) -> None:
        """A SASL login succeeded: the connection is ``principal`` from now on."""
        self.principal = principal
        self.sasl = None
        self.sasl_done = True
        if self.namespace is None:
            self.join_namespace()

    def login_failed(self, error: BrokerError) -> None:
        """A SASL login failed: its answer goes out, nothing more is read, and
        the connection closes :data:`FAILED_LOGIN_CLOSE_DELAY` later."""
        self._login_failed = True
        self._frames.clear()
        self.broker.timers.call_at(
            self.now + FAILED_LOGIN_CLOSE_DELAY, lambda _now: self.kick(error)
        )

    @property
    def grants(self) -> Grants | None:
        """What this connection may do (None: everything; no permissions file)."""
        return None if self.principal is None else self.principal.grants

    @property
    def ns(self) -> KafkaNamespace:
        """This connection's namespace (chosen by its first request's client id)."""
        assert self.namespace is not None
        return self.namespace

    # -------------------------------------------------------------- output

    def answer_bytes(self, slot: Slot, body: bytes) -> None:
        """Fill ``slot`` with an already encoded body."""
        if self.closed:
            return
        if slot.patch is not None:
            response = wire.decode_response(slot.api_key, slot.version, body)
            body = wire.encode_response(slot.patch(response))
        self._fill(slot, body)

    def answer(self, slot: Slot, response: Any) -> None:
        """Fill ``slot`` with a kio response object (now or later) and send what may go."""
        if self.closed:
            return
        if slot.patch is not None:
            response = slot.patch(response)
        self._fill(slot, *wire.encode_response_split(response))

    def _fill(self, slot: Slot, body: bytes, tail: tuple[bytes, ...] = ()) -> None:
        slot.body = body
        slot.tail = tail
        self._slotted_bytes += len(body) + (sum(map(len, tail)) if tail else 0)
        self._flush()

    def _flush(self) -> None:
        slots = self._slots
        wrote = False
        while slots and slots[0].body is not None and not slots[0].held:
            slot = slots.popleft()
            assert slot.body is not None
            tail = slot.tail
            tail_bytes = sum(map(len, tail)) if tail else 0
            head = wire.frame_response(
                slot.correlation_id, slot.body, tail_bytes, slot.flexible_header
            )
            self._out.append(head)
            self._out.extend(tail)
            self._out_bytes += len(head) + tail_bytes
            self._slotted_bytes -= len(slot.body) + tail_bytes
            wrote = True
        if wrote:
            if self.input_blocked and not self.input_held():
                self.input_blocked = False
            self.wakeup()

    def _synced(self, slot: Slot, error: BrokerError | None) -> None:
        """The group commit's fsync covered ``slot``'s writes: its answer may go.
        If the fsync failed nothing held may be confirmed: Kafka clients treat
        a closed connection as a failed request and retry, so close it."""
        if self.closed:
            return
        if error is not None:
            # The slot stays held: its answer never goes out.
            self.kick(StorageError(f"{error.message}; closing so the client retries"))
            return
        slot.held = False
        self._flush()

    @property
    def over_high_water(self) -> bool:
        return self._out_bytes >= OUTBOUND_HIGH_WATER

    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Every answer ready to go, as one buffer: the one copy of a Fetch
        answer's records between the log and the socket."""
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out = []
        self._out_bytes = 0
        return data

    # ----------------------------------------------------------- lifecycle

    def kick(self, error: BrokerError) -> None:
        """Close after what is already answered: Kafka has no goodbye frame, a
        broker closes the connection and the client reconnects."""
        if self.closing is None and not self.closed:
            log.info("closing Kafka connection %s: %s", self.peer_name, error.message)
            self.closing = error
            self.wakeup()

    def handshake_timed_out(self, seconds: float) -> None:
        """Closed without a word, as Kafka closes a connection idle past
        ``connections.max.idle.ms``: Kafka has no goodbye frame."""
        if self.principal is None:
            what = f"no SASL login within {seconds:g} seconds"
        else:
            what = f"no request within {seconds:g} seconds"
        self.kick(Timeout(f"idle connection closed: {what}"))

    def eof_received(self) -> None:
        """Nothing to stop: Kafka has no pushes, only answers, which still go out."""

    def connection_lost(self, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        if self.closed:
            return
        self.closed = True
        self._slots.clear()
        self._slotted_bytes = 0
        self._parked.clear()
        if self.namespace is not None:
            self.namespace.groups.connection_lost(self, self.now)
            self.broker.disconnect(self, self.namespace.core, self.now)

    def shutdown(self) -> None:
        self.kick(ShuttingDown("the server is shutting down"))


def _api(api_key: int) -> str:
    return wire.API_NAMES.get(api_key, f"API {api_key}")

