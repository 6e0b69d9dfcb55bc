"""Work queues with pull consumers: at-least-once delivery, redelivery, dead letters.

The model (RabbitMQ queues, Amazon SQS): producers ``put`` messages into a
named queue; consumers ``fetch`` a batch when they are ready, process it and
``ack`` each delivery. A delivery that is neither acked nor nacked within
the queue's *visibility timeout* comes back and is delivered again, with its
delivery count raised. docs/queues.md states the promises precisely; this
docstring explains how the code keeps them cheaply.

Where a message can be
----------------------

* **ready**: in ``_ready``, a deque in delivery order. Puts append on the
  right; anything coming back (nack, timeout, a consumer's disconnect) goes
  to the left, so it is delivered first, merged by publish order into the
  run of messages returned before (``ready.return_in_order``; as RabbitMQ,
  a requeued message goes back to its original position). A queue with
  ``max_priority`` or ``max_length_bytes`` keeps a deque-like container that ranks or counts
  instead (:mod:`minibroker.core.ready`); other queues pay nothing for it.
* **in flight**: in ``_inflight``, a dict from delivery id to message. The
  id is unique in the namespace and never reused, so a stale id can never
  ack the wrong message.
* **delayed**: nacked with a delay, parked in ``_delayed`` until its timer
  moves it back to the front of the ready deque.

The same ``Message`` object moves between these; a delivery allocates
nothing per message but a dict slot.

Columns: W1's messages without a ``Message``
-------------------------------------------

A batch of bodies without headers put into a *plain* queue (no TTL, no
length limit, no priorities, no journal, no message group, no push
consumer) makes no ``Message`` at all: the bodies join the **tail**, two
lists (bodies, publish times) behind the ready deque (``_put_bare``). A
compact fetch (the native protocol's, ``fetch_compact``) that finds the
ready deque empty hands the tail's first messages out as they are, a
``FirstDeliveries`` of slices, under a lease that holds them itself
(``Lease.bodies``: no in-flight table entry, ``_deliver_first``); an ack of
a run of consecutive ids of such leases settles slices (``_ack_first``).
Every other path sees only ``Message`` objects: it first turns the tail
into messages at the back of the ready deque (``_flush_tail``) or the
leases' messages into in-flight ones (``_materialize``), with the values
the general path would have given them (first delivery, no headers, no
expiry), and goes on as before. So a nack, a timeout, a disconnect or an
SQS receive costs what it did; W1's put, fetch and ack cost slices and
``map`` passes instead of an object, a dict slot and a loop per message.

Deadlines without per-message timers
------------------------------------

All messages of one fetch share one visibility deadline, so one fetch arms
one timer, held by a ``Lease`` that knows the fetch's (contiguous) range of
delivery ids and how many of them are still outstanding. An ack only
decrements that count; the ack of the lease's last message cancels its
timer (O(1): the heap deletes lazily). When a lease's timer does fire, the
still-outstanding ids of its range go back to the queue. A consumer that
fetches 1,000 messages at a time therefore costs the timer heap one entry
per 1,000 messages.

Message TTL uses one timer per queue, armed for the expiry of the message
at the head; expired messages are removed when they reach the head (as in
RabbitMQ) and never delivered. Long-polling fetches park a ``_Waiter`` with
one timer each, for its ``wait`` deadline.

Everything happens in response to a call with the current time ``now``;
the core reads no clock. Parked fetches are finished through the ``Peer``
port (``resolve`` with a list of messages, or ``reject`` when the queue is
deleted); a consumer that leaves withdraws its parked fetch with
``cancel_wait``, which resolves it with an empty list.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Final, Protocol

from minibroker.core.config import Limits
from minibroker.core.dead_letters import (
    added_bytes_bound,
    dead_letter_headers,
    death_path,
    would_cycle,
)
from minibroker.core.durations import check_seconds
from minibroker.core.names import check_name
from minibroker.core.peer import Peer
from minibroker.core.queue_journal import (
    CompactionSettings,
    QueueJournal,
    recover,
    reopen,
)
from minibroker.core.queue_message import (
    DELIVERY_OVERHEAD,
    NEVER,
    FirstDeliveries,
    Message,
    delivery_size,
)
from minibroker.core.queue_options import (
    MAX_PRIORITY,
    MAX_VISIBILITY_TIMEOUT,
    UNTIL_SETTLED,
    QueueOptions,
    QueueStatistics,
)
from minibroker.core.ready import Ready, ready_bytes, ready_for, return_in_order
from minibroker.core.sizes import headers_size
from minibroker.core.timers import Timer
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    LimitExceeded,
    NotFound,
    Overflow,
    TooLarge,
    UnknownDelivery,
)
from minibroker.value_class import Value, replace

if TYPE_CHECKING:
    from minibroker.core.broker import Broker
    from minibroker.core.namespace import Namespace

__all__ = [
    "MAX_DEAD_LETTER_HOPS",
    "Incoming",
    "Lease",
    "Message",
    "Queue",
    "QueueContents",
    "QueueOptions",
    "QueueStatistics",
    "Queues",
]

log = logging.getLogger("minibroker.queues")

#: Dead-lettering that triggers further dead-lettering at once (a dead-letter
#: queue overflowing into its own dead-letter queue ...) stops after this many
#: nested hops; the message is then dropped. Cycles are ended by the rule of
#: :mod:`minibroker.core.dead_letters`; this bounds a long chain's recursion.
MAX_DEAD_LETTER_HOPS: Final = 8

_KIND: Final = "queue"

#: Journal settings every new ``Queues`` starts with (tests swap in small ones).
compaction_defaults = CompactionSettings()


class Incoming(Protocol):
    """A message handed to ``put``: anything with ``body`` and ``headers``.

    ``put`` also takes a bare body (``bytes``) for a message without
    headers. The msgpack front end passes its ``MessageIn`` frames and bare
    bodies straight through, so a put converts nothing per message before
    it reaches the queue.
    """

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


class Lease:
    """The deliveries of one fetch: one consumer, one visibility deadline, one timer."""

    __slots__ = (
        "bodies",
        "conn_id",
        "count",
        "deadline",
        "first_id",
        "outstanding",
        "published_at",
        "queue",
        "timer",
    )

    def __init__(self, queue: Queue, conn_id: int, first_id: int, count: int, deadline: float):
        self.queue = queue
        self.conn_id = conn_id
        #: Delivery ids ``first_id .. first_id + count - 1`` belong to this lease.
        self.first_id = first_id
        self.count = count
        #: How many of them are still in flight.
        self.outstanding = count
        self.deadline = deadline
        self.timer: Timer | None = None
        #: A lease of first deliveries made without ``Message`` objects (see
        #: ``Queue._deliver_first``) holds its messages itself, in id order:
        #: the body of each one in flight, None for each one settled, and
        #: their publish times. None for a lease whose messages are in the
        #: queue's in-flight table.
        self.bodies: list[bytes | None] | None = None
        self.published_at: list[int] | None = None

    def expire(self, now: float) -> None:
        self.queue._lease_expired(self, now)


class _Waiter:
    """A long-polling fetch parked until messages arrive or its wait runs out."""

    __slots__ = (
        "compact",
        "key",
        "max_bytes",
        "max_messages",
        "peer",
        "queue",
        "timer",
        "token",
        "visibility_timeout",
    )

    def __init__(
        self,
        queue: Queue,
        key: int,
        peer: Peer,
        token: int,
        max_messages: int,
        visibility_timeout: float,
        max_bytes: int | None,
        compact: bool = False,
    ) -> None:
        self.queue = queue
        self.key = key
        self.peer = peer
        self.token = token
        self.max_messages = max_messages
        self.visibility_timeout = visibility_timeout
        self.max_bytes = max_bytes
        #: Whether it takes ``FirstDeliveries`` (see ``Queue.fetch``'s ``compact``).
        self.compact = compact
        self.timer: Timer | None = None

    def expire(self, now: float) -> None:
        self.queue._waiter_expired(self, now)


class _Delayed:
    """Messages waiting for their timer: nacked with a delay (they go back to
    the front) or put with a delay (they join the back)."""

    __slots__ = ("at_front", "key", "messages", "queue", "timer", "until")

    def __init__(
        self, queue: Queue, key: int, messages: list[Message], until: float, at_front: bool
    ) -> None:
        self.queue = queue
        self.key = key
        self.messages = messages
        self.until = until
        self.at_front = at_front
        self.timer: Timer | None = None

    def expire(self, now: float) -> None:
        self.queue._delay_over(self, now)


class InFlight(Value, frozen=True):
    """An in-flight message as the inspection hook shows it."""

    message: Message
    delivery_id: int
    conn_id: int
    deadline: float


class Delayed(Value, frozen=True):
    message: Message
    until: float


class QueueContents(Value, frozen=True):
    """What the inspection hook returns: the first ``limit`` messages of each kind."""

    ready: list[Message]
    in_flight: list[InFlight]
    delayed: list[Delayed]


def _parts(message: Incoming | bytes) -> tuple[bytes, dict[str, str] | None]:
    """A put message's body and headers (None for none), bare body or not."""
    if type(message) is bytes:
        return message, None
    return message.body, message.headers or None  # type: ignore[union-attr]


_body_of = attrgetter("body")
_headers_of = attrgetter("headers")
_lease_of = attrgetter("lease")


def _within(ready: Ready, count: int, max_bytes: int) -> bool:
    """True if the first ``count`` ready messages fit ``max_bytes`` of deliveries together.

    What lets a fetch with a byte budget (every fetch of the native
    protocol: one frame) skip ``_take_ready``'s per-message loop: without
    headers the sizes are summed in C (``delivery_size`` is the body plus a
    fixed overhead).
    """
    if any(map(_headers_of, islice(ready, count))):
        return sum(map(delivery_size, islice(ready, count))) <= max_bytes
    body_bytes = sum(map(len, map(_body_of, islice(ready, count))))
    return body_bytes + count * DELIVERY_OVERHEAD <= max_bytes


def _check_max_messages(value: int, limits: Limits) -> None:
    if type(value) is not int or not 1 <= value <= limits.max_fetch:
        raise BadRequest(f"max_messages must be between 1 and {limits.max_fetch}, got {value!r}")


class Queue:
    """One queue. Get it from :meth:`Queues.get`; all methods take the current time."""

    def __init__(
        self,
        parent: Queues,
        name: str,
        options: QueueOptions,
        journal: QueueJournal | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._parent = parent
        self._broker = parent.broker
        self._timers = parent.broker.timers
        self._journal = journal
        self._ready: Ready = ready_for(options)
        #: Bare bodies put into a plain queue wait here, behind ``_ready``,
        #: as two lists (bodies, publish times) read from ``_tail_head`` on:
        #: no ``Message`` is made for them unless something other than a put
        #: or a compact fetch needs one (``_flush_tail``). See docs/internals.md.
        self._tail_bodies: list[bytes] = []
        self._tail_published: list[int] = []
        self._tail_head = 0
        #: Leases of first deliveries made from the tail, holding their
        #: messages themselves (``Lease.bodies``), in delivery id order.
        self._first_leases: list[Lease] = []
        #: Whether bare bodies may wait in the tail and leave through
        #: ``FirstDeliveries`` (tests turn it off to compare with the general path).
        self.columns = True
        self._inflight: dict[int, Message] = {}
        #: conn id -> its leases here (an ordered set, in fetch order).
        self._leases: dict[int, dict[Lease, None]] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._delayed: dict[int, _Delayed] = {}
        self._delayed_count = 0
        #: Message group -> how many of its messages are in flight (see ``put``'s ``group``).
        self._group_holds: dict[str, int] = {}
        #: Whether a grouped message was ever put: fetches then take the slow path.
        self._grouped = False
        #: The largest ``max_item_bytes`` any message here was admitted under
        #: (inf: unbounded or unknown). Only a smaller limit since (a restart
        #: with a smaller frame limit) can leave a message no delivery frame
        #: carries, so fetches check sizes, on the slow path, only then.
        self._admitted_under = 0.0
        self._ttl_timer: Timer | None = None
        #: Set once a message with a TTL of its own arrived (put's ``ttl``):
        #: from then on deliveries check expiry like a queue with message_ttl.
        self._expiring = False
        #: True while a put with a ``ttl`` of 0 tells its listeners (now_or_never).
        self._arriving_now_or_never = False
        #: Set by a front end to dead-letter through its own routing (AMQP's
        #: x-dead-letter-exchange) instead of ``options.dead_letter_queue``:
        #: called as ``route([message], reason, now)`` for each dead message,
        #: returns whether any queue took it (not dropped).
        self.dead_letter_route: Callable[[list[Message], str, float], bool] | None = None
        #: Called as ``listener(queue, now)`` whenever messages become ready
        #: (put, requeue, end of a nack delay): push-style front ends (AMQP
        #: consumers) fetch from here for their consumers within their credit.
        self.ready_listeners: list[Callable[[Queue, float], None]] = []
        self._configure(options)
        self.deleted = False
        # lifetime counters (see QueueStatistics)
        self.published = 0
        self.delivered = 0
        self.redelivered = 0
        self.acked = 0
        self.requeued = 0
        self.expired = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.purged = 0
        self.rejected_publishes = 0
        self.journal_errors = 0

    def _configure(self, options: QueueOptions) -> None:
        """Adopt ``options`` (at creation, and when reconfigured)."""
        self._flush_tail()  # the tail holds messages of a plain queue only
        if (options.max_length_bytes is None) != (self.options.max_length_bytes is None):
            self._ready = ready_for(options, self._ready)  # start or stop counting bytes
        self.options = options
        self._ttl = options.message_ttl
        self._now_or_never = options.message_ttl == 0
        bounded = options.max_length is not None or options.max_length_bytes is not None
        self._reject_overflow = bounded and options.overflow != "drop_head"
        self._drop_overflow = bounded and options.overflow == "drop_head"
        self._prioritized = options.max_priority is not None
        #: No option that needs a ``Message`` per ready message: no TTL, no
        #: length limit, no priorities (groups, a journal and push consumers
        #: are checked at each put).
        self._plain = options.message_ttl is None and not bounded and not self._prioritized

    @property
    def durable(self) -> bool:
        """True when the queue is journaled to disk."""
        return self._journal is not None

    # ------------------------------------------------------------------ put

    def put(
        self,
        messages: Sequence[Incoming | bytes],
        now: float,
        *,
        delay: float = 0.0,
        group: str | None = None,
        ttl: float | None = None,
        priority: int | None = None,
    ) -> int:
        """Append ``messages`` to the queue (all of them, or none); return how many.

        Each message is an ``Incoming`` (``body`` and ``headers``) or a bare
        body (``bytes``: no headers).

        With ``delay`` (seconds, at most 12 hours) the messages wait as
        *delayed* first and join the back of the queue when it is over (SQS's
        DelaySeconds); TTL and publish time count from now all the same.

        With ``group`` (SQS FIFO's MessageGroupId) the messages belong to a
        message group: while any message of a group is in flight, no other
        message of that group is delivered, so a group is processed in order
        by one consumer at a time (a fetch may take several of its messages,
        in order). Groups live in memory only: a durable queue's messages
        come back from a restart without one (``restore_groups``).

        ``ttl`` (seconds) is a per-message time to live for this batch (AMQP's
        ``expiration`` property): a message expires at the earlier of it and
        the queue's ``message_ttl``. It is not journaled: after a restart only
        the queue's TTL applies. 0 is "now or never" as in RabbitMQ: what no
        consumer takes on arrival expires at once if nothing is ahead of it,
        else when it reaches the head.

        While a front end routes a dead letter (``dead_letter_route``), a put
        into a queue on that letter's death path stores nothing and returns
        0: the cycle rule of :mod:`minibroker.core.dead_letters`.

        ``priority`` (0 to 255, None = 0) ranks the batch in a queue with
        ``max_priority`` (above it counts as ``max_priority``); other queues
        ignore it, as RabbitMQ does. It is journaled.

        Raises TooLarge for a body over the limit, Overflow when the batch
        would take the queue past max_length or max_length_bytes with
        overflow=reject_publish or reject_publish_dlx (nothing of the batch is
        stored; with reject_publish_dlx it is dead-lettered instead),
        StorageFull/StorageError when the journal cannot take it.
        """
        if delay:
            delay = check_seconds("delay", delay, MAX_VISIBILITY_TIMEOUT, allow_zero=True)
        if group is not None and (type(group) is not str or not group):
            raise BadRequest("a message group must be a non-empty string")
        count = len(messages)
        if not count:
            return 0
        parent = self._parent
        if parent.barred and self.name in parent.barred:
            return 0  # a dead letter that would close a cycle: dropped (core/dead_letters.py)
        limits = parent.limits
        if count > limits.max_batch:
            raise BadRequest(f"a batch holds at most {limits.max_batch} messages, got {count}")
        if priority is not None and (
            type(priority) is not int or not 0 <= priority <= MAX_PRIORITY
        ):
            raise BadRequest(f"priority must be an integer from 0 to {MAX_PRIORITY}")
        if self._reject_overflow and self._would_overflow(
            count, messages if self.options.max_length_bytes is not None else ()
        ):
            self._refuse(messages, now, priority)
        if (
            not delay
            and group is None
            and ttl is None
            and self._plain
            and self.columns
            and self._journal is None
            and not self._expiring
            and not self._grouped
            and not self.ready_listeners
            and self._put_bare(messages, now)
        ):
            return count
        published_at = self._broker.clock.wall_ms(now)
        expires_at = self._expires_at(now)
        if ttl is not None:
            # 0 is "now or never", as message_ttl 0: live at the instant it
            # arrives only (for a consumer ready then), see _expire_arrived.
            expires_at = min(expires_at, now + ttl if ttl else math.nextafter(now, math.inf))
            self._expiring = True
        batch = self._admit(messages, published_at, expires_at)
        if priority and self._prioritized:
            for message in batch:
                message.priority = priority
        journal = self._journal
        if journal is not None:
            journal.put(batch, published_at)  # raises before anything changed
        self._admitted(limits.max_item_bytes)
        if group is not None:
            self._grouped = True
            for message in batch:
                message.group = group
        self.published += count
        if delay > 0:
            self._park(batch, now + delay, at_front=False)
        elif ttl == 0:
            self._arriving_now_or_never = True
            try:
                self._enqueue(batch, now)
            finally:
                self._arriving_now_or_never = False
            self._expire_arrived(now)
        else:
            self._enqueue(batch, now)
        if journal is not None:
            self._compact_quietly(journal, published_at)
        return count

    def _put_bare(self, messages: Sequence[Incoming | bytes], now: float) -> bool:
        """Put a batch of bare bodies into the tail, if it is one and every body fits.

        What ``_admit`` and ``_enqueue`` do for such a batch in a plain
        queue, with no ``Message`` made: the bodies join the tail (behind
        any ready ``Message``), parked fetches are fed. False, with nothing
        done, for anything else (the general path then checks and puts it).
        """
        kinds = set(map(type, messages))
        if kinds != {bytes}:
            # Messages with a body and no headers (a ``put`` of maps) count
            # as bare: their bodies, gathered in C, join the tail as well.
            if bytes in kinds or any(map(_headers_of, messages)):
                return False
            messages = list(map(_body_of, messages))
            if set(map(type, messages)) != {bytes}:
                return False
        limits = self._parent.limits
        room = self._delivery_room()
        fits = limits.max_message_bytes
        if room is not None:
            fits = min(fits, room - DELIVERY_OVERHEAD)
        if max(map(len, messages)) > fits:  # type: ignore[arg-type]
            return False
        self._tail_bodies.extend(messages)  # type: ignore[arg-type]
        self._tail_published.extend(repeat(self._broker.clock.wall_ms(now), len(messages)))
        self._admitted(limits.max_item_bytes)
        self.published += len(messages)
        if self._waiters:
            self._feed_waiters(now)
        return True

    def _flush_tail(self) -> None:
        """Turn the tail into ``Message`` objects at the back of ``_ready``.

        Everything but a put and a compact fetch of a plain queue sees ready
        messages as ``Message`` objects in ``_ready``: each such path calls
        this first (it costs nothing when the tail is empty). The messages
        were put into a plain queue: no headers, no expiry, priority 0.
        """
        bodies = self._tail_bodies
        if not bodies:
            return
        published = self._tail_published
        head = self._tail_head
        if head:
            bodies = bodies[head:]
            published = published[head:]
        self._tail_bodies = []
        self._tail_published = []
        self._tail_head = 0
        self._ready.extend(map(Message, bodies, repeat(None), published))

    def _admit(
        self, messages: Sequence[Incoming | bytes], published_at: int, expires_at: float
    ) -> list[Message]:
        """The queue's ``Message`` objects for a put batch, after checking every size.

        Raises TooLarge for the first message whose body is over the limit,
        or whose delivery (with its headers) no frame could carry.
        A batch of bare bodies (the native protocol's common put, see
        ``Incoming``) is checked with ``max(map(len, ...))`` and turned into
        messages by ``map``, without a Python loop of its own; any other
        batch, or one with a message too large, takes the loop that finds and
        names the first bad message.
        """
        limits = self._parent.limits
        max_bytes = limits.max_message_bytes
        room = self._delivery_room()
        # delivery_size() inlined: this runs once per message put.
        body_room = math.inf if room is None else room - DELIVERY_OVERHEAD
        if set(map(type, messages)) == {bytes}:
            bodies: Sequence[bytes] = messages  # type: ignore[assignment]
            if max(map(len, bodies)) <= min(max_bytes, body_room):
                return list(
                    map(Message, bodies, repeat(None), repeat(published_at), repeat(expires_at))
                )
        batch: list[Message] = []
        add = batch.append
        for m in messages:
            body, headers = _parts(m)
            if len(body) > max_bytes:
                raise TooLarge(
                    f"a message body of {len(body)} bytes exceeds the limit of {max_bytes} bytes",
                    limit=max_bytes,
                )
            if len(body) > body_room or (headers and len(body) + headers_size(headers) > body_room):
                assert room is not None
                raise self._too_large_to_deliver(Message(body, headers, 0), room, len(batch))
            add(Message(body, headers, published_at, expires_at))
        return batch

    def _expires_at(self, now: float) -> float:
        """When a message that arrives ``now`` expires under ``message_ttl``.

        ``message_ttl=0`` is RabbitMQ's "now or never": the message is live
        at the instant it arrives (the smallest float after ``now`` is not
        ``<= now``), so a consumer already waiting gets it, and ``_enqueue``
        expires whatever nobody took at that instant.
        """
        ttl = self._ttl
        if ttl is None:
            return NEVER
        if ttl == 0:
            return math.nextafter(now, math.inf)
        return now + ttl

    @property
    def now_or_never(self) -> bool:
        """What is arriving expires on arrival unless a consumer takes it at once
        (a push front end feeds such a queue immediately): ``message_ttl`` is
        0, or the put in progress has a ``ttl`` of 0."""
        return self._now_or_never or self._arriving_now_or_never

    def _would_overflow(self, count: int, messages: Iterable[Incoming | bytes]) -> bool:
        """True if ``count`` more ready messages (with these bodies, when bytes are
        limited) would take the queue past its max_length or max_length_bytes."""
        options = self.options
        ready = self._ready
        if options.max_length is not None and len(ready) + count > options.max_length:
            return True
        max_bytes = options.max_length_bytes
        return max_bytes is not None and (
            ready_bytes(ready) + sum(len(_parts(m)[0]) for m in messages) > max_bytes
        )

    def _refuse(
        self, messages: Sequence[Incoming | bytes], now: float, priority: int | None
    ) -> None:
        """Refuse a put that would overflow: raise Overflow, after dead-lettering
        the messages under reject_publish_dlx (RabbitMQ's reason: maxlen)."""
        count = len(messages)
        self.rejected_publishes += count
        options = self.options
        if options.overflow == "reject_publish_dlx":
            published_at = self._broker.clock.wall_ms(now)
            level = priority if priority and self._prioritized else 0
            refused = [
                Message(*_parts(m), published_at, priority=level) for m in messages
            ]
            self._dead_letter(refused, "overflow", now)
        ready = self._ready
        state = f"{len(ready)} ready messages"
        details: dict[str, object] = {"queue": self.name}
        if options.max_length is not None:
            state += f", max_length {options.max_length}"
            details["max_length"] = options.max_length
        if options.max_length_bytes is not None:
            state += f", {ready_bytes(ready)} bytes, max_length_bytes {options.max_length_bytes}"
            details["max_length_bytes"] = options.max_length_bytes
            details["ready_bytes"] = ready_bytes(ready)
        raise Overflow(
            f"queue {self.name!r} is full: {state}; none of the {count} messages was stored",
            **details,
            ready=len(ready),
        )

    def _admitted(self, max_item: int | None) -> None:
        """Messages checked against ``max_item`` (None: unchecked) join the queue."""
        limit = math.inf if max_item is None else max_item
        if limit > self._admitted_under:
            self._admitted_under = limit

    def _fits_every_frame(self) -> bool:
        """True when every message here is known to fit a delivery frame."""
        max_item = self._parent.limits.max_item_bytes
        return max_item is None or self._admitted_under <= max_item

    def _delivery_room(self) -> int | None:
        """Most bytes a message may take in a delivery (``delivery_size``), or None.

        What one frame can carry, less what dead-lettering out of this queue
        may add to the headers: a message is refused at ``put`` rather than
        accepted and then impossible to fetch (issue 14 item 6).
        """
        max_item = self._parent.limits.max_item_bytes
        if max_item is None:
            return None
        if self.options.dead_letter_queue is None:
            return max_item
        return max_item - added_bytes_bound(self.name)

    def _too_large_to_deliver(self, message: Message, room: int, index: int) -> TooLarge:
        dead_letters = self.options.dead_letter_queue is not None
        extra = " and the x-death headers a dead-lettering adds" if dead_letters else ""
        return TooLarge(
            f"message {index} would take {delivery_size(message)} bytes in a delivery with its "
            f"headers{extra}; one delivery frame holds {room}: nothing of the batch was stored",
            limit=room,
            index=index,
        )

    def _enqueue(self, batch: list[Message], now: float) -> None:
        """Add journaled messages at the back: feed waiters, apply drop_head, arm TTL."""
        self._flush_tail()
        ready = self._ready
        ready.extend(batch)
        if self._waiters:
            self._feed_waiters(now)
        if self.ready_listeners:
            self._tell_ready(now)
        if self._now_or_never:
            self._expire_unclaimed(now)
            return
        if self._drop_overflow:
            self._drop_head(now)
        if self._ttl is not None or self._expiring:
            self._arm_expiry()

    def _expire_unclaimed(self, now: float) -> None:
        """``message_ttl=0``: what no waiting consumer took on arrival expires now.

        Every message put since the TTL became 0 is due by now (each was
        live only at the instant it arrived). Only messages put before a
        ``reconfigure`` to 0 can be due later: they stay, in their order.
        """
        ready = self._ready
        if not ready:
            return
        cutoff = math.nextafter(now, math.inf)
        popleft = ready.popleft
        taken = [popleft() for _ in range(len(ready))]
        due = [m for m in taken if m.expires_at <= cutoff]
        if len(due) < len(taken):
            ready.extend([m for m in taken if m.expires_at > cutoff])
        if due:
            self._dispose(due, "expired", now)

    def _drop_head(self, now: float) -> None:
        """drop_head: remove messages from the head until the queue is within its limits."""
        ready = self._ready
        popleft = ready.popleft
        max_length = self.options.max_length
        dropped: list[Message] = []
        if max_length is not None and len(ready) > max_length:
            dropped = [popleft() for _ in range(len(ready) - max_length)]
        max_bytes = self.options.max_length_bytes
        if max_bytes is not None:
            while ready and ready_bytes(ready) > max_bytes:
                dropped.append(popleft())
        if dropped:
            self._dispose(dropped, "overflow", now)

    # ---------------------------------------------------------------- fetch

    def fetch(
        self,
        peer: Peer,
        max_messages: int,
        now: float,
        visibility_timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> list[Message]:
        """Deliver up to ``max_messages`` ready messages to ``peer``, oldest first.

        Returns at once, possibly with an empty list. The returned objects are
        the queue's own: encode them before calling into the queue again.

        ``max_bytes`` (None: no limit) bounds the deliveries' total
        :func:`~minibroker.core.queue_message.delivery_size`: the front end
        passes what fits one frame of the connection, so a fetch of many big
        messages returns the first ones and leaves the rest ready for the
        next fetch. The first message is delivered whatever its size.

        ``visibility_timeout=UNTIL_SETTLED`` delivers without a deadline:
        the messages stay with ``peer`` until acked, nacked or its
        connection closes (how AMQP 0-9-1 consumers hold messages).
        """
        out = self.fetch_compact(peer, max_messages, now, visibility_timeout, max_bytes, False)
        assert type(out) is list
        return out

    def fetch_compact(
        self,
        peer: Peer,
        max_messages: int,
        now: float,
        visibility_timeout: float | None = None,
        max_bytes: int | None = None,
        compact: bool = True,
    ) -> list[Message] | FirstDeliveries:
        """:meth:`fetch`, for a reader that also takes ``FirstDeliveries``.

        With ``compact`` the answer may be a ``FirstDeliveries`` instead of
        a list: the same deliveries, as columns, when they are first
        deliveries of bare bodies from the tail of a plain queue (a
        compact ``fetch`` of the native protocol encodes it as it stands).
        """
        _check_max_messages(max_messages, self._parent.limits)
        if visibility_timeout is None:
            visibility_timeout = self.options.visibility_timeout
        elif visibility_timeout != UNTIL_SETTLED:
            check_seconds("visibility_timeout", visibility_timeout, MAX_VISIBILITY_TIMEOUT)
        if not self._ready and not self._tail_bodies:
            return []
        return self._deliver(
            peer.conn_id, max_messages, now, visibility_timeout, max_bytes, compact
        )

    def wait(
        self,
        peer: Peer,
        token: int,
        max_messages: int,
        now: float,
        timeout: float,
        visibility_timeout: float | None = None,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> None:
        """Park a long-polling fetch: ``peer.resolve(token, messages)`` finishes it.

        It is resolved, in arrival order with other waiters, as soon as
        messages are ready, or with an empty list once ``timeout`` seconds
        have passed; rejected with NotFound if the queue is deleted. Call
        :meth:`fetch` first: a fetch only waits when nothing is ready.
        ``max_bytes`` bounds the answer as in :meth:`fetch`; with ``compact``
        the messages may be a ``FirstDeliveries`` (see :meth:`fetch_compact`).
        """
        limits = self._parent.limits
        _check_max_messages(max_messages, limits)
        check_seconds("wait", timeout, limits.max_wait_seconds)
        if visibility_timeout is None:
            visibility_timeout = self.options.visibility_timeout
        else:
            check_seconds("visibility_timeout", visibility_timeout, MAX_VISIBILITY_TIMEOUT)
        parent = self._parent
        waiter = _Waiter(
            self,
            parent.new_key(),
            peer,
            token,
            max_messages,
            visibility_timeout,
            max_bytes,
            compact,
        )
        waiter.timer = self._timers.call_at(now + timeout, waiter.expire)
        self._waiters[waiter.key] = waiter
        parent.track(peer.conn_id, self)
        if self._ready or self._tail_bodies:
            self._feed_waiters(now)

    def _deliver(
        self,
        conn_id: int,
        max_messages: int,
        now: float,
        visibility_timeout: float,
        max_bytes: int | None = None,
        compact: bool = False,
    ) -> list[Message] | FirstDeliveries:
        if self._tail_bodies:
            if (
                compact
                and not self._ready
                and self.columns
                and self._ttl is None
                and not self._grouped
                and not self._expiring
                and self._fits_every_frame()
            ):
                return self._deliver_first(
                    conn_id, max_messages, now, visibility_timeout, max_bytes
                )
            self._flush_tail()
        ready = self._ready
        if (
            self._ttl is None
            and self._fits_every_frame()
            and not self._grouped
            and not self._expiring
            and (max_bytes is None or _within(ready, min(max_messages, len(ready)), max_bytes))
        ):
            popleft = ready.popleft
            out = [popleft() for _ in range(min(max_messages, len(ready)))]
        else:
            out = self._take_ready(max_messages, max_bytes, now)
            if not out:
                return out
        count = len(out)
        lease = self._new_lease(conn_id, count, now, visibility_timeout)
        inflight = self._inflight
        delivery_id = lease.first_id
        redelivered = 0
        for m in out:
            m.delivery_id = delivery_id
            m.lease = lease
            inflight[delivery_id] = m
            if m.delivery_count:
                redelivered += 1
            elif m.seq < 0:
                # Where no journal numbered it, its first delivery id is its
                # publish order for returns (``return_in_order``): a queue
                # delivers what it never delivered in publish order.
                m.seq = delivery_id
            delivery_id += 1
            m.delivery_count += 1
        self.delivered += count
        self.redelivered += redelivered
        if self._grouped:
            holds = self._group_holds
            for m in out:
                if m.group is not None:
                    holds[m.group] = holds.get(m.group, 0) + 1
        return out

    def _deliver_first(
        self,
        conn_id: int,
        max_messages: int,
        now: float,
        visibility_timeout: float,
        max_bytes: int | None,
    ) -> FirstDeliveries:
        """``_deliver`` for messages of the tail only: first deliveries, as columns.

        The same choice of messages (the first ``max_messages`` within
        ``max_bytes``, the first one whatever its size), the same lease and
        counters; the messages stay in their lists, held by the lease
        (``Lease.bodies``), instead of becoming ``Message`` objects in the
        in-flight table: an ack of a run of them settles a slice of the
        lease (``_ack_first``), in C.
        """
        head = self._tail_head
        tail = self._tail_bodies
        end = min(head + max_messages, len(tail))
        bodies = tail[head:end]
        count = end - head
        if max_bytes is not None and sum(map(len, bodies)) + count * DELIVERY_OVERHEAD > max_bytes:
            total = 0
            fit = 0
            for body in bodies:
                total += len(body) + DELIVERY_OVERHEAD
                if total > max_bytes and fit:
                    break
                fit += 1
            count = fit
            end = head + count
            bodies = bodies[:count]
        published = self._tail_published[head:end]
        if end == len(tail):
            self._tail_bodies = []
            self._tail_published = []
            self._tail_head = 0
        elif end > 4096 and end * 2 > len(tail):  # drop the delivered front now and then
            del tail[:end]
            del self._tail_published[:end]
            self._tail_head = 0
        else:
            self._tail_head = end
        lease = self._new_lease(conn_id, count, now, visibility_timeout)
        lease.bodies = list(bodies)
        lease.published_at = published
        self._first_leases.append(lease)
        self.delivered += count
        return FirstDeliveries(lease.first_id, bodies, published)

    def _new_lease(self, conn_id: int, count: int, now: float, visibility_timeout: float) -> Lease:
        """The lease of ``count`` deliveries to ``conn_id`` (their ids the next
        ``count`` of the broker's), its visibility timer armed and the
        connection's leases holding it."""
        parent = self._parent
        first = parent.next_delivery_id
        parent.next_delivery_id = first + count
        deadline = now + visibility_timeout
        lease = Lease(self, conn_id, first, count, deadline)
        if visibility_timeout != UNTIL_SETTLED:
            lease.timer = self._timers.call_at(deadline, lease.expire)
        leases = self._leases.get(conn_id)
        if leases is None:
            leases = self._leases[conn_id] = {}
            parent.track(conn_id, self)
        leases[lease] = None
        return lease

    def _materialize(self) -> None:
        """Give the messages of the leases of first deliveries their ``Message`` objects.

        Everything but an ack of a run of them (``_ack_first``) reads
        in-flight messages from the in-flight table: each such path calls
        this first. The leases stay (timers, counts, connection); the table
        keeps delivery id order, as the general path fills it.
        """
        first_leases = self._first_leases
        if not first_leases:
            return
        self._first_leases = []
        inflight = self._inflight
        resort = bool(inflight) and next(reversed(inflight)) > first_leases[0].first_id
        for lease in first_leases:
            bodies, published = lease.bodies, lease.published_at
            assert bodies is not None and published is not None
            delivery_id = lease.first_id
            for body, published_at in zip(bodies, published, strict=True):
                if body is not None:
                    m = Message(body, None, published_at, delivery_count=1, seq=delivery_id)
                    m.delivery_id = delivery_id
                    m.lease = lease
                    inflight[delivery_id] = m
                delivery_id += 1
            lease.bodies = lease.published_at = None
        if resort:
            self._inflight = dict(sorted(inflight.items()))

    def _take_ready(self, max_messages: int, max_bytes: int | None, now: float) -> list[Message]:
        """Pop the messages one delivery hands out: live ones, within both bounds.

        Expired messages met on the way are disposed of and count against
        neither bound. A message that would pass ``max_bytes`` stays at the
        front for the next fetch, unless it is the first (it could never go
        otherwise). One bigger than any delivery frame (``max_item_bytes``)
        is never taken: it is disposed of with reason ``too_large``.
        Messages of a group with messages in flight are stepped over and
        stay where they are, in order (so a queue of many blocked groups
        costs a scan per fetch: message groups are for SQS FIFO's rates).
        """
        ready = self._ready
        popleft = ready.popleft
        budget = math.inf if max_bytes is None else max_bytes
        held = self._group_holds
        max_item = self._parent.limits.max_item_bytes
        too_big = math.inf if max_item is None else max_item
        out: list[Message] = []
        expired: list[Message] = []
        blocked: list[Message] = []
        unsendable: list[Message] = []
        while ready and len(out) < max_messages:
            m = ready[0]
            if m.expires_at <= now:
                expired.append(popleft())
                continue
            if held and m.group in held:
                blocked.append(popleft())
                continue
            size = delivery_size(m)
            if size > too_big:
                # Never handed out: no frame could carry it (put refuses such
                # messages; only a restart with a smaller frame limit leaves one).
                unsendable.append(popleft())
                continue
            if size > budget and out:
                break
            budget -= size
            out.append(popleft())
        if blocked:
            ready.extendleft(reversed(blocked))
        if expired:
            self._dispose(expired, "expired", now)
        if unsendable:
            log.warning(
                "queue %r: %d messages too large for a delivery frame were removed",
                self.name,
                len(unsendable),
            )
            self._dispose(unsendable, "too_large", now)
        return out

    def _unhold(self, messages: list[Message]) -> None:
        """These messages left flight: their groups may be delivered again."""
        holds = self._group_holds
        for m in messages:
            group = m.group
            if group is not None:
                left = holds[group] - 1
                if left:
                    holds[group] = left
                else:
                    del holds[group]

    def _feed_waiters(self, now: float) -> None:
        """Hand ready messages to parked fetches, first come first served."""
        waiters = self._waiters
        while waiters and (self._ready or self._tail_bodies):
            key = next(iter(waiters))
            waiter = waiters[key]
            messages = self._deliver(
                waiter.peer.conn_id,
                waiter.max_messages,
                now,
                waiter.visibility_timeout,
                waiter.max_bytes,
                waiter.compact,
            )
            if not messages:
                break  # everything ready had expired
            del waiters[key]
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.peer.resolve(waiter.token, messages)

    def _waiter_expired(self, waiter: _Waiter, now: float) -> None:
        if self._waiters.pop(waiter.key, None) is not None:
            waiter.peer.resolve(waiter.token, [])

    def _drop_waiter(self, key: int) -> _Waiter:
        """Take a parked fetch out (it will not be fed) and disarm its wait timer."""
        waiter = self._waiters.pop(key)
        if waiter.timer is not None:
            waiter.timer.cancel()
        return waiter

    def cancel_wait(self, peer: Peer, token: int, now: float) -> bool:
        """Withdraw ``peer``'s fetch parked here with ``token``: it is answered
        at once with an empty list, so no message goes to a consumer that left.

        Returns False when no such fetch is parked (already answered, expired,
        parked on another queue or by another connection): the client then
        gives back whatever that fetch brought. A linear scan of this queue's
        waiters, as in :meth:`disconnect`: a consumer leaves rarely, and the
        feeding path stays free of any extra index.
        """
        conn_id = peer.conn_id
        for key, waiter in self._waiters.items():
            if waiter.token == token and waiter.peer.conn_id == conn_id:
                self._drop_waiter(key)
                waiter.peer.resolve(token, [])
                return True
        return False

    # ------------------------------------------------------------ ack / nack

    def _held_by(self, conn_id: int, delivery_ids: Iterable[int]) -> list[Message]:
        """The messages behind ``delivery_ids``, all held by ``conn_id``, or UnknownDelivery.

        Checks the whole batch before anything changes. A repeated id gives
        its message twice; :meth:`_release` keeps one.
        """
        inflight = self._inflight
        messages: list[Message] = []
        bad: list[int] = []
        for delivery_id in delivery_ids:
            m = inflight.get(delivery_id)
            if m is None:
                bad.append(delivery_id)
                continue
            lease = m.lease
            if lease is None or lease.conn_id != conn_id:
                bad.append(delivery_id)
            else:
                messages.append(m)
        if bad:
            shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
            raise UnknownDelivery(
                f"{len(bad)} delivery ids of queue {self.name!r} are not held by this "
                f"connection (already acked or nacked, expired and redelivered after the "
                f"visibility timeout, unknown, or fetched by another connection): {shown}; "
                "nothing was changed",
                queue=self.name,
                deliveries=bad[:1000],
            )
        return messages

    def _release(self, messages: list[Message]) -> list[Message]:
        """Take held messages out of the in-flight table and their leases; return them once each."""
        inflight = self._inflight
        released: list[Message] = []
        for m in messages:
            if inflight.pop(m.delivery_id, None) is None:
                continue  # the same id twice in one batch
            released.append(m)
            lease = m.lease
            m.lease = None
            if lease is not None:
                lease.outstanding -= 1
                if not lease.outstanding:
                    self._end_lease(lease)
        if self._group_holds:
            self._unhold(released)
        return released

    def _feed_unblocked(self, now: float) -> None:
        """Messages left flight for good: parked fetches may now take messages of
        their groups (only message groups make ready messages wait like this)."""
        if self._waiters and (self._ready or self._tail_bodies):
            self._feed_waiters(now)

    def _end_lease(self, lease: Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
        leases = self._leases.get(lease.conn_id)
        if leases is not None:
            leases.pop(lease, None)
            if not leases:
                del self._leases[lease.conn_id]

    def ack(self, peer: Peer, delivery_ids: Sequence[int], now: float) -> int:
        """Acknowledge deliveries held by ``peer``: they leave the queue. All or nothing."""
        if self._first_leases:
            count = self._ack_first(peer.conn_id, delivery_ids)
            if count:
                self.acked += count
                self._feed_unblocked(now)
                return count
            self._materialize()
        held = self._all_held(peer.conn_id, delivery_ids)
        messages = self._held_by(peer.conn_id, delivery_ids) if held is None else held[0]
        journal = self._journal
        if journal is not None and messages:
            timestamp = self._broker.clock.wall_ms(now)
            journal.settle(messages, timestamp)  # raises before anything changed
            self._compact_quietly(journal, timestamp)
        if held is None:
            count = len(self._release(messages))
        else:
            count = self._release_all(delivery_ids, held[1])
        self.acked += count
        self._feed_unblocked(now)
        return count

    def _ack_first(self, conn_id: int, delivery_ids: Sequence[int]) -> int:
        """The ack of a run of first deliveries (``_deliver_first``), settled in C: how many.

        0, with nothing changed, unless the ids are consecutive, ascending,
        all held by ``conn_id`` in leases of first deliveries and not
        settled yet: the caller then takes the general path, which checks
        the ids one by one and names the bad ones. A consumer acking what
        it fetched, in order, passes: a few slices per lease instead of a
        dictionary operation per message. The queue has no journal
        (``_put_bare``), so there is nothing to write.
        """
        count = len(delivery_ids)
        if not count:
            return 0
        first = delivery_ids[0]
        last = delivery_ids[-1]
        if type(first) is not int or type(last) is not int or last - first != count - 1:
            return 0
        ids = delivery_ids if type(delivery_ids) is list else list(delivery_ids)
        if ids != list(range(first, last + 1)):
            return 0
        spans: list[tuple[Lease, int, int]] = []
        at = first
        for lease in self._first_leases:  # in id order
            start = lease.first_id
            end = start + lease.count
            if at < start:
                return 0  # an id no lease of first deliveries holds
            if at >= end:
                continue
            upto = min(last + 1, end)
            spans.append((lease, at - start, upto - start))
            at = upto
            if at > last:
                break
        if at <= last:
            return 0
        for lease, lo, hi in spans:
            if lease.conn_id != conn_id or None in lease.bodies[lo:hi]:  # type: ignore[index]
                return 0
        for lease, lo, hi in spans:
            lease.bodies[lo:hi] = [None] * (hi - lo)  # type: ignore[index]
            lease.outstanding -= hi - lo
            if not lease.outstanding:
                self._first_leases.remove(lease)
                self._end_lease(lease)
        return count

    def _all_held(
        self, conn_id: int, delivery_ids: Sequence[int]
    ) -> tuple[list[Message], dict[Lease, int]] | None:
        """The common ack, checked in C: the messages and how many per lease, or None.

        None unless every id is distinct, in flight, held by ``conn_id`` and
        of no message group: the generic ``_held_by`` and ``_release`` then
        check, name the bad ids and settle one message at a time. A consumer
        acking what it fetched passes, so its ack costs a few passes of
        ``map`` in C instead of two Python loops per id.
        """
        if self._group_holds:
            return None
        found = list(map(self._inflight.get, delivery_ids))
        if None in found or len(set(delivery_ids)) != len(found):
            return None
        messages: list[Message] = found  # type: ignore[assignment]
        leases = set(map(_lease_of, messages))
        for lease in leases:
            if lease is None or lease.conn_id != conn_id:
                return None
        if len(leases) == 1:  # the acks of one fetch: no count per lease to make
            return messages, {leases.pop(): len(messages)}
        return messages, Counter(map(_lease_of, messages))

    def _release_all(self, delivery_ids: Sequence[int], leases: dict[Lease, int]) -> int:
        """Settle what ``_all_held`` found: out of the in-flight table, off their leases.

        The messages keep their (now stale) ``lease``: they leave the queue
        for good, and nothing reads it again.
        """
        deque(map(self._inflight.__delitem__, delivery_ids), maxlen=0)
        for lease, settled in leases.items():
            lease.outstanding -= settled
            if not lease.outstanding:
                self._end_lease(lease)
        return len(delivery_ids)

    def nack(
        self,
        peer: Peer,
        delivery_ids: Sequence[int],
        now: float,
        *,
        requeue: bool = True,
        delay: float = 0.0,
    ) -> int:
        """Give deliveries back: requeue them (after ``delay`` seconds) at the front, among
        the messages returned before in publish order (``_to_front``), or,
        with ``requeue=False``, dead-letter them (reason "rejected"). All or nothing.

        A message already delivered ``max_deliveries`` times is dead-lettered
        (reason "max_deliveries") instead of requeued.
        """
        delay = check_seconds("delay", delay, MAX_VISIBILITY_TIMEOUT, allow_zero=True)
        self._materialize()
        messages = self._release(self._held_by(peer.conn_id, delivery_ids))
        if not messages:
            return 0
        if not requeue:
            self._dispose(messages, "rejected", now)
            self._feed_unblocked(now)
        elif delay > 0:
            kept = self._past_max_deliveries(messages, now)
            if kept:
                self._journal_requeued(kept, now)
                self.requeued += len(kept)
                self._park(kept, now + delay, at_front=True)
        else:
            self._requeue(messages, now)
        return len(messages)

    def _past_max_deliveries(self, messages: list[Message], now: float) -> list[Message]:
        """Dead-letter the messages that used up their deliveries; return the others."""
        max_deliveries = self.options.max_deliveries
        if max_deliveries is None:
            return messages
        spent = [m for m in messages if m.delivery_count >= max_deliveries]
        if not spent:
            return messages
        self._dispose(spent, "max_deliveries", now)
        return [m for m in messages if m.delivery_count < max_deliveries]

    def _requeue(self, messages: list[Message], now: float) -> None:
        """Messages come back from consumers: to the front, in publish order (``_to_front``)."""
        kept = self._past_max_deliveries(messages, now)
        if not kept:
            return
        self._journal_requeued(kept, now)
        self.requeued += len(kept)
        self._to_front(kept, now)

    def _to_front(self, messages: list[Message], now: float) -> None:
        """Messages come back (nack, timeout, disconnect, end of a nack delay):
        ready again among the returned ones at the front, in publish order.

        As RabbitMQ puts a requeued message back at its original position,
        messages returned one at a time are delivered again in the order
        they were published, whatever order they came back in (see
        :func:`~minibroker.core.ready.return_in_order`). That also keeps a
        message group in order when messages one fetch took come back
        apart (ChangeMessageVisibility of one receipt handle).
        """
        return_in_order(self._ready, messages)
        if self._ttl is not None or self._expiring:
            self._arm_expiry()
        if self._waiters:
            self._feed_waiters(now)
        if self.ready_listeners:
            self._tell_ready(now)

    def _tell_ready(self, now: float) -> None:
        """Let the ready listeners fetch what just became ready (after parked fetches)."""
        for listener in list(self.ready_listeners):
            if not (self._ready or self._tail_bodies) or self.deleted:
                return
            listener(self, now)

    @property
    def ready_count(self) -> int:
        """Messages ready to be fetched now."""
        return len(self._ready) + len(self._tail_bodies) - self._tail_head

    def _park(self, messages: list[Message], until: float, *, at_front: bool) -> None:
        """Hold ``messages`` as delayed until ``until`` (one timer for them all)."""
        parked = _Delayed(self, self._parent.new_key(), messages, until, at_front)
        parked.timer = self._timers.call_at(until, parked.expire)
        self._delayed[parked.key] = parked
        self._delayed_count += len(messages)

    def _delay_over(self, parked: _Delayed, now: float) -> None:
        if self._delayed.pop(parked.key, None) is None:
            return
        self._delayed_count -= len(parked.messages)
        if parked.at_front:
            self._to_front(parked.messages, now)
        else:
            self._enqueue(parked.messages, now)

    def change_visibility(
        self, peer: Peer, delivery_ids: Sequence[int], now: float, timeout: float
    ) -> int:
        """Give in-flight deliveries of ``peer`` a new visibility deadline, ``timeout``
        seconds from now (SQS's ChangeMessageVisibility). All or nothing.

        A timeout of 0 makes them ready again at once, as a nack does. Otherwise
        each message leaves its fetch's lease for a one-message lease of its
        own, with its own timer (SQS changes visibility one receipt handle at a
        time, so this path is not the bulk one): the delivery id stays valid,
        and the old lease's timer no longer takes it back (see
        :meth:`_take_back`).
        """
        timeout = check_seconds(
            "visibility_timeout", timeout, MAX_VISIBILITY_TIMEOUT, allow_zero=True
        )
        if timeout == 0:
            return self.nack(peer, delivery_ids, now)
        self._materialize()
        moved: dict[int, Message] = {}
        for m in self._held_by(peer.conn_id, delivery_ids):
            old = m.lease
            if old is None or m.delivery_id in moved:
                continue  # the same id twice in one batch
            old.outstanding -= 1
            if not old.outstanding:
                self._end_lease(old)
            moved[m.delivery_id] = m
        conn_id = peer.conn_id
        deadline = now + timeout
        for m in moved.values():
            lease = Lease(self, conn_id, m.delivery_id, 1, deadline)
            lease.timer = self._timers.call_at(deadline, lease.expire)
            m.lease = lease
            leases = self._leases.get(conn_id)
            if leases is None:
                leases = self._leases[conn_id] = {}
                self._parent.track(conn_id, self)
            leases[lease] = None
        return len(moved)

    def _lease_expired(self, lease: Lease, now: float) -> None:
        """A fetch's visibility deadline passed: its unacked messages come back."""
        if not lease.outstanding or self.deleted:
            return
        self._materialize()
        back = self._take_back(lease)
        self._end_lease(lease)
        self._requeue(back, now)

    def _take_back(self, lease: Lease) -> list[Message]:
        """Take the lease's still-outstanding messages out of the in-flight table.

        A message of the lease's id range may have moved to a lease of its
        own (:meth:`change_visibility`): it stays where it is.
        """
        self._materialize()
        inflight = self._inflight
        back: list[Message] = []
        for delivery_id in range(lease.first_id, lease.first_id + lease.count):
            m = inflight.get(delivery_id)
            if m is not None and m.lease is lease:
                del inflight[delivery_id]
                m.lease = None
                back.append(m)
        lease.outstanding = 0
        if self._group_holds:
            self._unhold(back)
        return back

    def disconnect(self, conn_id: int, now: float) -> None:
        """A consumer's connection closed: drop its waits, requeue what it held, at once."""
        waiters = self._waiters
        for key in [k for k, w in waiters.items() if w.peer.conn_id == conn_id]:
            self._drop_waiter(key)
        self._materialize()
        leases = self._leases.pop(conn_id, None)
        if not leases:
            return
        back: list[Message] = []
        for lease in leases:
            if lease.timer is not None:
                lease.timer.cancel()
            back.extend(self._take_back(lease))
        self._requeue(back, now)

    # ------------------------------------------------------ expiry, dead letters

    def _arm_expiry(self) -> None:
        """Make sure a timer fires when the message at the head expires."""
        ready = self._ready
        if not ready:
            return
        when = ready[0].expires_at
        timer = self._ttl_timer
        if timer is not None and not timer.cancelled:
            if timer.when <= when:
                return
            timer.cancel()
        self._ttl_timer = self._timers.call_at(when, self._expiry_due)

    def _expire_arrived(self, now: float) -> None:
        """After a put with ``ttl`` 0: expire the head while it is due by the
        instant after ``now``, so such a message no consumer took is gone at
        once when nothing was ahead of it (RabbitMQ checks the head after a
        publish; behind other messages it waits to reach the head)."""
        ready = self._ready
        cutoff = math.nextafter(now, math.inf)
        if ready and ready[0].expires_at <= cutoff:
            expired: list[Message] = []
            while ready and ready[0].expires_at <= cutoff:
                expired.append(ready.popleft())
            self._dispose(expired, "expired", now)
            timer = self._ttl_timer
            if not ready and timer is not None:
                timer.cancel()  # armed for the message just gone: nothing left to expire
                self._ttl_timer = None
            self._arm_expiry()

    def _expiry_due(self, now: float) -> None:
        self._ttl_timer = None
        if self.deleted:
            return
        ready = self._ready
        if ready and ready[0].expires_at <= now:
            expired: list[Message] = []
            while ready and ready[0].expires_at <= now:
                expired.append(ready.popleft())
            self._dispose(expired, "expired", now)
        self._arm_expiry()

    def _dispose(self, messages: list[Message], reason: str, now: float) -> None:
        """Messages leave without an ack: to the dead-letter queue, or dropped and counted.

        A message that would go round a dead-letter cycle with no rejection
        in it is dropped (see :mod:`minibroker.core.dead_letters`).
        """
        count = len(messages)
        if reason == "expired":
            self.expired += count
        dead_lettered, journaled = self._dead_letter(messages, reason, now)
        self.dead_lettered += dead_lettered
        self.dropped += count - dead_lettered
        journal = self._journal
        if journal is not None and journaled:
            # If the dead-letter queue could not journal them, keep them in this
            # journal: after a restart they are back here (at least once).
            timestamp = self._broker.clock.wall_ms(now)
            try:
                journal.settle(messages, timestamp)
            except (BrokerError, OSError) as exc:
                self._journal_failed(exc)

    def _dead_letter(self, messages: list[Message], reason: str, now: float) -> tuple[int, bool]:
        """Send ``messages`` on to where this queue's dead letters go: (how many went,
        whether the dead-letter queue journaled them, when it is durable)."""
        dead_lettered = 0
        journaled = True
        route = self.dead_letter_route
        if route is not None:
            # A front end routes them (AMQP's x-dead-letter-exchange), one at a
            # time: while it does, ``put`` bars the queues on that message's
            # death path, so the cycle rule holds whatever the routing.
            parent = self._parent
            if parent.dead_letter_depth < MAX_DEAD_LETTER_HOPS:
                parent.dead_letter_depth += 1
                barred = parent.barred
                name = self.name
                try:
                    for m in messages:
                        parent.barred = death_path(m.headers, reason, name)
                        if route([m], reason, now):
                            dead_lettered += 1
                finally:
                    parent.barred = barred
                    parent.dead_letter_depth -= 1
        else:
            target = self._parent.dead_letter_target(self)
            if target is not None:
                name = self.name
                onward = [
                    m for m in messages if not would_cycle(m.headers, reason, name, target.name)
                ]
                if onward:
                    dead_lettered, journaled = target._accept_dead_letters(
                        onward, reason, name, now
                    )
        return dead_lettered, journaled

    def _accept_dead_letters(
        self, messages: list[Message], reason: str, source: str, now: float
    ) -> tuple[int, bool]:
        """Take dead letters from ``source``: (how many, journaled if durable).

        A dead letter that its new headers make too big for one delivery is
        left out (its source drops it): it could never be fetched.
        """
        parent = self._parent
        if parent.dead_letter_depth >= MAX_DEAD_LETTER_HOPS or self.deleted:
            return 0, True
        if self._reject_overflow and self._would_overflow(
            len(messages), messages if self.options.max_length_bytes is not None else ()
        ):
            self.rejected_publishes += len(messages)
            if self.options.overflow != "reject_publish_dlx":
                return 0, True
            # As RabbitMQ: refused here, they die here too and go on to this
            # queue's own dead letters (the hop limit ends a cascade).
            letters = [
                Message(
                    m.body,
                    dead_letter_headers(m.headers, reason, source, m.delivery_count),
                    m.published_at,
                    priority=m.priority,
                )
                for m in messages
            ]
            parent.dead_letter_depth += 1
            try:
                return self._dead_letter(letters, "overflow", now)
            finally:
                parent.dead_letter_depth -= 1
        expires_at = self._expires_at(now)
        max_item = parent.limits.max_item_bytes
        batch: list[Message] = []
        for m in messages:
            headers = dead_letter_headers(m.headers, reason, source, m.delivery_count)
            letter = Message(m.body, headers, m.published_at, expires_at, priority=m.priority)
            if max_item is None or delivery_size(letter) <= max_item:
                batch.append(letter)
        count = len(batch)
        if not count:
            return 0, True
        self._admitted(max_item)
        journaled = True
        journal = self._journal
        if journal is not None:
            try:
                journal.put_full(batch, self._broker.clock.wall_ms(now), replace=False)
            except (BrokerError, OSError) as exc:
                self._journal_failed(exc)
                journaled = False
        self.published += count
        parent.dead_letter_depth += 1
        try:
            self._enqueue(batch, now)
        finally:
            parent.dead_letter_depth -= 1
        return count, journaled

    # ------------------------------------------------------------- journal

    def _journal_requeued(self, messages: list[Message], now: float) -> None:
        journal = self._journal
        if journal is not None:
            try:
                journal.requeued(messages, self._broker.clock.wall_ms(now))
            except (BrokerError, OSError) as exc:
                self._journal_failed(exc)

    def _compact_quietly(self, journal: QueueJournal, timestamp: int) -> None:
        try:
            journal.maybe_compact(timestamp)
        except (BrokerError, OSError) as exc:
            self._journal_failed(exc)

    def _journal_failed(self, exc: BaseException) -> None:
        """A journal write outside a request failed: count it, log the first few."""
        self.journal_errors += 1
        if self.journal_errors <= 10 or self.journal_errors % 1000 == 0:
            log.error(
                "journal write for queue %r failed (%d so far): %s",
                self.name,
                self.journal_errors,
                exc,
            )

    # -------------------------------------------------------- admin, hooks

    def purge(self, now: float) -> int:
        """Remove every ready and delayed message (in-flight ones stay with their consumers)."""
        self._flush_tail()
        messages = list(self._ready)
        for parked in self._delayed.values():
            messages.extend(parked.messages)
        if not messages:
            return 0
        journal = self._journal
        if journal is not None:
            journal.settle(messages, self._broker.clock.wall_ms(now))
        self._ready.clear()
        for parked in self._delayed.values():
            if parked.timer is not None:
                parked.timer.cancel()
        self._delayed.clear()
        self._delayed_count = 0
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
            self._ttl_timer = None
        self.purged += len(messages)
        return len(messages)

    def purge_held(self, peer: Peer, now: float) -> int:
        """Remove the in-flight messages ``peer`` holds, as purged (SQS's PurgeQueue
        deletes in-flight messages too; the SQS endpoint holds all of its own).
        Their delivery ids become unknown. Returns how many went."""
        self._materialize()
        leases = self._leases.pop(peer.conn_id, None)
        if not leases:
            return 0
        messages: list[Message] = []
        for lease in leases:
            if lease.timer is not None:
                lease.timer.cancel()
            messages.extend(self._take_back(lease))
        journal = self._journal
        if journal is not None and messages:
            journal.settle(messages, self._broker.clock.wall_ms(now))
        self.purged += len(messages)
        self._feed_unblocked(now)
        return len(messages)

    def restore_groups(self, group_of: Callable[[Message], str | None]) -> int:
        """Give the ready messages their message groups back after a restart.

        Groups are not journaled (``put``); a front end that keeps each
        message's group in its headers (SQS FIFO queues do) calls this once
        the queue is recovered, before anything was delivered, so a group's
        messages are again delivered in order, one batch in flight at a time.
        Returns how many messages got a group.
        """
        self._flush_tail()
        restored = 0
        for m in self._ready:
            group = group_of(m)
            if group:
                m.group = group
                restored += 1
        if restored:
            self._grouped = True
        return restored

    def statistics(self) -> QueueStatistics:
        consumers = set(self._leases)
        consumers.update(w.peer.conn_id for w in self._waiters.values())
        return QueueStatistics(
            name=self.name,
            durable=self.durable,
            ready=self.ready_count,
            in_flight=len(self._inflight) + sum(lease.outstanding for lease in self._first_leases),
            delayed=self._delayed_count,
            consumers=len(consumers),
            waiting_fetches=len(self._waiters),
            published=self.published,
            delivered=self.delivered,
            redelivered=self.redelivered,
            acked=self.acked,
            requeued=self.requeued,
            expired=self.expired,
            dead_lettered=self.dead_lettered,
            dropped=self.dropped,
            purged=self.purged,
            rejected_publishes=self.rejected_publishes,
            journal_errors=self.journal_errors,
        )

    def inspect(self, limit: int) -> QueueContents:
        """Test hook: the first ``limit`` ready, in-flight and delayed messages."""
        if type(limit) is not int or not 0 <= limit <= self._parent.limits.max_fetch:
            raise BadRequest(
                f"limit must be between 0 and {self._parent.limits.max_fetch}, got {limit!r}"
            )
        self._flush_tail()
        self._materialize()
        ready = [m for _, m in zip(range(limit), self._ready, strict=False)]
        in_flight: list[InFlight] = []
        for delivery_id, m in self._inflight.items():
            if len(in_flight) >= limit:
                break
            lease = m.lease
            assert lease is not None
            in_flight.append(InFlight(m, delivery_id, lease.conn_id, lease.deadline))
        delayed: list[Delayed] = []
        for parked in self._delayed.values():
            for m in parked.messages:
                if len(delayed) >= limit:
                    break
                delayed.append(Delayed(m, parked.until))
        return QueueContents(ready, in_flight, delayed)

    def _restore(self, messages: list[Message]) -> None:
        """Load recovered messages as ready (publish order)."""
        max_item = self._parent.limits.max_item_bytes
        if max_item is not None and all(delivery_size(m) <= max_item for m in messages):
            self._admitted(max_item)
        else:
            self._admitted(None)
        self._ready.extend(messages)
        self.published += len(messages)
        if self._ttl is not None:
            self._arm_expiry()

    def _shut(self, error: BrokerError | None) -> int:
        """The queue goes away: fail waiters with ``error``, disarm every timer."""
        self.deleted = True
        self._flush_tail()
        self._materialize()
        held = len(self._ready) + len(self._inflight) + self._delayed_count
        waiters = list(self._waiters.values())
        self._waiters.clear()
        for waiter in waiters:
            if waiter.timer is not None:
                waiter.timer.cancel()
        for leases in self._leases.values():
            for lease in leases:
                if lease.timer is not None:
                    lease.timer.cancel()
                lease.outstanding = 0
        for parked in self._delayed.values():
            if parked.timer is not None:
                parked.timer.cancel()
        if self._ttl_timer is not None:
            self._ttl_timer.cancel()
        self._ready.clear()
        self._inflight.clear()
        self._leases.clear()
        self._group_holds.clear()
        self._delayed.clear()
        self._delayed_count = 0
        if error is not None:
            for waiter in waiters:
                waiter.peer.reject(waiter.token, error)
        return held


class Queues:
    """The queues of one namespace: declare, look up, delete; fan-out of disconnects."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.broker: Broker = namespace.broker
        self._queues: dict[str, Queue] = {}
        #: Delivery ids are unique within the namespace and never reused.
        self.next_delivery_id = 1
        self._next_key = 1
        #: conn id -> queues it fetched from or waits on (an ordered set).
        self._consumers: dict[int, dict[Queue, None]] = {}
        #: Nesting of dead-lettering in progress (see MAX_DEAD_LETTER_HOPS).
        self.dead_letter_depth = 0
        #: While a front end routes one dead letter (``Queue.dead_letter_route``):
        #: the queues it may not enter, those on its death path (the cycle
        #: rule of :mod:`minibroker.core.dead_letters`). ``put`` into one of
        #: them stores nothing and returns 0. Empty otherwise.
        self.barred: Sequence[str] = ()
        #: Called with a queue's name after it is deleted (topic bindings listen here).
        self.on_delete: list[Callable[[str], None]] = []
        #: Journal segment size and compaction knobs of this namespace's queues.
        self.compaction = replace(compaction_defaults)
        self._recover()

    @property
    def limits(self) -> Limits:
        return self.broker.config.limits

    @property
    def _defer_journal_ids(self) -> bool:
        """Under group commit, journals write ack/requeue ids at the commit (queue_journal.py)."""
        return self.broker.config.fsync == "batch"

    def new_key(self) -> int:
        key = self._next_key
        self._next_key = key + 1
        return key

    def track(self, conn_id: int, queue: Queue) -> None:
        """Remember that ``conn_id`` holds deliveries of, or waits on, ``queue``."""
        queues = self._consumers.get(conn_id)
        if queues is None:
            self._consumers[conn_id] = {queue: None}
        else:
            queues[queue] = None

    # --------------------------------------------------------------- lookup

    def get(self, name: str) -> Queue:
        """The queue called ``name``, or NotFound."""
        queue = self._queues.get(name)
        if queue is None:
            check_name("queue", name)
            raise NotFound(f"queue {name!r} does not exist", queue=name)
        return queue

    def find(self, name: str) -> Queue | None:
        return self._queues.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._queues

    def __len__(self) -> int:
        return len(self._queues)

    def names(self) -> list[str]:
        return sorted(self._queues)

    def list(self) -> list[QueueStatistics]:
        """Statistics of every queue, by name."""
        return [self._queues[name].statistics() for name in sorted(self._queues)]

    def dead_letter_target(self, queue: Queue) -> Queue | None:
        name = queue.options.dead_letter_queue
        return None if name is None else self._queues.get(name)

    # --------------------------------------------------------- declare/delete

    def declare(self, name: str, options: QueueOptions, now: float) -> bool:
        """Create the queue, or check that it exists with the same options.

        Returns True when it was created. Raises Conflict when it exists with
        other options, BadRequest/InvalidName for invalid ones.
        """
        check_name("queue", name)
        options.check(name)
        existing = self._queues.get(name)
        if existing is not None:
            if existing.options != options:
                ours = existing.options.to_dict()
                theirs = options.to_dict()
                differ = sorted(k for k in ours if ours[k] != theirs[k])
                raise Conflict(
                    f"queue {name!r} already exists with different options "
                    f"({', '.join(f'{k}={ours[k]!r}' for k in differ)})",
                    queue=name,
                    options=ours,
                )
            if existing._journal is not None:
                # "Exists" is only true once the declaration is on disk: a
                # failed (or pending) sync of it is retried before the answer.
                existing._journal.report_unsynced()
            return False
        self._check_room(name)
        journal = None
        storage = self.broker.storage
        if options.durable and storage is not None:
            journal = self._open_journal(name, options)
        self._queues[name] = Queue(self, name, options, journal)
        if journal is not None:
            # Written once the queue is registered: under fsync=always the
            # write's own sync (Durability.written) syncs the registered queues.
            try:
                journal.write_options(self.broker.clock.wall_ms(now))
            except BaseException:
                del self._queues[name]
                journal.store.destroy()
                raise
        self.broker.queue_total += 1
        return True

    def _check_room(self, name: str) -> None:
        """LimitExceeded when the namespace holds ``max_queues_per_namespace`` queues.

        Checked on creation only: recovery registers every queue it finds, so
        a lowered limit never keeps a data directory from starting.
        """
        LimitExceeded.check_room(
            f"cannot declare queue {name!r}",
            "queue",
            self.namespace.name,
            (len(self._queues), self.broker.queue_total),
            (self.limits.max_queues_per_namespace, self.limits.max_queues_total),
            queue=name,
        )

    def _open_journal(self, name: str, options: QueueOptions) -> QueueJournal:
        storage = self.broker.storage
        assert storage is not None
        ns = self.namespace.name
        store = storage.open(ns, _KIND, name, segment_bytes=self.compaction.segment_bytes)
        if store.next_offset != store.first_offset:
            # Leftovers of a queue whose deletion did not finish: start afresh.
            store.destroy()
            store = storage.open(ns, _KIND, name, segment_bytes=self.compaction.segment_bytes)
        journal = QueueJournal(
            store,
            options,
            epoch_offset=self.broker.clock.epoch_offset,
            on_write=self.broker.durability.written,
            settings=self.compaction,
            defer=self._defer_journal_ids,
        )
        return journal

    def reconfigure(self, name: str, options: QueueOptions, now: float) -> bool:
        """Change an existing queue's options in place (SQS's SetQueueAttributes).

        Returns False when nothing changed. ``durable`` cannot change (the
        queue would need another home). New limits apply from now on:
        ``message_ttl`` to messages put from now, ``visibility_timeout`` to
        the next fetches, ``max_length`` to the next puts, ``max_deliveries``
        and ``dead_letter_queue`` to the next message that comes back.
        """
        queue = self.get(name)
        options.check(name)
        if options == queue.options:
            return False
        if options.durable != queue.options.durable:
            raise BadRequest(f"queue {name!r}: durable cannot change once declared")
        if options.max_priority != queue.options.max_priority:
            raise BadRequest(f"queue {name!r}: max_priority cannot change once declared")
        journal = queue._journal
        if journal is not None:
            previous, journal.options = journal.options, options
            try:
                journal.write_options(self.broker.clock.wall_ms(now))
            except BaseException:
                journal.options = previous
                raise
        queue._configure(options)
        return True

    def delete(self, name: str, now: float) -> int:
        """Delete the queue and its messages; return how many messages it held.

        Parked fetches on it fail with NotFound; its delivery ids become unknown.
        """
        queue = self.get(name)
        del self._queues[name]
        self.broker.queue_total -= 1
        held = queue._shut(NotFound(f"queue {name!r} was deleted", queue=name))
        if queue._journal is not None:
            queue._journal.destroy()
        for listener in list(self.on_delete):
            listener(name)
        return held

    # ---------------------------------------------------------- recovery

    def _recover(self) -> None:
        storage = self.broker.storage
        if storage is None:
            return
        ns = self.namespace.name
        epoch_offset = self.broker.clock.epoch_offset
        for name in sorted(storage.existing(ns, _KIND)):
            store = storage.open(ns, _KIND, name, segment_bytes=self.compaction.segment_bytes)
            try:
                found = recover(store, epoch_offset)
            except BaseException:
                store.close()
                raise
            if found.options is None:
                log.warning("queue journal %r (namespace %r) has no declaration: removed", name, ns)
                store.destroy()
                continue
            journal = reopen(
                store,
                found,
                epoch_offset=epoch_offset,
                on_write=self.broker.durability.written,
                settings=self.compaction,
                defer=self._defer_journal_ids,
            )
            queue = Queue(self, name, found.options, journal)
            queue._restore(sorted(found.live.values(), key=_publish_order))
            self._queues[name] = queue
            self.broker.queue_total += 1
            log.info(
                "recovered queue %r in namespace %r: %d messages from %d journal records",
                name,
                ns,
                len(found.live),
                found.records,
            )

    # ------------------------------------------------------------ Model

    def disconnect(self, peer: Peer, now: float) -> None:
        queues = self._consumers.pop(peer.conn_id, None)
        if queues:
            for queue in queues:
                if not queue.deleted:
                    queue.disconnect(peer.conn_id, now)

    def sync(self) -> None:
        for queue in list(self._queues.values()):
            if queue._journal is not None:
                queue._journal.sync()

    def close(self) -> None:
        for queue in list(self._queues.values()):
            queue._shut(None)
            if queue._journal is not None:
                queue._journal.close()

    def destroy(self) -> None:
        queues = list(self._queues.values())
        self._queues.clear()
        self.broker.queue_total -= len(queues)
        for queue in queues:
            queue._shut(NotFound(f"queue {queue.name!r} was deleted with its namespace"))
            if queue._journal is not None:
                queue._journal.destroy()


def _publish_order(m: Message) -> int:
    return m.seq
