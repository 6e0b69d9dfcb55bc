"""One AMQP channel: its consumers, delivery tags, publisher confirms and publishes.

Delivery tags are the channel's own (1, 2, 3 ... across Deliver and GetOk);
each stands for one core delivery id of one queue, so acks, nacks and
rejects become ``Queue.ack`` / ``Queue.nack`` calls grouped by queue. The
core's delivery ids are per namespace and never reused, and a message
fetched for an AMQP consumer has no visibility deadline
(``UNTIL_SETTLED``): it stays with this connection until it is settled or
the channel closes, when everything unacked is requeued in tag order.

A publish is three frames or more (Basic.Publish, a content header, body
frames); the channel assembles them, then routes the message through the
vhost and, in confirm mode, answers with Basic.Ack or Basic.Nack (held until
the group commit's fsync when a durable queue took the message). A
transactional channel (Tx.Select) holds its publishes and settlements until
Tx.Commit (``transactions.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from pamqp import base, commands

from minibroker.amqp import framing
from minibroker.amqp.consumers import PULL_BATCH
from minibroker.amqp.disk_room import WaitingPublish
from minibroker.amqp.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    INTERNAL_ERROR,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    HardError,
    SoftError,
    reply_text,
)
from minibroker.amqp.exchanges import DEFAULT, TYPES
from minibroker.amqp.messages import from_core, to_core
from minibroker.amqp.permissions import ADMIN, READ, WRITE
from minibroker.amqp.sender_selected import BCC, CC, InvalidRouteHeader, header_routes
from minibroker.amqp.transactions import HeldPublish, Transaction
from minibroker.core.peer import Peer
from minibroker.core.queue_message import Message
from minibroker.core.queue_options import UNTIL_SETTLED
from minibroker.core.queues import Queue
from minibroker.core.topics import NoRoom
from minibroker.errors import BrokerError, StorageError, UnknownDelivery

if TYPE_CHECKING:
    from minibroker.amqp.connection import AmqpSession

Basic = commands.Basic

#: The pseudo-queue a client consumes from to receive direct replies.
REPLY_TO: str = "amq.rabbitmq.reply-to"
_REPLY_PREFIX = REPLY_TO + "."
#: The class id of Basic (its content headers carry it).
_BASIC_CLASS: Final = Basic.Publish.index >> 16
#: Property flags of headers, priority, reply_to and expiration (the ones routing
#: reads) and user_id (checked against the login), in the first and the second
#: byte of the raw properties.
_ROUTING_PROPERTIES = 0x2000 | 0x0800 | 0x0200 | 0x0100 | 0x0010
_ROUTING_FLAGS_HIGH: Final = _ROUTING_PROPERTIES >> 8
_ROUTING_FLAGS_LOW: Final = _ROUTING_PROPERTIES & 0xFF


#: An unacked delivery: (queue, the core's delivery id, the consumer it went to or
#: None for Basic.Get). A plain tuple: one is made per delivered message.
Unacked: TypeAlias = tuple[str, int, "ChannelConsumer | None"]
#: No message's headers: a value no ``headers`` attribute holds (see ``deliver``).
_NOT_HEADERS: Final = object()


class ChannelConsumer:
    """A Basic.Consume: pushes a queue's messages to this channel within its credit."""

    def __init__(
        self, channel: Channel, tag: str, queue: str, *, no_ack: bool, exclusive: bool
    ) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        #: Per-consumer prefetch (basic.qos global=False); 0 is unlimited.
        self.prefetch = channel.prefetch
        self.unacked = 0
        self._method_head = framing.deliver_method_head(tag)

    @property
    def peer(self) -> Peer:
        return self.channel.session

    def credit(self) -> int:
        channel = self.channel
        session = channel.session
        if not session.delivering or channel.closing or channel.paused:
            return 0
        if session.over_high_water:
            session.starved = True  # fed again once the buffer drains
            return 0
        if self.no_ack:
            return PULL_BATCH
        limit = PULL_BATCH
        if self.prefetch:
            limit = min(limit, self.prefetch - self.unacked)
        if channel.global_prefetch:
            limit = min(limit, channel.global_prefetch - channel.consumer_unacked)
        return limit

    def room(self) -> int:
        """Bytes of deliveries the connection's outbound buffer may still take."""
        return self.channel.session.out_room

    def deliver(self, queue: Queue, messages: list[Message], now: float) -> None:
        """Encode the fetched messages (one write for the batch) and note them unacked."""
        channel = self.channel
        session = channel.session
        no_ack = self.no_ack
        number, frame_max, head = channel.number, session.frame_max, self._method_head
        name = queue.name
        unacked = channel.unacked
        tag = channel.next_tag
        if len(messages) == 1:  # no run to share anything with
            m = messages[0]
            found = from_core(m.headers, name)
            address = framing.encoded_address(found.exchange, found.routing_key)
            session.write(
                framing.delivery_frames(
                    number,
                    head,
                    tag,
                    m.delivery_count > 1,
                    address,
                    found.properties,
                    m.body,
                    frame_max,
                )
            )
            if not no_ack:
                unacked[tag] = (name, m.delivery_id, self)
            tag += 1
        else:
            out: list[bytes] = []
            # Messages that share a headers object (messages.py shares them
            # between messages with the same exchange, key and properties; None
            # is the property-less default-exchange publish) share an address
            # and properties: one DeliveryRun encodes them, rebuilt only when
            # the headers change, which is rare within one fetch.
            last: object = _NOT_HEADERS
            run: framing.DeliveryRun | None = None
            for m in messages:
                headers = m.headers
                if headers is not last or run is None:
                    last = headers
                    found = from_core(headers, name)
                    address = framing.encoded_address(found.exchange, found.routing_key)
                    run = framing.DeliveryRun(number, head, address, found.properties, frame_max)
                run.add(out, tag, m.delivery_count > 1, m.body)
                if not no_ack:
                    unacked[tag] = (name, m.delivery_id, self)
                tag += 1
            session.write(b"".join(out))
        channel.next_tag = tag
        if no_ack:
            queue.ack(session, [m.delivery_id for m in messages], now)
        else:
            self.unacked += len(messages)
            channel.consumer_unacked += len(messages)
        # Often called while another connection's input is dispatched (its
        # publish made these messages ready): wake this connection's writer.
        session.wakeup()

    def cancelled_by_server(self, now: float) -> None:
        """The queue went away: Basic.Cancel to the client (consumer_cancel_notify)."""
        channel = self.channel
        if channel.consumers.pop(self.tag, None) is not None and not channel.closing:
            channel.write(Basic.Cancel(self.tag, nowait=True))
            channel.session.wakeup()


class Channel:
    def __init__(self, session: AmqpSession, number: int) -> None:
        self.session = session
        self.number = number
        #: Set once the server sent Channel.Close: frames are ignored until CloseOk.
        self.closing = False
        #: Channel.Flow(active=false): no deliveries to this channel's consumers until
        #: Flow(active=true) (publishing and Basic.Get go on).
        self.paused = False
        self.consumers: dict[str, ChannelConsumer] = {}
        self.next_tag = 1
        self.unacked: dict[int, Unacked] = {}
        #: Unacked deliveries of this channel's consumers (what global prefetch limits).
        self.consumer_unacked = 0
        self.prefetch = 0
        self.global_prefetch = 0
        self.confirming = False
        self.publish_seq = 0
        #: Set by Tx.Select: what is held until the next commit or rollback.
        self.transaction: Transaction[Unacked] | None = None
        #: A commit waiting for room on the full disk (``_commit_from``).
        self._committing: Transaction[Unacked] | None = None
        self.reply_token: str | None = None
        self._reply_tag = ""
        #: The publish being assembled: its method, then (once its content
        #: header is in) its raw property bytes and body size, and the body
        #: frames received so far.
        self._publish: commands.Basic.Publish | None = None
        self._properties: bytes | None = None
        self._expected = 0
        self._body: list[bytes] = []
        self._body_size = 0

    # --------------------------------------------------------------- output

    def write(self, method: base.Frame, properties: bytes | None = None, body: bytes = b"") -> None:
        session = self.session
        data = framing.method_frame(self.number, method)
        if properties is not None:
            data += framing.content_frames(self.number, properties, body, session.frame_max)
        session.write(data)

    def write_delivery(
        self,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> None:
        """Basic.Deliver and its content (the per-message path: encoded by hand)."""
        self.session.write(
            framing.delivery_frames(
                self.number,
                framing.deliver_method_head(consumer_tag),
                delivery_tag,
                redelivered,
                framing.encoded_address(exchange, routing_key),
                properties,
                body,
                self.session.frame_max,
            )
        )

    # ---------------------------------------------------------------- input

    def begin_publish(self, method: commands.Basic.Publish) -> None:
        """A Basic.Publish (the session's shortcut for it): its content frames follow."""
        if self._publish is not None:
            raise self.content_expected()
        self._publish_method(method)

    def handle_method(self, method: base.Frame) -> None:
        if self._publish is not None:
            raise self.content_expected()
        handler = _HANDLERS.get(type(method))
        if handler is None:
            if isinstance(method, Basic.RecoverAsync):
                raise HardError(NOT_IMPLEMENTED, f"{method.name} is not implemented", method.index)
            # A method only the server sends (an -Ok, a delivery): RabbitMQ's 503.
            raise HardError(
                COMMAND_INVALID, f"unexpected {method.name} from a client", method.index
            )
        handler(self, method)

    @property
    def assembling(self) -> bool:
        """A Basic.Publish came and its content has not all come yet."""
        return self._publish is not None

    def content_expected(self) -> HardError:
        """505 for a frame that broke into a publish's content, in RabbitMQ's
        words: it names the Basic.Publish and the frame that was due."""
        if self._properties is None:
            text = "expected content header for class 60, got non content header frame instead"
        else:
            text = "expected content body, got non content body frame instead"
        return HardError(UNEXPECTED_FRAME, text, Basic.Publish.index)

    def handle_header(self, payload: bytes) -> None:
        """A content header frame's payload: the publish's body size and properties."""
        if self._publish is None:
            raise HardError(UNEXPECTED_FRAME, "unexpected content header frame")
        if self._properties is not None:
            raise self.content_expected()
        class_id, body_size, properties = framing.decode_content_header(payload)
        if class_id != _BASIC_CLASS:
            raise HardError(
                UNEXPECTED_FRAME,
                f"content header for class {class_id}, expected class 60",
                Basic.Publish.index,
            )
        session = self.session
        limit = session.max_message_bytes
        if body_size > limit:
            self._publish = None
            raise SoftError(
                PRECONDITION_FAILED,
                f"message size {body_size} is larger than configured max size {limit}",
                Basic.Publish.index,
            )
        budget = session.settings.max_content_in_progress
        if session.content_in_progress + body_size > budget:
            raise HardError(
                NOT_ALLOWED,
                f"more than {budget} bytes of message bodies in progress on this connection",
                Basic.Publish.index,
            )
        session.content_in_progress += body_size
        self._properties = properties
        self._expected = body_size
        if body_size == 0:
            self._complete(b"")

    def handle_body(self, payload: bytes) -> None:
        properties = self._properties
        if properties is None:
            if self._publish is not None:
                raise self.content_expected()
            raise HardError(UNEXPECTED_FRAME, "unexpected content body frame")
        expected = self._expected
        if len(payload) == expected and not self._body_size:
            # The usual case, inlined (once per message): the whole body in one frame.
            publish = self._publish
            assert publish is not None
            self.session.content_in_progress -= expected
            self._publish = self._properties = None
            self._route(publish, properties, payload)
            return
        size = self._body_size + len(payload)
        if size > expected:
            raise HardError(UNEXPECTED_FRAME, "content body exceeds the size in its header")
        if size < expected:
            self._body.append(payload)
            self._body_size = size
        else:  # the last of several body frames
            self._body.append(payload)
            self._complete(b"".join(self._body))

    def _complete(self, body: bytes) -> None:
        publish, properties = self._publish, self._properties
        assert publish is not None and properties is not None
        self._drop_content()
        self._route(publish, properties, body)

    def _drop_content(self) -> None:
        """Forget the publish being assembled (complete, or the channel closes)."""
        if self._properties is not None:
            self.session.content_in_progress -= self._expected
        self._publish, self._properties, self._expected = None, None, 0
        if self._body_size or self._body:
            self._body, self._body_size = [], 0

    # -------------------------------------------------------------- publish

    def _route(
        self,
        publish: commands.Basic.Publish,
        raw: bytes,
        body: bytes,
        *,
        hold: Callable[[WaitingPublish], None] | None = None,
    ) -> None:
        """Route one publish. A message the full disk refused in some of its
        queues is held, and the connection with it, until those queues have
        it too (``AmqpSession.wait_for_room``, ``disk_room.py``); ``hold``, a
        commit's, takes it instead, to hold the rest of the commit behind it.
        In confirm mode a message no queue took is nacked at once instead
        (nothing is stored: the publisher may send it again without making a
        duplicate)."""
        session = self.session
        vhost = session.vhost
        seq = 0
        if self.confirming:
            self.publish_seq += 1
            seq = self.publish_seq
        exchange = vhost.exchange(publish.exchange)
        if exchange.internal:
            raise SoftError(
                ACCESS_REFUSED, f"cannot publish to internal exchange '{exchange.name}'"
            )
        headers: Mapping[str, object] | None = None
        expiration: str | None = None
        priority: int | None = None
        decoded: commands.Basic.Properties | None = None
        if raw[0] & _ROUTING_FLAGS_HIGH or raw[1] & _ROUTING_FLAGS_LOW:
            # Only these properties matter to routing; most messages have none
            # of them and skip decoding altogether, and most others are read
            # without pamqp (routing_properties).
            found = framing.routing_properties(raw)
            if found is not None:
                expiration, priority = found.expiration, found.priority
                if found.reply_to == REPLY_TO:
                    raw = framing.replace_span(raw, found.reply_to_span, self._reply_address())
            else:
                decoded = properties = framing.decode_properties(raw)
                if properties.user_id is not None and properties.user_id != session.user:
                    raise SoftError(  # RabbitMQ's validated user ID
                        PRECONDITION_FAILED,
                        f"user_id property set to '{properties.user_id}' "
                        f"but authenticated user was '{session.user}'",
                    )
                headers, expiration = properties.headers, properties.expiration
                priority = properties.priority
                if properties.reply_to == REPLY_TO:
                    properties.reply_to = self._reply_address()
                    raw = framing.encode_properties(properties)
        key = publish.routing_key
        reply = exchange.name == DEFAULT and key.startswith(_REPLY_PREFIX)
        if session.access is not None and not reply:
            session.access.exchange(WRITE, exchange.name, exchange.type, key, vhost.name)
        cc: list[str] = []
        bcc: list[str] = []
        if headers and (CC in headers or BCC in headers):
            # Sender-selected distribution (sender_selected.py): checked
            # before a transaction holds the publish, as RabbitMQ does.
            try:
                cc, bcc = header_routes(headers, CC), header_routes(headers, BCC)
            except InvalidRouteHeader as exc:
                raise SoftError(PRECONDITION_FAILED, str(exc), Basic.Publish.index) from None
        if self.transaction is not None:
            self._hold_publish(self.transaction, publish, raw, body)
            return
        if headers and BCC in headers:
            # Its recipients stay hidden: gone from the headers (the message keeps the keys).
            assert decoded is not None  # a headers table is only read by decoding
            decoded.headers = {k: v for k, v in headers.items() if k != BCC}  # type: ignore[misc]
            headers = decoded.headers
            raw = framing.encode_properties(decoded)
        generation = session.broker.durability.generation
        if reply:
            target = vhost.reply_targets.get(key[len(_REPLY_PREFIX) :])
            delivered = target is not None and target[1].deliver_reply(
                key, raw, publish.exchange, body
            )
            taken, refused = (1 if delivered else 0), 0
        else:
            message = to_core(publish.exchange, key, raw, headers, body, bcc)
            ttl = None if expiration is None else _expiration(expiration)
            no_room: list[NoRoom] = []
            try:
                taken, refused = vhost.route(
                    exchange, key, message, headers, session.now, ttl, priority, cc + bcc, no_room
                )
            except BrokerError as exc:  # storage failing, limits
                if not self.confirming:
                    raise SoftError(PRECONDITION_FAILED, exc.message) from None
                session.confirm(self, seq, ok=False, durable=False)
                return
            if no_room:
                if self.confirming and not taken:
                    session.confirm(self, seq, ok=False, durable=False)
                    return
                # As under RabbitMQ's disk alarm: the publisher waits, nothing
                # is lost, and no queue gets the message twice.
                waiting = WaitingPublish(
                    publish, raw, body, seq, generation, ttl, priority, taken, refused, no_room
                )
                if hold is not None:
                    hold(waiting)
                else:
                    session.wait_for_room(self, partial(self._put_again, waiting))
                return
        self._routed(publish, raw, body, taken, refused, seq, generation)

    def _put_again(self, waiting: WaitingPublish) -> None:
        """Retry a held publish into the queues the full disk refused (see ``_route``)."""
        session = self.session
        try:
            done = waiting.put_again(session.vhost, session.now)
        except BrokerError as exc:  # the disk fails rather than fills
            if not waiting.seq:
                raise SoftError(PRECONDITION_FAILED, exc.message, Basic.Publish.index) from None
            session.confirm(self, waiting.seq, ok=False, durable=False)
            return
        if not done:
            session.wait_for_room(self, partial(self._put_again, waiting))
            return
        self._routed_when_stored(waiting, waiting.seq)

    def _routed_when_stored(self, waiting: WaitingPublish, seq: int) -> None:
        """:meth:`_routed` for a publish held for disk room, once every queue
        has it (``seq`` 0 inside a transaction: its Tx.CommitOk answers)."""
        self._routed(
            waiting.publish,
            waiting.properties,
            waiting.body,
            waiting.taken,
            waiting.refused,
            seq,
            waiting.generation,
        )

    def _routed(
        self,
        publish: commands.Basic.Publish,
        raw: bytes,
        body: bytes,
        taken: int,
        refused: int,
        seq: int,
        generation: int,
    ) -> None:
        """Answer a routed publish: Basic.Return when mandatory and no queue
        matched, then its confirm (after the fsync when it made a durable write)."""
        if not taken and not refused and publish.mandatory:
            # A full queue that refused it was a route (RabbitMQ returns only
            # what matched no queue): the publisher learns of it by a nack.
            returned = framing.unchecked(
                Basic.Return,
                reply_code=NO_ROUTE,
                reply_text="NO_ROUTE",
                exchange=publish.exchange,
                routing_key=publish.routing_key,
            )
            self.write(returned, raw, body)
        if seq:
            durable = self.session.broker.durability.generation != generation
            self.session.confirm(self, seq, ok=not refused, durable=durable)

    def _reply_address(self) -> str:
        """What ``amq.rabbitmq.reply-to`` in a publish's reply_to becomes: this channel's."""
        if self.reply_token is None:
            raise SoftError(PRECONDITION_FAILED, "fast reply consumer does not exist")
        return _REPLY_PREFIX + self.reply_token

    def _hold_publish(
        self,
        transaction: Transaction[Unacked],
        publish: commands.Basic.Publish,
        raw: bytes,
        body: bytes,
    ) -> None:
        held = HeldPublish(publish, raw, body)
        session = self.session
        budget = session.settings.max_content_in_progress
        if session.transactions_size + held.size > budget:
            raise SoftError(
                PRECONDITION_FAILED,
                f"transactions on this connection would hold more than {budget} bytes; "
                "commit more often",
                Basic.Publish.index,
            )
        session.transactions_size += held.size
        transaction.size += held.size
        transaction.publishes.append(held)

    def deliver_reply(
        self, routing_key: str, properties: bytes, exchange: str, body: bytes
    ) -> bool:
        """A direct reply for this channel's ``amq.rabbitmq.reply-to`` consumer (no ack).

        A reply goes out at once, past the outbound high-water mark (it has
        no queue to wait in), but not past ``max_content_in_progress`` of
        unsent output: a requester that stopped reading would otherwise
        have every reply a responder sends it buffered here, without limit.
        Beyond that the reply is dropped, as one to a requester that is
        gone, and the publisher learns it as unroutable (False).
        """
        session = self.session
        if self.closing or self.reply_token is None or not session.delivering:
            return False
        if session.pending_output > session.settings.max_content_in_progress:
            return False
        tag = self.next_tag
        self.next_tag = tag + 1
        self.write_delivery(self._reply_tag, tag, False, exchange, routing_key, properties, body)
        session.wakeup()
        return True

    # ------------------------------------------------------------- settling

    def _tags(self, delivery_tag: int, multiple: bool, method: base.Frame) -> list[int]:
        """The tags a settlement names, as RabbitMQ's ``collect_acks`` reads them.

        Tag 0 with ``multiple`` is everything outstanding, even nothing (the
        spec's "all outstanding messages"). Any other tag must itself be
        outstanding, with ``multiple`` too: a tag never delivered or already
        settled is 406 and settles nothing, rather than the tags below it.
        """
        if multiple and delivery_tag == 0:
            return list(self.unacked)
        if delivery_tag not in self.unacked:
            raise SoftError(
                PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}", method.index
            )
        if not multiple:
            return [delivery_tag]
        # ``unacked`` holds its tags in increasing order (tags only grow).
        tags = []
        for t in self.unacked:
            if t > delivery_tag:
                break
            tags.append(t)
        return tags

    def settle(self, tags: list[int], action: str) -> None:
        """Ack (``"ack"``), requeue (``"requeue"``) or drop/dead-letter (``"drop"``) deliveries."""
        session = self.session
        by_queue: dict[str, list[int]] = {}
        freed: dict[ChannelConsumer, None] = {}
        pop = self.unacked.pop
        # Runs of deliveries share a queue and a consumer: look each up once per run.
        last_queue: str | None = None
        ids: list[int] = []
        last_consumer: ChannelConsumer | None = None
        settled = 0
        for tag in tags:
            name, delivery_id, consumer = pop(tag)
            if name != last_queue:
                ids = by_queue.setdefault(name, [])
                last_queue = name
            ids.append(delivery_id)
            if consumer is not None:
                consumer.unacked -= 1
                settled += 1
                if consumer is not last_consumer:
                    freed[consumer] = None
                    last_consumer = consumer
        self.consumer_unacked -= settled
        queues = session.vhost.namespace.queues
        now = session.now
        for name, ids in by_queue.items():
            queue = queues.find(name)
            if queue is None:
                continue  # deleted with its messages
            try:
                _settle(queue, session, ids, action, now)
            except UnknownDelivery as exc:
                # The queue was deleted and declared again: skip the old ids.
                bad = set(exc.details.get("deliveries", ()))  # type: ignore[call-overload]
                _settle(queue, session, [i for i in ids if i not in bad], action, now)
            except StorageError as exc:
                # The queue's journal refuses (an fsync of it failed): the
                # settlement is not made; the connection's deliveries go back.
                raise HardError(
                    INTERNAL_ERROR, f"cannot write durable state: {exc.message}"
                ) from None
        if session.closed or self.closing:
            return
        starting = list(self.consumers.values()) if self.global_prefetch else list(freed)
        for consumer in starting:
            if consumer.tag in self.consumers:
                session.vhost.consumers.start(consumer, now)

    def _settle_or_hold(self, tags: list[int], action: str) -> None:
        """Settle now, or, in a transaction, set the deliveries aside until the commit."""
        transaction = self.transaction
        if transaction is None:
            self.settle(tags, action)
        else:
            transaction.settlements.append(({t: self.unacked.pop(t) for t in tags}, action))

    def _end_transaction(self, transaction: Transaction[Unacked]) -> None:
        """Drop what ``transaction`` holds: publishes go, set-aside deliveries come back."""
        self.session.transactions_size -= transaction.size
        aside = transaction.set_aside()
        if aside:
            self.unacked = dict(sorted({**self.unacked, **aside}.items()))

    def release(self) -> None:
        """The channel closes: cancel its consumers, requeue what it holds, in tag order."""
        session = self.session
        vhost = session.vhost
        self._drop_content()
        if self._committing is not None:  # closed while its commit waited for room
            self._end_transaction(self._committing)
            self._committing = None
        if self.transaction is not None:
            self._end_transaction(self.transaction)
            self.transaction = None
        for consumer in list(self.consumers.values()):
            vhost.remove_consumer(consumer, session.now)
        self.consumers.clear()
        if self.reply_token is not None:
            vhost.remove_reply_target(self.reply_token)
            self.reply_token = None
        if self.unacked:
            self.settle(list(self.unacked), "requeue")

    # -------------------------------------------------------------- methods

    def _qos(self, method: commands.Basic.Qos) -> None:
        if method.prefetch_size:
            raise HardError(
                NOT_IMPLEMENTED,
                "prefetch_size!=0 (" + str(method.prefetch_size) + ")",
                method.index,
            )
        if method.global_:
            self.global_prefetch = method.prefetch_count
        else:
            self.prefetch = method.prefetch_count
            for consumer in self.consumers.values():
                consumer.prefetch = method.prefetch_count
        self.write(Basic.QosOk())
        for consumer in list(self.consumers.values()):
            self.session.vhost.consumers.start(consumer, self.session.now)

    def _consume(self, method: commands.Basic.Consume) -> None:
        session = self.session
        tag = method.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
        if tag in self.consumers or (tag == self._reply_tag and self.reply_token):
            raise HardError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", method.index)
        limit = session.broker.config.limits.max_subscriptions_per_connection
        if session.consumer_count() >= limit:
            raise HardError(
                NOT_ALLOWED, f"more than {limit} consumers on this connection", method.index
            )
        if method.queue == REPLY_TO:
            self._consume_replies(method, tag)
            return
        queue = method.queue or session.last_queue
        if session.access is not None:
            session.access.queue(READ, queue, session.vhost.name)
        consumer = ChannelConsumer(
            self, tag, queue, no_ack=method.no_ack, exclusive=method.exclusive
        )
        session.vhost.add_consumer(consumer, session.conn_id)
        self.consumers[tag] = consumer
        if not method.nowait:
            self.write(Basic.ConsumeOk(tag))
        session.vhost.consumers.start(consumer, session.now)

    def _consume_replies(self, method: commands.Basic.Consume, tag: str) -> None:
        if not method.no_ack:
            raise SoftError(PRECONDITION_FAILED, "reply consumer cannot acknowledge", method.index)
        if self.reply_token is not None:
            raise SoftError(PRECONDITION_FAILED, "reply consumer already set", method.index)
        session = self.session
        self.reply_token = session.vhost.add_reply_target(session.conn_id, self)
        self._reply_tag = tag
        if not method.nowait:
            self.write(Basic.ConsumeOk(tag))

    def _cancel(self, method: commands.Basic.Cancel) -> None:
        tag = method.consumer_tag or ""
        if self.reply_token is not None and tag == self._reply_tag:
            self.session.vhost.remove_reply_target(self.reply_token)
            self.reply_token = None
        consumer = self.consumers.pop(tag, None)
        if consumer is not None:
            self.session.vhost.remove_consumer(consumer, self.session.now)
        if not method.nowait:
            self.write(Basic.CancelOk(tag))

    def _publish_method(self, method: commands.Basic.Publish) -> None:
        if method.immediate:
            raise HardError(NOT_IMPLEMENTED, "immediate=true", method.index)  # as RabbitMQ 3
        self._publish = method

    def _get(self, method: commands.Basic.Get) -> None:
        session = self.session
        vhost = session.vhost
        name = method.queue or session.last_queue
        if session.access is not None:
            session.access.queue(READ, name, vhost.name)
        queue = vhost.queue(name)
        vhost.check_owner(name, session.conn_id)
        vhost.touch(name, session.now)
        messages = queue.fetch(session, 1, session.now, UNTIL_SETTLED)
        if not messages:
            self.write(Basic.GetEmpty())
            return
        m = messages[0]
        tag = self.next_tag
        self.next_tag = tag + 1
        address = from_core(m.headers, name)
        self.write(
            framing.unchecked(
                Basic.GetOk,
                delivery_tag=tag,
                redelivered=m.delivery_count > 1,
                exchange=address.exchange,
                routing_key=address.routing_key,
                message_count=queue.ready_count,
            ),
            address.properties,
            m.body,
        )
        if method.no_ack:
            queue.ack(session, [m.delivery_id], session.now)
        else:
            self.unacked[tag] = (name, m.delivery_id, None)

    def _ack(self, method: commands.Basic.Ack) -> None:
        self._settle_or_hold(self._tags(method.delivery_tag or 0, method.multiple, method), "ack")

    def _nack(self, method: commands.Basic.Nack) -> None:
        tags = self._tags(method.delivery_tag or 0, method.multiple, method)
        self._settle_or_hold(tags, "requeue" if method.requeue else "drop")

    def _reject(self, method: commands.Basic.Reject) -> None:
        tags = self._tags(method.delivery_tag or 0, False, method)
        self._settle_or_hold(tags, "requeue" if method.requeue else "drop")

    def _recover(self, method: commands.Basic.Recover) -> None:
        if not method.requeue:
            raise HardError(NOT_IMPLEMENTED, "requeue=false", method.index)
        if self.unacked:
            self.settle(list(self.unacked), "requeue")
        self.write(Basic.RecoverOk())

    def _confirm_select(self, method: commands.Confirm.Select) -> None:
        if self.transaction is not None:
            raise SoftError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")
        self.confirming = True
        if not method.nowait:
            self.write(commands.Confirm.SelectOk())

    def _tx_select(self, method: commands.Tx.Select) -> None:
        if self.confirming:
            raise SoftError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")
        if self.transaction is None:
            self.transaction = Transaction()
        self.write(commands.Tx.SelectOk())

    def _tx_commit(self, method: commands.Tx.Commit) -> None:
        """Route the held publishes, apply the held settlements; CommitOk once durable."""
        transaction = self._transaction()
        session = self.session
        session.transactions_size -= transaction.size
        transaction.size = 0
        # The next transaction's; nothing is read on this channel while a
        # commit waits for room, so it stays empty until the commit is done.
        self.transaction = Transaction()
        self._commit_from(transaction, 0, session.broker.durability.generation, None)

    def _commit_from(
        self,
        transaction: Transaction[Unacked],
        start: int,
        generation: int,
        waiting: WaitingPublish | None,
    ) -> None:
        """Commit ``transaction`` from its publish ``start`` on, after ``waiting``
        (a publish of it the full disk refused in some queues) has them all.

        A full disk holds the commit as it holds a publish (the connection is
        read no further, Connection.Blocked, a retry each ROOM_RETRY): the
        commit is finished, every publish in order and then the settlements,
        once there is room, rather than failed with its first publishes
        stored and the rest not. A disk that fails (an I/O error, a failed
        fsync) is not waited for: 406, with what was routed before it.
        """
        session = self.session
        self._committing = transaction
        next_transaction, self.transaction = self.transaction, None  # so _route routes
        held: list[WaitingPublish] = []
        try:
            if waiting is not None and not self._finish_waiting(waiting):
                held.append(waiting)  # still refused: ``start`` stays past it
            publishes = transaction.publishes
            while not held and start < len(publishes):
                publish = publishes[start]
                start += 1
                self._route(publish.method, publish.properties, publish.body, hold=held.append)
        except BaseException:
            self._committing = None
            self._end_transaction(transaction)  # nothing settled: the deliveries come back
            raise
        finally:
            self.transaction = next_transaction
        if held:
            retry = partial(self._commit_from, transaction, start, generation, held[0])
            session.wait_for_room(self, retry)
            return
        self._committing = None
        for deliveries, action in transaction.settlements:
            self.unacked.update(deliveries)
            self.settle(list(deliveries), action)
        session.committed(self, durable=session.broker.durability.generation != generation)

    def _finish_waiting(self, waiting: WaitingPublish) -> bool:
        """Put a commit's held publish into the queues still missing it; True
        (and its Basic.Return, if due) once every one has it."""
        try:
            done = waiting.put_again(self.session.vhost, self.session.now)
        except BrokerError as exc:  # the disk fails rather than fills
            raise SoftError(PRECONDITION_FAILED, exc.message, Basic.Publish.index) from None
        if done:
            self._routed_when_stored(waiting, 0)
        return done

    def _tx_rollback(self, method: commands.Tx.Rollback) -> None:
        transaction = self._transaction()
        self._end_transaction(transaction)
        self.transaction = Transaction()
        self.write(commands.Tx.RollbackOk())

    def _transaction(self) -> Transaction[Unacked]:
        if self.transaction is None:
            raise SoftError(PRECONDITION_FAILED, "channel is not transactional")
        return self.transaction

    def _flow(self, method: commands.Channel.Flow) -> None:
        self.paused = not method.active
        self.write(commands.Channel.FlowOk(method.active))
        if method.active:
            for consumer in list(self.consumers.values()):
                self.session.vhost.consumers.start(consumer, self.session.now)

    def _exchange_declare(self, method: commands.Exchange.Declare) -> None:
        if method.exchange_type not in TYPES and not method.passive:
            raise HardError(
                COMMAND_INVALID, f"unknown exchange type '{method.exchange_type}'", method.index
            )
        session = self.session
        access = session.access
        if access is not None and not method.passive:
            access.exchange_itself(ADMIN, method.exchange, session.vhost.name)
        generation = session.broker.durability.generation
        session.vhost.declare_exchange(
            method.exchange,
            method.exchange_type,
            passive=method.passive,
            durable=method.durable,
            auto_delete=method.auto_delete,
            internal=method.internal,
            arguments=dict(method.arguments or {}),
        )
        if not method.nowait:
            session.reply_after_fsync(self, commands.Exchange.DeclareOk(), since=generation)

    def _exchange_delete(self, method: commands.Exchange.Delete) -> None:
        session = self.session
        if session.access is not None:
            session.access.exchange_itself(ADMIN, method.exchange, session.vhost.name)
        generation = session.broker.durability.generation
        session.vhost.delete_exchange(method.exchange, if_unused=method.if_unused, now=session.now)
        if not method.nowait:
            session.reply_after_fsync(self, commands.Exchange.DeleteOk(), since=generation)

    def _exchange_bind(self, method: commands.Exchange.Bind) -> None:
        self._check_exchange_binding(method.destination, method.source, method.routing_key)
        session = self.session
        generation = session.broker.durability.generation
        session.vhost.bind_exchange(
            method.destination, method.source, method.routing_key, dict(method.arguments or {})
        )
        if not method.nowait:
            session.reply_after_fsync(self, commands.Exchange.BindOk(), since=generation)

    def _exchange_unbind(self, method: commands.Exchange.Unbind) -> None:
        self._check_exchange_binding(method.destination, method.source, method.routing_key)
        session = self.session
        generation = session.broker.durability.generation
        session.vhost.unbind_exchange(method.destination, method.source, method.routing_key)
        if not method.nowait:
            session.reply_after_fsync(self, commands.Exchange.UnbindOk(), since=generation)

    def _check_exchange_binding(self, destination: str, source: str, key: str) -> None:
        access = self.session.access
        if access is None:
            return
        vhost = self.session.vhost
        for action, name in ((WRITE, destination), (READ, source)):
            found = vhost.exchanges.get(name)
            if found is not None:  # a missing one is the binding's 404
                access.exchange(action, name, found.type, key, vhost.name)

    def _queue_declare(self, method: commands.Queue.Declare) -> None:
        session = self.session
        generation = session.broker.durability.generation
        name, ready, consumers = session.vhost.declare_queue(
            session.conn_id,
            method.queue,
            passive=method.passive,
            durable=method.durable,
            exclusive=method.exclusive,
            auto_delete=method.auto_delete,
            arguments=dict(method.arguments or {}),
            now=session.now,
            access=session.access,
        )
        session.last_queue = name
        if not method.nowait:
            declared = framing.unchecked(
                commands.Queue.DeclareOk,
                queue=name,
                message_count=ready,
                consumer_count=consumers,
            )
            session.reply_after_fsync(self, declared, since=generation)

    def _queue_bind(self, method: commands.Queue.Bind) -> None:
        session = self.session
        name = method.queue or session.last_queue
        vhost = session.vhost
        if session.access is not None:
            session.access.queue(ADMIN, name, vhost.name)
            exchange = vhost.exchanges.get(method.exchange)
            if exchange is not None:  # a missing one is the binding's 404
                session.access.exchange(
                    READ, exchange.name, exchange.type, method.routing_key, vhost.name
                )
        vhost.check_owner(name, session.conn_id)
        generation = session.broker.durability.generation
        vhost.bind(name, method.exchange, method.routing_key, dict(method.arguments or {}))
        if not method.nowait:
            session.reply_after_fsync(self, commands.Queue.BindOk(), since=generation)

    def _queue_unbind(self, method: commands.Queue.Unbind) -> None:
        session = self.session
        name = method.queue or session.last_queue
        if session.access is not None:
            session.access.queue(ADMIN, name, session.vhost.name)
        session.vhost.check_owner(name, session.conn_id)
        generation = session.broker.durability.generation
        session.vhost.unbind(name, method.exchange, method.routing_key)
        session.reply_after_fsync(self, commands.Queue.UnbindOk(), since=generation)

    def _queue_purge(self, method: commands.Queue.Purge) -> None:
        session = self.session
        name = method.queue or session.last_queue
        if session.access is not None:
            session.access.queue(ADMIN, name, session.vhost.name)
        queue = session.vhost.queue(name)
        session.vhost.check_owner(name, session.conn_id)
        generation = session.broker.durability.generation
        count = queue.purge(session.now)
        if not method.nowait:
            session.reply_after_fsync(self, commands.Queue.PurgeOk(count), since=generation)

    def _queue_delete(self, method: commands.Queue.Delete) -> None:
        session = self.session
        name = method.queue or session.last_queue
        if session.access is not None:
            session.access.queue(ADMIN, name, session.vhost.name)
        generation = session.broker.durability.generation
        count = session.vhost.delete_queue(
            session.conn_id,
            name,
            if_unused=method.if_unused,
            if_empty=method.if_empty,
            now=session.now,
        )
        if not method.nowait:
            session.reply_after_fsync(self, commands.Queue.DeleteOk(count), since=generation)


def _expiration(value: str | None) -> float | None:
    """The ``expiration`` property (milliseconds, as a string) in seconds."""
    if value is None or value == "":
        return None
    # ASCII digits only, as RabbitMQ: str.isdigit() also takes "²" (which
    # int() refuses: an internal error, 541) and "٣" (which it reads as 3).
    if not (value.isascii() and value.isdigit()):
        raise SoftError(PRECONDITION_FAILED, f"invalid expiration '{value}'", Basic.Publish.index)
    # "0" is RabbitMQ's "now or never": to a consumer ready at once, else
    # expired (the core's rule for a ttl of 0, Queue.put).
    return int(value) / 1000


def _settle(queue: Queue, peer: Peer, ids: list[int], action: str, now: float) -> None:
    if action == "ack":
        queue.ack(peer, ids, now)
    else:
        queue.nack(peer, ids, now, requeue=action == "requeue")


def close_frame(code: int, detail: str, method_index: int) -> commands.Channel.Close:
    return commands.Channel.Close(
        code, reply_text(code, detail), method_index >> 16, method_index & 0xFFFF
    )


#: Method class -> handler. Each handler takes its own method class; the
#: dispatcher looks handlers up by ``type(method)``, so the pairing is exact.
_HANDLERS: dict[type[base.Frame], Callable[[Channel, Any], None]] = {
    commands.Basic.Qos: Channel._qos,
    commands.Basic.Consume: Channel._consume,
    commands.Basic.Cancel: Channel._cancel,
    commands.Basic.Publish: Channel._publish_method,
    commands.Basic.Get: Channel._get,
    commands.Basic.Ack: Channel._ack,
    commands.Basic.Nack: Channel._nack,
    commands.Basic.Reject: Channel._reject,
    commands.Basic.Recover: Channel._recover,
    commands.Confirm.Select: Channel._confirm_select,
    commands.Tx.Select: Channel._tx_select,
    commands.Tx.Commit: Channel._tx_commit,
    commands.Tx.Rollback: Channel._tx_rollback,
    commands.Channel.Flow: Channel._flow,
    commands.Exchange.Declare: Channel._exchange_declare,
    commands.Exchange.Delete: Channel._exchange_delete,
    commands.Exchange.Bind: Channel._exchange_bind,
    commands.Exchange.Unbind: Channel._exchange_unbind,
    commands.Queue.Declare: Channel._queue_declare,
    commands.Queue.Bind: Channel._queue_bind,
    commands.Queue.Unbind: Channel._queue_unbind,
    commands.Queue.Purge: Channel._queue_purge,
    commands.Queue.Delete: Channel._queue_delete,
}
