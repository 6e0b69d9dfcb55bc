"""One AMQP 0-9-1 connection, sans-I/O: bytes in, core calls, bytes out.

``AmqpSession`` is what the server shell drives for a connection on the
AMQP port (a ``core.wire_session.WireSession``), and the
core's ``Peer`` for that connection. The shell hands it each received chunk;
it cuts frames (``framing.FrameReader``), runs the handshake, dispatches
channel frames to their ``Channel`` and accumulates every frame to send in
one outbound buffer, which the shell writes in one go.

Handshake: protocol header -> Connection.Start (SASL PLAIN and AMQPLAIN) ->
StartOk (the password is checked as a minibroker token) -> Tune -> TuneOk
(frame_max, channel_max, heartbeat) -> Open (vhost = namespace) -> OpenOk.

Errors follow the spec: a ``SoftError`` closes its channel (Channel.Close,
then the channel's frames are ignored until the client's CloseOk); a
``HardError`` closes the connection (Connection.Close, then the shell
flushes and closes). Nothing a client sends reaches another connection.

Heartbeats run on the core's timers (so Trio's MockClock drives them): every
half interval the session sends a heartbeat if it sent nothing else, and a
peer silent for two intervals is disconnected.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from pamqp import base, commands

from minibroker._version import __version__
from minibroker.access.permissions import Grants
from minibroker.amqp import decoding, framing
from minibroker.amqp.blocking import Blocking
from minibroker.amqp.channel import Channel, close_frame
from minibroker.amqp.disk_room import DiskFull
from minibroker.amqp.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AmqpError,
    HardError,
    SoftError,
)
from minibroker.amqp.permissions import Access
from minibroker.amqp.vhost import Vhost, vhost_of
from minibroker.core.broker import Broker
from minibroker.core.peer import PushSource
from minibroker.core.timers import Timer
from minibroker.core.wire_session import WireSession
from minibroker.errors import BrokerError, ConnectionClosed, ShuttingDown, Timeout

log = logging.getLogger("minibroker.amqp")

Connection = commands.Connection

#: What the server offers in Tune; clients may lower frame_max and channel_max.
FRAME_MAX: Final = 131072
CHANNEL_MAX: Final = 2047
HEARTBEAT: Final = 60
#: The connection class's id: its methods belong on channel 0 only.
_CONNECTION_CLASS: Final = commands.Connection.Start.index >> 16
#: Capabilities the server implements (clients read some of them, see docs/amqp.md);
#: ``connection.blocked`` is added when a resource alarm is configured.
CAPABILITIES: Final = {
    "publisher_confirms": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
    "exchange_exchange_bindings": True,
}
_LONG: Final = struct.Struct(">I")
#: How a Basic.Publish method frame's payload starts (class 60, method 40).
_PUBLISH_START: Final = b"\x00\x3c\x00\x28"
_PUBLISH_INDEX: Final = commands.Basic.Publish.index
_ROUTING_FAILED: Final = "internal error routing a publish"
#: How often a publish the full disk refused is tried again, in seconds (the
#: connection is not read meanwhile: see ``AmqpSession.wait_for_room``).
ROOM_RETRY: Final = 1.0
#: Connection.Blocked's reason then (RabbitMQ's for its disk alarm).
LOW_ON_DISK: Final = "low on disk"
#: The sequence number a held Tx.CommitOk has among the held confirms (they start at 1).
_COMMIT: Final = 0


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    #: Checks a password as a token: returns the principal (anything with an
    #: optional ``grants``) or raises BrokerError. The server passes the native
    #: port's authenticator, so the same tokens open both doors.
    authenticate: Callable[[str | None], object]
    outbound_high_water: int = 1024 * 1024
    frame_max: int = FRAME_MAX
    heartbeat: int = HEARTBEAT
    #: Body bytes of publishes begun and not yet complete, over all channels of
    #: a connection (each channel may assemble one message at a time).
    max_content_in_progress: int = 64 * 1024 * 1024
    #: The server's resource alarm (None: none configured, and the
    #: ``connection.blocked`` capability is not advertised).
    blocking: Blocking | None = None
    #: The full disk, shared by the server's sessions (``disk_room.py``).
    disk_full: DiskFull = field(default_factory=DiskFull)


class AmqpSession(WireSession):
    """Protocol state of one AMQP connection; also that connection's core ``Peer``."""

    def __init__(
        self, broker: Broker, conn_id: int, settings: AmqpSettings, peer_name: str = ""
    ) -> None:
        super().__init__()
        self.broker = broker
        self.settings = settings
        self.peer_name = peer_name
        self._conn_id = conn_id
        self._reader = framing.FrameReader(framing.MIN_FRAME_MAX)
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: (channel, sequence number) when the last frame in ``_out`` is a publisher
        #: confirm (Basic.Ack) up to that number: the next one on the channel
        #: extends it (multiple=True) instead of adding a frame (see ``_send_confirm``).
        self._ack_tail: tuple[int, int] | None = None
        self._stage = "header"
        self.channels: dict[int, Channel] = {}
        self._vhost: Vhost | None = None
        self.frame_max = settings.frame_max
        self.channel_max = CHANNEL_MAX
        #: The broker's largest message body (read once per publish).
        self.max_message_bytes = broker.config.limits.max_message_bytes
        #: The last queue declared on this connection (a method's empty queue name means it).
        self.last_queue = ""
        #: Body bytes announced by content headers and not yet complete (bounded).
        self.content_in_progress = 0
        #: Bytes the channels' open transactions hold (bounded by the same budget).
        self.transactions_size = 0
        #: A consumer found the outbound buffer full; feed consumers again once it drains.
        self.starved = False
        #: Answers held through ``broker.durability`` for the group commit and
        #: not yet sent; while any is, later ones wait behind it (``_after_fsync``).
        self._holding = 0
        self._heartbeat = 0
        self._heartbeat_timer: Timer | None = None
        self._heard = True
        self._said = True
        self._silent_ticks = 0
        #: What the login may do, when a permissions file is in force (None: everything).
        self.access: Access | None = None
        #: The user name the client logged in with (a publish's user_id must be it).
        self.user = ""
        #: The client advertised the ``connection.blocked`` capability.
        self._tell_blocked = False
        #: Connection.Blocked was sent and Unblocked not yet.
        self._told_blocked = False
        #: A publish the full disk refused, retried until it goes through:
        #: (its channel, the retry), and the timer of the next try.
        self._room_wait: tuple[Channel, Callable[[], None]] | None = None
        self._room_timer: Timer | None = None
        self.closed = False
        #: Set once the client sent EOF: consumers get no more credit (see ``eof_received``).
        self.input_ended = False
        #: Set once the connection's deliveries, consumers and queues were handed back.
        self._released = False
        self.now = 0.0

    # ------------------------------------------------------------ Peer port

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def resolve(self, token: int, result: object) -> None:
        """Unused: this front end never parks a fetch (consumers are fed by the vhost)."""

    def reject(self, token: int, error: BrokerError) -> None:
        """Unused, as ``resolve``."""

    def push_ready(self, source: PushSource) -> None:
        """Unused: AMQP clients reach topics through queues bound to topic exchanges."""

    def kick(self, error: BrokerError) -> None:
        """Close the connection, telling the client why (320 CONNECTION_FORCED)."""
        if self.closing is None and not self.closed:
            self._close_connection(HardError(CONNECTION_FORCED, error.message))

    def handshake_timed_out(self, seconds: float) -> None:
        """RabbitMQ's ``handshake_timeout``: the socket is closed, nothing sent.

        RabbitMQ sends no Connection.Close before the connection is open
        (after Connection.Start or Tune, the client's part of the handshake
        never came): it closes the socket after its ``handshake_timeout``
        (10 s) and logs ``handshake_timeout``. A Close frame would not tell
        the clients more: they report the connection lost either way.
        """
        if self.closing is None and not self.closed:
            reason = f"handshake_timeout: AMQP handshake not completed within {seconds:g} seconds"
            log.info("closing AMQP connection %s: %s", self.peer_name, reason)
            self._stage = "closing"
            self.closing = Timeout(reason)
            self.wakeup()

    def eof_received(self) -> None:
        """The client sent EOF: send what is answered, deliver nothing more.

        A client that can no longer send cannot ack either, so deliveries
        after its EOF would only be requeued at the close; and on a busy queue
        they would keep the connection sending until the close deadline.
        """
        self.input_ended = True

    # ------------------------------------------------------------- state

    @property
    def delivering(self) -> bool:
        """Whether messages may still be pushed to this connection's consumers.

        Not once it is closing (an error, a kick, the client's Close) or
        closed, nor after the client's EOF: such a client can no longer ack,
        so a delivery would only be requeued at the close, and on a busy
        queue it would keep the connection sending until the close deadline.
        """
        return self.closing is None and not self.closed and not self.input_ended

    @property
    def vhost(self) -> Vhost:
        assert self._vhost is not None
        return self._vhost

    @property
    def handshake_done(self) -> bool:
        return self._stage == "open"

    # -------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray, now: float | None = None) -> None:
        """Handle ``data``; ``now`` (the shell's clock) becomes ``self.now``,
        which the channels read (None, in unit tests: keep the last one)."""
        if now is not None:
            self.now = now
        if not self.accepting_input():
            return
        vhost = self._vhost
        if vhost is None:
            self._receive(data)
            return
        # Consumers are fed once per chunk, not once per publish (see consumers.py).
        consumers = vhost.consumers
        consumers.hold()
        try:
            self._receive(data)
        finally:
            try:
                consumers.release(self.now)
            except Exception:
                log.exception("internal error feeding consumers after %s's input", self.peer_name)
                if self.closing is None and not self.closed:
                    self._close_connection(HardError(INTERNAL_ERROR, "internal error"))

    def _receive(self, data: bytes | bytearray) -> None:
        self.input_paused = False
        self._heard = True
        reader = self._reader
        reader.receive_data(data)
        if self._room_wait is not None:  # a publish waits for room: everything after it too
            self.input_paused = True
            return
        try:
            if self._stage == "header":
                header = reader.take_protocol_header()
                if header is None:
                    return
                if header != framing.PROTOCOL_HEADER:
                    # The spec's answer: our protocol header, then close.
                    self.write(framing.PROTOCOL_HEADER)
                    self.closing = ConnectionClosed("not an AMQP 0-9-1 protocol header")
                    return
                self._start()
            high_water = self.settings.outbound_high_water
            blocking = self.settings.blocking
            full_disk = self.settings.disk_full.waiting
            channels = self.channels
            is_open = self._stage == "open"
            # Once per frame, three frames per message: the usual frames of an
            # open connection take the shortest way, the rest go to _dispatch.
            for kind, number, payload in reader.frames():
                if not (number and is_open):
                    self._dispatch(kind, number, payload)
                    is_open = self._stage == "open"
                elif kind == framing.BODY or kind == framing.HEADER:
                    # Two of a publish's three frames, straight to their channel.
                    channel = channels.get(number)
                    if channel is None or channel.closing:
                        self._content(kind, number, payload)  # refused, or ignored, there
                    else:
                        self._to_channel(channel, kind, payload)
                elif kind == framing.METHOD:
                    if payload.startswith(_PUBLISH_START):
                        self._publish(number, payload)  # the third
                    else:
                        self._channel_method(number, framing.decode_method(payload))
                else:
                    self._dispatch(kind, number, payload)
                if self.closing is not None or self.closed or self._stage == "closing":
                    return
                if self._out_bytes >= high_water:
                    self.input_paused = True
                    return
                if self.input_blocked:
                    # The disk refused a publish (wait_for_room): the rest of
                    # the chunk waits until it went through.
                    self.input_paused = True
                    return
                if (
                    blocking is not None
                    and blocking.reason is not None
                    and kind == framing.METHOD
                    and payload.startswith(_PUBLISH_START)
                ):
                    # A publisher under the alarm: stop here (the rest of
                    # the chunk waits) until it clears.
                    self.input_blocked = self.input_paused = True
                    return
                if full_disk and kind == framing.METHOD and payload.startswith(_PUBLISH_START):
                    # Another connection's publish waits for room: this one
                    # waits too, before routing (disk_room.py).
                    self._blocked_by_full_disk()
                    return
        except HardError as exc:
            self._close_connection(exc)
        except Exception:
            # A bug, not the client's fault; still, only this connection pays for it.
            log.exception("internal error on AMQP connection %s", self.peer_name)
            self._close_connection(HardError(INTERNAL_ERROR, "internal error"))

    @property
    def pending_input_bytes(self) -> int:
        """Bytes held until the next frame is complete (the shell's partial-frame budget).

        Before the 8-byte protocol header is in, what is buffered (those bytes
        are no frame prefix).
        """
        if self._stage == "header":
            return self._reader.buffered
        return self._reader.pending_frame_bytes

    @property
    def buffered_input_bytes(self) -> int:
        return self._reader.buffered

    def discard_input(self) -> None:
        self._reader.discard()

    def resume_input(self, now: float | None = None) -> None:
        self.receive_data(b"", now)

    def accepting_input(self) -> bool:
        return self.closing is None and not self.closed and self._stage != "closing"

    def _dispatch(self, kind: int, number: int, payload: bytes) -> None:
        if kind not in framing.FRAME_TYPES:
            raise HardError(FRAME_ERROR, f"unknown frame type {kind}")
        if kind == framing.HEARTBEAT:
            if number:
                raise HardError(FRAME_ERROR, "heartbeat frame on a channel other than 0")
            if payload:
                raise HardError(FRAME_ERROR, "heartbeat frame with a payload")
            return  # receiving it was the point (see _heartbeat_due)
        if number == 0:
            if kind != framing.METHOD:
                raise HardError(UNEXPECTED_FRAME, "content frame on channel 0")
            self._connection_method(framing.decode_method(payload))
            return
        if self._stage != "open":
            raise HardError(CHANNEL_ERROR, "channel frame before the connection is open")
        if kind == framing.METHOD:
            self._channel_method(number, framing.decode_method(payload))
        else:
            self._content(kind, number, payload)

    def _channel_method(self, number: int, method: base.Frame) -> None:
        if method.index >> 16 == _CONNECTION_CLASS:
            raise HardError(
                COMMAND_INVALID, f"{method.name} on channel {number}, not 0", method.index
            )
        channel = self.channels.get(number)
        if channel is None:
            self._open_channel(number, method)
            return
        if channel.closing:
            self._while_closing(channel, method)
            return
        try:
            if isinstance(method, commands.Channel.Close):
                if channel.assembling:
                    raise channel.content_expected()
                self._client_closed_channel(channel)
            elif isinstance(method, commands.Channel.Open):
                raise HardError(CHANNEL_ERROR, "second 'channel.open' seen", method.index)
            else:
                channel.handle_method(method)
        except SoftError as exc:
            self._close_channel(channel, exc, method.index)
        except HardError:
            raise
        except Exception:
            log.exception("internal error handling %s from %s", method.name, self.peer_name)
            raise HardError(INTERNAL_ERROR, f"internal error handling {method.name}") from None

    def _publish(self, number: int, payload: bytes) -> None:
        """A Basic.Publish method frame: the shortcut for the method every message
        starts with (what ``_channel_method`` would do for it, without its general
        dispatch). Anything unusual takes the general path, which names the problem."""
        channel = self.channels.get(number)
        method = framing.decode_publish(payload)
        if channel is None or channel.closing or method is None:
            self._channel_method(number, framing.decode_method(payload))
            return
        try:
            channel.begin_publish(method)
        except SoftError as exc:
            self._close_channel(channel, exc, method.index)

    def _content(self, kind: int, number: int, payload: bytes) -> None:
        """A content header or body frame: part of the publish its channel is assembling."""
        channel = self.channels.get(number)
        if channel is None:
            raise HardError(CHANNEL_ERROR, f"content frame on channel {number}, not open")
        if not channel.closing:
            self._to_channel(channel, kind, payload)

    def _to_channel(self, channel: Channel, kind: int, payload: bytes) -> None:
        """Hand a content frame to the open channel assembling its publish."""
        try:
            if kind == framing.BODY:
                channel.handle_body(payload)
            else:
                channel.handle_header(payload)
        except SoftError as exc:
            self._close_channel(channel, exc, _PUBLISH_INDEX)
        except HardError:
            raise
        except Exception:
            log.exception("internal error routing a publish from %s", self.peer_name)
            raise HardError(INTERNAL_ERROR, _ROUTING_FAILED) from None

    # ------------------------------------------------------------ channels

    def consumer_count(self) -> int:
        """Consumers on all channels of this connection (bounded like subscriptions)."""
        return sum(len(channel.consumers) for channel in self.channels.values())

    def _open_channel(self, number: int, method: base.Frame) -> None:
        if not isinstance(method, commands.Channel.Open):
            raise HardError(
                CHANNEL_ERROR, f"expected 'channel.open' on channel {number}", method.index
            )
        if number > self.channel_max:
            raise HardError(
                NOT_ALLOWED,
                f"channel {number} is above channel_max {self.channel_max}",
                method.index,
            )
        self.channels[number] = Channel(self, number)
        self.write(framing.method_frame(number, commands.Channel.OpenOk()))

    def _while_closing(self, channel: Channel, method: base.Frame) -> None:
        """After the server closed a channel, only Close/CloseOk matter (the rest is dropped)."""
        if isinstance(method, commands.Channel.CloseOk):
            del self.channels[channel.number]
        elif isinstance(method, commands.Channel.Close):
            self.write(framing.method_frame(channel.number, commands.Channel.CloseOk()))
            del self.channels[channel.number]

    def _client_closed_channel(self, channel: Channel) -> None:
        channel.closing = True
        channel.release()
        del self.channels[channel.number]
        self.write(framing.method_frame(channel.number, commands.Channel.CloseOk()))

    def _close_channel(self, channel: Channel, error: AmqpError, method_index: int) -> None:
        index = error.method_index or method_index
        log.debug("closing channel %d of %s: %s", channel.number, self.peer_name, error.text)
        channel.closing = True
        channel.release()
        self.write(framing.method_frame(channel.number, close_frame(error.code, str(error), index)))

    # ---------------------------------------------------------- connection

    def _start(self) -> None:
        self._stage = "start-ok"
        self.write(
            framing.method_frame(
                0,
                Connection.Start(
                    version_major=0,
                    version_minor=9,
                    server_properties={
                        "product": "minibroker",
                        "version": __version__,
                        "platform": "Python/Trio",
                        "information": "https://github.com/minibroker (AMQP 0-9-1 front end)",
                        "capabilities": (
                            {**CAPABILITIES, "connection.blocked": True}
                            if self._may_block
                            else dict(CAPABILITIES)
                        ),
                    },
                    mechanisms="PLAIN AMQPLAIN",
                    locales="en_US",
                ),
            )
        )

    def _connection_method(self, method: base.Frame) -> None:
        stage = self._stage
        if isinstance(method, Connection.Close):
            # Hand everything back before CloseOk, as RabbitMQ does: a client
            # that saw CloseOk may count on its exclusive queues being gone.
            self._release_all()
            self.write(framing.method_frame(0, Connection.CloseOk()))
            self._stage = "closing"
            self.closing = ConnectionClosed("the client closed the connection")
            return
        if isinstance(method, Connection.CloseOk):
            self._stage = "closing"
            self.closing = ConnectionClosed("connection closed")
            return
        if stage == "start-ok" and isinstance(method, Connection.StartOk):
            self._authenticate(method)
        elif stage == "tune-ok" and isinstance(method, Connection.TuneOk):
            self._tune(method)
        elif stage == "open-wait" and isinstance(method, Connection.Open):
            self._open(method)
        elif isinstance(method, Connection.UpdateSecret):
            raise HardError(NOT_IMPLEMENTED, f"{method.name} is not implemented", method.index)
        elif isinstance(method, Connection.Blocked | Connection.Unblocked):
            return
        else:
            # Once open, RabbitMQ's 504 ("unexpected method in connection state running").
            raise HardError(
                CHANNEL_ERROR if stage == "open" else UNEXPECTED_FRAME,
                f"unexpected {method.name} on channel 0",
                method.index,
            )

    def _authenticate(self, method: commands.Connection.StartOk) -> None:
        user, password = _credentials(method.mechanism, method.response)
        props = method.client_properties or {}
        capabilities = props.get("capabilities")
        if isinstance(capabilities, dict) and self._may_block:
            self._tell_blocked = capabilities.get("connection.blocked") is True
        name = props.get("connection_name") or props.get("product") or ""
        self.client_name = str(name)
        try:
            principal = self.settings.authenticate(password)
        except BrokerError:
            principal = None
        if principal is None:
            raise HardError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {method.mechanism}: "
                f"invalid credentials (user '{user}')",
                method.index,
            )
        self.user = user  # what a publish's user_id must say, if it says anything
        grants = getattr(principal, "grants", None)
        if isinstance(grants, Grants):
            self.access = Access(grants, user)
        self._stage = "tune-ok"
        self.write(
            framing.method_frame(
                0, Connection.Tune(CHANNEL_MAX, self.settings.frame_max, self.settings.heartbeat)
            )
        )

    def _tune(self, method: commands.Connection.TuneOk) -> None:
        frame_max = method.frame_max or self.settings.frame_max
        if frame_max < framing.MIN_FRAME_MAX or frame_max > self.settings.frame_max:
            raise HardError(
                NOT_ALLOWED,
                f"frame_max={frame_max} outside {framing.MIN_FRAME_MAX}..{self.settings.frame_max}",
                method.index,
            )
        self.frame_max = frame_max
        self._reader.frame_max = frame_max
        self.channel_max = min(method.channel_max or CHANNEL_MAX, CHANNEL_MAX)
        self._heartbeat = method.heartbeat
        self._stage = "open-wait"

    def _open(self, method: commands.Connection.Open) -> None:
        vhost = method.virtual_host
        namespace = "" if vhost in ("/", "") else vhost.lstrip("/")
        try:
            ns = self.broker.namespace(namespace)
        except BrokerError as exc:
            raise HardError(NOT_ALLOWED, f"vhost {vhost!r}: {exc.message}", method.index) from None
        self._vhost = vhost_of(ns)
        self._stage = "open"
        self.handshake_ended()
        self.write(framing.method_frame(0, Connection.OpenOk()))
        blocking = self.settings.blocking
        if blocking is not None:
            blocking.sessions.add(self)
            if blocking.reason is not None:
                self.alarm_changed(blocking.reason)
        if self._heartbeat:
            self._arm_heartbeat(self.now)

    def _close_connection(self, error: HardError) -> None:
        log.info("closing AMQP connection %s: %s", self.peer_name, error.text)
        self.write(
            framing.method_frame(
                0,
                Connection.Close(error.code, error.text, error.class_id, error.method_id),
            )
        )
        self._stage = "closing"
        self.closing = ConnectionClosed(error.text)
        self.wakeup()

    # -------------------------------------------------------- resource alarm

    @property
    def _may_block(self) -> bool:
        """Can this connection be blocked: a resource alarm is configured, or
        there is a disk to fill (``wait_for_room``)? Only then is the
        ``connection.blocked`` capability advertised."""
        return self.settings.blocking is not None or self.broker.storage is not None

    def alarm_changed(self, reason: str | None) -> None:
        """The server's resource alarm went on (``reason``) or off (None)."""
        if self.closed or self.closing is not None:
            return
        if reason is not None:
            self._tell_blocked_once(reason)
        elif self._room_wait is None:  # else the held publish goes first
            self._unblock()
        self.wakeup()

    def _tell_blocked_once(self, reason: str) -> None:
        if self._tell_blocked and not self._told_blocked:
            self._told_blocked = True
            self.write(framing.method_frame(0, Connection.Blocked(reason)))

    def _unblock(self) -> None:
        """Read the connection again (and tell the client, if it was told it was blocked)."""
        blocking = self.settings.blocking
        if self in self.settings.disk_full.blocked:
            return  # the disk is still full for it (disk_room_again reads it again)
        if self._told_blocked and (blocking is None or blocking.reason is None):
            self._told_blocked = False
            self.write(framing.method_frame(0, Connection.Unblocked()))
        # The shell's reader waits for the writer's round: wake it either way.
        self.input_blocked = False

    # -------------------------------------------------------------- full disk

    def wait_for_room(self, channel: Channel, retry: Callable[[], None]) -> None:
        """A publish the full disk refused in some of its queues (in all of
        them, without confirms): RabbitMQ's disk alarm, as the publisher sees it.

        The connection is read no further (the publisher waits, and TCP pushes
        back), a client that advertised ``connection.blocked`` gets
        Connection.Blocked ("low on disk"), and ``retry`` puts the message
        into the queues that refused it (those only: ``disk_room.py``) every
        :data:`ROOM_RETRY` seconds until the disk takes it; then the
        connection is read again (and Unblocked sent), in order. Closing
        the channel instead (406) would lose the message and, for a client
        that does not read while it publishes (kombu, so Celery), every later
        one too without a word: frames on a closed channel are dropped.
        """
        self._room_wait = (channel, retry)
        self.settings.disk_full.waiting.add(self)
        self.input_blocked = self.input_paused = True
        self._tell_blocked_once(LOW_ON_DISK)
        self._room_timer = self.broker.timers.call_at(self.now + ROOM_RETRY, self._retry_for_room)

    def _retry_for_room(self, now: float) -> None:
        self._room_timer = None
        held, self._room_wait = self._room_wait, None
        if held is None or self.closed or self.closing is not None:
            return
        channel, retry = held
        self.now = now
        if not channel.closing and self.channels.get(channel.number) is channel:
            try:
                retry()  # refused again: wait_for_room holds it again
            except SoftError as exc:
                self._close_channel(channel, exc, _PUBLISH_INDEX)
            except HardError as exc:
                self._close_connection(exc)
                return
            except Exception:
                log.exception("internal error routing a publish from %s", self.peer_name)
                self._close_connection(HardError(INTERNAL_ERROR, _ROUTING_FAILED))
                return
        if self._room_wait is None:
            self.settings.disk_full.done(self)
            self._unblock()
        self.wakeup()

    def _blocked_by_full_disk(self) -> None:
        """Stop reading after a Basic.Publish while another connection's
        publish waits for room: RabbitMQ's disk alarm blocks every publisher."""
        self.settings.disk_full.blocked.add(self)
        self.input_blocked = self.input_paused = True
        self._tell_blocked_once(LOW_ON_DISK)

    def disk_room_again(self) -> None:
        """The publishes that waited for room went through: read on."""
        if self.closed or self.closing is not None:
            return
        blocking = self.settings.blocking
        if blocking is None or blocking.reason is None:
            self._unblock()
        self.wakeup()

    # ----------------------------------------------------------- heartbeats

    def _arm_heartbeat(self, now: float) -> None:
        self._heartbeat_timer = self.broker.timers.call_at(
            now + self._heartbeat / 2, self._heartbeat_due
        )

    def _heartbeat_due(self, now: float) -> None:
        if self.closed or self.closing is not None:
            return
        if self._heard or self.input_blocked:  # a blocked client's heartbeats go unread
            self._silent_ticks = 0
        else:
            self._silent_ticks += 1
            if self._silent_ticks >= 4:  # two intervals without a frame
                log.info("AMQP connection %s missed its heartbeats", self.peer_name)
                self.closing = ConnectionClosed("missed heartbeats")
                self.wakeup()
                return
        self._heard = False
        if not self._said:
            self.write(framing.HEARTBEAT_FRAME)
            self.wakeup()
        self._said = False
        self._arm_heartbeat(now)

    # --------------------------------------------------------------- output

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._said = True
        self._ack_tail = None

    def confirm(self, channel: Channel, seq: int, *, ok: bool, durable: bool) -> None:
        """Basic.Ack (or Nack) publish ``seq``, after the fsync when it made a durable write."""
        self._after_fsync(durable, partial(self._send_confirm, channel, seq, ok))

    def committed(self, channel: Channel, *, durable: bool) -> None:
        """Tx.CommitOk, after the fsync when the commit made a durable write."""
        self._after_fsync(durable, partial(self._send_confirm, channel, _COMMIT, True))

    def reply_after_fsync(self, channel: Channel, reply: base.Frame, *, since: int) -> None:
        """The answer to a method that may change durable state (declare, bind,
        unbind, delete, purge), after the fsync when the write generation moved
        ``since`` it was called: a crash must not undo what the client saw done."""
        durable = self.broker.durability.generation != since
        self._after_fsync(durable, partial(self._send_reply, channel, reply))

    def _after_fsync(self, durable: bool, send: Callable[[bool], None]) -> None:
        """``send(True)`` now, or ``send(synced)`` once the group commit's fsync
        is done when the answer covers a durable write. Behind an answer already
        held every answer waits, so a channel's confirms and replies keep their order."""
        durability = self.broker.durability
        if self._holding or (durable and durability.holds_confirms):
            self._holding += 1
            durability.hold(partial(self._synced, send))
            return
        send(True)

    def _synced(self, send: Callable[[bool], None], error: BrokerError | None) -> None:
        self._holding -= 1
        send(error is None)
        self.wakeup()

    def _send_confirm(self, channel: Channel, seq: int, ok: bool, synced: bool) -> None:
        if channel.closing or self.channels.get(channel.number) is not channel:
            return  # the channel closed meanwhile: its confirms died with it
        if seq == _COMMIT:
            if synced:
                self.write(framing.method_frame(channel.number, commands.Tx.CommitOk()))
            else:
                failed = SoftError(PRECONDITION_FAILED, "the commit could not be made durable")
                self._close_channel(channel, failed, commands.Tx.Commit.index)
            return
        number = channel.number
        if not (ok and synced):
            self.write(framing.confirm_frame(number, seq, False))
        elif self._ack_tail == (number, seq - 1):
            # Coalesced as RabbitMQ does: the Ack already waiting to be sent
            # covers this one too. Confirms go out in sequence order per
            # channel, so every earlier one is settled (acked, or nacked
            # before the run began) and multiple=True acks exactly the run.
            self._out[-1] = framing.confirm_frame(number, seq, True, multiple=True)
            self._ack_tail = (number, seq)
        else:
            self.write(framing.confirm_frame(number, seq, True))
            self._ack_tail = (number, seq)

    def _send_reply(self, channel: Channel, reply: base.Frame, synced: bool) -> None:
        if channel.closing or self.channels.get(channel.number) is not channel:
            return
        if synced:
            self.write(framing.method_frame(channel.number, reply))
        elif self.closing is None:
            # As when the declaration cannot be written (durable.py): the
            # server cannot keep what it declares, which is a connection error.
            failed = f"could not sync durable state to disk ({reply.name})"
            self._close_connection(HardError(INTERNAL_ERROR, failed))

    @property
    def over_high_water(self) -> bool:
        return self._out_bytes >= self.settings.outbound_high_water

    @property
    def pending_output(self) -> int:
        """Bytes written and not yet handed to the socket."""
        return self._out_bytes

    @property
    def out_room(self) -> int:
        """Bytes the outbound buffer may still take before the high-water mark."""
        return self.settings.outbound_high_water - self._out_bytes

    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            data = b""
        else:
            data = out[0] if len(out) == 1 else b"".join(out)
            self._out = []
            self._out_bytes = 0
            self._ack_tail = None
        if self.starved and self._vhost is not None and not self.closed:
            self.starved = False
            for channel in list(self.channels.values()):
                for consumer in list(channel.consumers.values()):
                    self.vhost.consumers.start(consumer, self.now)
        return data

    # ----------------------------------------------------------- lifecycle

    def connection_lost(self, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        if self.closed:
            return
        self.closed = True
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
        if self._room_timer is not None:  # a publish the full disk refused goes with it
            self._room_timer.cancel()
            self._room_timer, self._room_wait = None, None
        disk_full = self.settings.disk_full
        disk_full.blocked.discard(self)
        disk_full.done(self)  # the next publisher finds out whether the disk has room
        if self.settings.blocking is not None:
            self.settings.blocking.sessions.discard(self)
        self._release_all()

    def _release_all(self) -> None:
        """Requeue what the connection holds, drop its consumers and exclusive queues (once)."""
        if self._vhost is None or self._released:
            return
        self._released = True
        for channel in list(self.channels.values()):
            channel.closing = True
            channel.release()
        self.channels.clear()
        self.broker.disconnect(self, self._vhost.namespace, self.now)

    def shutdown(self) -> None:
        error = ShuttingDown("the server is shutting down")
        if self._stage == "open":
            self.kick(error)
        elif self.closing is None:
            self.closing = error
            self.wakeup()


def _credentials(mechanism: str, response: str | bytes) -> tuple[str, str | None]:
    """(user, password) from a SASL PLAIN or AMQPLAIN response."""
    raw = response.encode() if isinstance(response, str) else response
    if mechanism == "PLAIN":
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            raise HardError(ACCESS_REFUSED, "malformed PLAIN response")
        return parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
    if mechanism == "AMQPLAIN":
        try:
            table, _ = decoding.field_table(_LONG.pack(len(raw)) + raw)
        except Exception:
            raise HardError(ACCESS_REFUSED, "malformed AMQPLAIN response") from None
        login, password = table.get("LOGIN", ""), table.get("PASSWORD")
        return str(login), None if password is None else str(password)
    raise HardError(ACCESS_REFUSED, f"unsupported authentication mechanism {mechanism!r}")

