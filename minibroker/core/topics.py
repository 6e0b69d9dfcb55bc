"""Topics: publish/subscribe with push fan-out, wildcards, groups and queue bindings.

A message published to a topic is copied, at once, to every subscription
whose pattern matches the topic (RabbitMQ's topic exchange, NATS subjects).
Delivery is at-most-once to live subscribers: nothing is stored for a
subscriber that is not connected; bind a queue to the pattern for that.

Who gets a copy
---------------

* every ungrouped subscription whose pattern matches;
* every *group* with at least one matching member gets exactly one copy,
  handed to its matching members in turn (round robin). A group is named by
  its group name alone, within the namespace, like a NATS queue group: two
  members subscribed with different patterns still share one stream, and a
  message matching both patterns still reaches the group once;
* every bound queue whose binding pattern matches gets one copy, however many
  of its bindings match (RabbitMQ's rule).

Routing cost
------------

Patterns live in one :class:`~minibroker.core.trie.SubscriptionTrie` (values:
subscriptions and queue targets, hashed by identity). Publishing asks the
trie once per *topic*, not per message, and turns the answer into a
:class:`Route` (ungrouped subscriptions, groups with their matching members,
bound queues), which is cached per topic string until the next subscribe,
unsubscribe, bind or unbind. A publish of a batch to a cached topic is then
one dict lookup plus, per subscription, one ``deque.extend`` of the batch:
per message and subscriber the core does no work beyond a pointer copy.

Slow subscribers
----------------

Each subscription buffers at most ``buffer`` messages and ``buffer_bytes``
bytes waiting for its connection to take them, and all the subscriptions of
one connection together at most ``max_topic_buffer_bytes_per_connection``
bytes. A message counts the bytes it takes in a ``msg`` push
(``message_size``: body, headers, topic and ``MESSAGE_OVERHEAD``), computed
once per message at publish time; a
subscription keeps a running total, so bounding by bytes costs one addition
per batch and subscription, not a pass over the buffer. (A count alone is no
bound on memory: a million 16 KiB messages are 16 GB.)

The connection pulls (see :meth:`minibroker.core.peer.Peer.push_ready`)
only while its socket keeps up, so a subscriber that stops reading fills its
own buffer and nobody else's. Then, per its ``on_overflow`` option:

* ``drop_oldest``: the oldest messages are dropped from the front until the
  buffer is within its bounds again (a single message bigger than
  ``buffer_bytes`` is still kept, alone, if the connection's bound allows);
  the count is kept in ``pending_dropped`` and the protocol layer tells the
  client (a ``notice`` frame) before the next batch it sends;
* ``disconnect``: the subscription is removed at once and its connection is
  kicked with :class:`~minibroker.errors.SlowConsumer`.

Ordering: one publish's messages are appended to each buffer in order, and a
connection drains a buffer front to back, so a subscriber sees one
publisher's messages in publish order (minus any it dropped).

Queues and bindings
-------------------

``bind(queue, pattern)`` requires the queue to exist. Deleting a queue
removes its bindings: topics registers :meth:`Topics.drop_queue_bindings` in
the queue model's ``on_delete`` listeners, so a queue re-declared under the
same name starts unbound, as in RabbitMQ. (As a safety net, a publish that
finds a bound queue missing drops its bindings then and there.)

Bound queues get their copies *before* subscribers do, through the queue's
ordinary ``put``: a storage failure of a durable bound queue fails the
publish before any subscriber has seen the message (the publisher retries;
queues that took the batch already may then hold it twice, which
at-least-once allows). A bound queue that is full with
``overflow=reject_publish`` refuses its copy (counted in that queue's
``rejected_publishes``) without failing the publish: ``PublishResult.queues``
counts only the copies actually enqueued, and ``PublishResult.refused`` the
copies full queues refused (AMQP nacks such a publish, as RabbitMQ does). A
durable bound queue makes the publish a durable write, so its confirm waits
for group commit like a put.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Protocol

from minibroker.core import binding_journal
from minibroker.core.binding_journal import BindingJournal
from minibroker.core.journaled import Journaled
from minibroker.core.names import check_name, split_pattern, split_topic
from minibroker.core.peer import Peer
from minibroker.core.sizes import headers_size, utf8_length
from minibroker.core.trie import SubscriptionTrie
from minibroker.errors import (
    BadRequest,
    LimitExceeded,
    NotFound,
    Overflow,
    SlowConsumer,
    StorageError,
    StorageFull,
    TooLarge,
)
from minibroker.log_store import LogStore
from minibroker.value_class import Value

if TYPE_CHECKING:
    from minibroker.core.namespace import Namespace
    from minibroker.core.queues import Incoming, Queues

log = logging.getLogger("minibroker.topics")

__all__ = [
    "OVERFLOW_POLICIES",
    "Group",
    "MessageLike",
    "NoRoom",
    "OverflowPolicy",
    "PublishResult",
    "PublishedMessage",
    "QueueTarget",
    "Route",
    "TopicMessage",
    "TopicStats",
    "TopicSubscription",
    "Topics",
]

OverflowPolicy = Literal["drop_oldest", "disconnect"]
OVERFLOW_POLICIES: Final = ("drop_oldest", "disconnect")

#: ``buffer_bytes`` of a subscription that does not choose (at most the
#: connection's limit).
DEFAULT_BUFFER_BYTES: Final = 16 * 1024 * 1024

#: Topics whose routes are remembered between changes to the subscriptions.
ROUTE_CACHE_SIZE: Final = 1024


class MessageLike(Protocol):
    """What :meth:`Topics.publish` reads from each message it is given."""

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


#: Header naming the topic on copies that bindings put into queues.
TOPIC_HEADER: Final = "x-topic"
#: Bytes of one message in a ``msg`` push besides its topic, body and
#: headers: the map, its three keys and the headers of the values, at their
#: widest (see core/sizes.py).
MESSAGE_OVERHEAD: Final = 40


#: What :meth:`Topics.publish` takes per message: one with ``body`` and
#: ``headers``, or a bare body (a message without headers, as the native
#: protocol's ``publish`` may carry it, which spares a front end an object per message).
PublishedMessage = MessageLike | bytes


def message_size(topic: str, message: PublishedMessage) -> int:
    """Bytes ``message`` takes in a ``msg`` push, at most."""
    if type(message) is bytes:
        return MESSAGE_OVERHEAD + utf8_length(topic) + len(message)
    assert not isinstance(message, bytes)
    return MESSAGE_OVERHEAD + utf8_length(topic) + len(message.body) + headers_size(message.headers)


class _QueueCopy(NamedTuple):
    """A message as a bound queue receives it: the body, headers plus x-topic."""

    body: bytes
    headers: dict[str, str]


class TopicMessage:
    """One published message, shared by every subscription it is routed to.

    Immutable in meaning; ``wire`` and ``bare`` are cache slots for a front
    end: the msgpack encoder stores the message's packed bytes there (the
    full map, and the body alone for subscribers that take bare bodies) the
    first time a subscription sends it, and every other subscription reuses
    them, so a message is encoded once however many subscribers it has. The
    core never reads them.
    """

    __slots__ = ("bare", "body", "headers", "size", "topic", "wire")

    def __init__(
        self,
        topic: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        base: int | None = None,
    ) -> None:
        self.topic = topic
        self.body = body
        self.headers = headers
        if base is None:  # a batch computes it once for all its messages
            base = MESSAGE_OVERHEAD + utf8_length(topic)
        #: Bytes this message takes in a ``msg`` push, at most (``message_size``):
        #: what it counts for in a subscription's buffer.
        self.size = base + len(body) + (headers_size(headers) if headers else 0)
        self.wire: bytes | None = None
        self.bare: bytes | None = None

    def __repr__(self) -> str:
        return f"TopicMessage({self.topic!r}, {self.body!r}, {self.headers!r})"


class NoRoom(NamedTuple):
    """A queue the full disk refused a publish's copies (StorageFull): its
    name, the copies exactly as it was to store them, and the error.

    Collected, instead of failing the publish, by a caller that passes a list
    for them (``Topics.publish``'s ``no_room``): the AMQP front end puts the
    copies into those queues alone once there is room, so the queues that
    took them are not given them twice (``minibroker/amqp/disk_room.py``).
    """

    queue: str
    messages: Sequence[Incoming | bytes]
    error: StorageFull


class PublishResult(NamedTuple):
    """Totals for one publish call (one message or a batch).

    ``subscriptions`` counts copies handed to subscriptions (a batch of 10
    messages reaching 3 subscriptions counts 30; a group counts once per
    message); ``queues`` counts copies enqueued into bound queues;
    ``refused`` counts copies that bound queues refused because they were
    full (``overflow`` reject_publish or reject_publish_dlx).
    """

    subscriptions: int
    queues: int
    refused: int = 0


class TopicStats(Value):
    """Plain counters for metrics, read at scrape time."""

    #: Messages accepted by publish.
    published: int = 0
    #: Published messages that matched no subscription and no binding.
    unrouted: int = 0
    #: Copies buffered for subscriptions (before any drop).
    routed: int = 0
    #: Copies handed to subscribers' connections (counted by the front end).
    delivered: int = 0
    #: Copies lost to drop_oldest overflow (slow consumers).
    dropped: int = 0
    #: Subscriptions disconnected by on_overflow=disconnect.
    slow_consumers_kicked: int = 0
    #: Copies enqueued into bound queues.
    enqueued: int = 0


class Group:
    """Subscriptions sharing a group name: one copy per message, round robin."""

    __slots__ = ("members", "name", "position")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[TopicSubscription, None] = {}
        #: Round-robin position, advanced by every message the group receives.
        self.position = 0

    def __repr__(self) -> str:
        return f"<Group {self.name!r} members={len(self.members)}>"


class QueueTarget:
    """A queue as a trie value: one per bound queue, stored under each of its patterns.

    Because the trie reports a value once however many of its patterns match,
    a queue bound with two matching patterns gets one copy, as in RabbitMQ.
    """

    __slots__ = ("name", "patterns")

    def __init__(self, name: str) -> None:
        self.name = name
        self.patterns: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"<QueueTarget {self.name!r} patterns={list(self.patterns)}>"


class ConnectionBuffers:
    """Bytes buffered for one connection over all its topic subscriptions."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class TopicSubscription:
    """One live subscription: the push source a connection drains.

    ``items`` holds messages waiting to be sent; the front end's push encoder
    pops from its left end and reports the bytes it took with ``taken``.
    ``pending_dropped`` counts messages lost to overflow that the client has
    not been told about yet.
    """

    __slots__ = (
        "bare_bodies",
        "buffer",
        "buffer_bytes",
        "closed",
        "connection",
        "dropped",
        "group",
        "held_bytes",
        "items",
        "on_overflow",
        "pattern",
        "peer",
        "pending_dropped",
        "stats",
        "sub_id",
        "topics",
        "words",
    )

    def __init__(
        self,
        topics: Topics,
        peer: Peer,
        sub_id: int,
        pattern: str,
        words: tuple[str, ...],
        group: Group | None,
        buffer: int,
        on_overflow: OverflowPolicy,
        buffer_bytes: int,
        connection: ConnectionBuffers,
    ) -> None:
        self.topics = topics
        self.stats = topics.stats
        self.peer = peer
        self.sub_id = sub_id
        self.pattern = pattern
        self.words = words
        self.group = group
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self.on_overflow = on_overflow
        self.items: deque[TopicMessage] = deque()
        #: Bytes of ``items``, and of every subscription of this connection.
        self.held_bytes = 0
        self.connection = connection
        self.pending_dropped = 0
        #: Every message this subscription lost to overflow.
        self.dropped = 0
        self.closed = False
        #: Set by a front end whose client asked for messages without headers
        #: as bare bodies (the native protocol's ``compact`` subscriptions);
        #: the core never reads it.
        self.bare_bodies = False

    def push(self, messages: Sequence[TopicMessage], size: int) -> None:
        """Buffer ``messages`` (``size`` bytes in all, in order) and tell the
        connection if it was idle."""
        if self.closed:
            return
        items = self.items
        was_empty = not items
        items.extend(messages)
        self.held_bytes += size
        connection = self.connection
        connection.held += size
        if (
            len(items) > self.buffer
            or (self.held_bytes > self.buffer_bytes and len(items) > 1)
            or connection.held > connection.limit
        ):
            if self.on_overflow == "disconnect":
                self.topics.kick_slow(self)
                return
            self._drop_oldest()
        if was_empty and items:
            self.peer.push_ready(self)

    def _drop_oldest(self) -> None:
        """Drop from the front until every bound holds (see the module docstring)."""
        items = self.items
        connection = self.connection
        dropped = 0
        size = 0
        while len(items) > 1 and (
            len(items) > self.buffer or self.held_bytes - size > self.buffer_bytes
        ):
            size += items.popleft().size
            dropped += 1
        while items and connection.held - size > connection.limit:
            size += items.popleft().size
            dropped += 1
        self.taken(size)
        self.pending_dropped += dropped
        self.dropped += dropped
        self.stats.dropped += dropped

    def taken(self, size: int) -> None:
        """Messages of ``size`` bytes in all have left ``items`` (sent or dropped)."""
        self.held_bytes -= size
        self.connection.held -= size

    def overflow_reason(self) -> str:
        """Which bound this subscription's buffer broke, in words."""
        if len(self.items) > self.buffer:
            return f"more than {self.buffer} messages"
        if self.held_bytes > self.buffer_bytes:
            return f"more than {self.buffer_bytes} bytes (buffer_bytes)"
        return (
            f"more than the {self.connection.limit} bytes buffered for all of its "
            "connection's subscriptions"
        )

    def take_dropped(self) -> int:
        """The drop count to report now (and reset): the front end sends a notice."""
        dropped, self.pending_dropped = self.pending_dropped, 0
        return dropped

    def clear(self) -> None:
        """Forget every buffered message."""
        self.items.clear()
        self.taken(self.held_bytes)

    def cancel(self, now: float) -> None:
        """The client unsubscribed: leave the trie and the group, forget buffered messages."""
        self.topics.unsubscribe(self)

    def __repr__(self) -> str:
        group = f" group={self.group.name!r}" if self.group else ""
        buffered = len(self.items)
        return f"<TopicSubscription {self.sub_id} {self.pattern!r}{group} buffered={buffered}>"


class Route(Value, frozen=True):
    """Where messages published to one topic go, as of the last change."""

    subscriptions: tuple[TopicSubscription, ...]
    groups: tuple[tuple[Group, tuple[TopicSubscription, ...]], ...]
    queues: tuple[QueueTarget, ...]

    @property
    def is_empty(self) -> bool:
        return not (self.subscriptions or self.groups or self.queues)


_NO_ROUTE: Final = Route((), (), ())

_TrieValue = TopicSubscription | QueueTarget


class Topics(Journaled[BindingJournal]):
    """The topic model of one namespace."""

    def __init__(self, namespace: Namespace) -> None:
        self._namespace = namespace
        self._limits = namespace.broker.config.limits
        # The route cache below replaces the trie's own match cache.
        self._trie: SubscriptionTrie[_TrieValue] = SubscriptionTrie(cache_size=0)
        self._routes: dict[str, Route] = {}
        self._groups: dict[str, Group] = {}
        self._by_peer: dict[Peer, dict[TopicSubscription, None]] = {}
        #: Bytes buffered per connection, shared by its subscriptions.
        self._buffers: dict[Peer, ConnectionBuffers] = {}
        self._bindings: dict[str, QueueTarget] = {}
        #: How many (queue, pattern) pairs ``_bindings`` holds.
        self._binding_total = 0
        #: Counts of bindings front ends keep outside the trie (AMQP direct,
        #: fanout and headers exchanges): ``max_bindings_per_namespace`` covers them too.
        self.other_bindings: list[Callable[[], int]] = []
        self._subscription_count = 0
        self.stats = TopicStats()
        #: The namespace's queues, where bound copies go; they tell us of deletions.
        self._queues: Queues = namespace.queues
        self._queues.on_delete.append(self._queue_deleted)
        self._journal = self._open_journal()

    def _open_journal(self) -> BindingJournal | None:
        """Reopen the durable bindings (for queues that still exist and are durable)."""
        broker = self._namespace.broker
        storage = broker.storage
        if storage is None:
            return None
        namespace = self._namespace.name

        def open_store() -> LogStore:
            return storage.open(
                namespace,
                binding_journal.KIND,
                binding_journal.NAME,
                segment_bytes=binding_journal.SEGMENT_BYTES,
            )

        exists = binding_journal.NAME in storage.existing(namespace, binding_journal.KIND)
        journal = BindingJournal(open_store, broker.durability.written, exists=exists)
        for queue, pattern in list(journal.bindings):
            target = self._queues.find(queue)
            if target is not None and target.durable:
                self._bind(queue, pattern, split_pattern(pattern))
            else:  # its queue was deleted without the record of it
                journal.forget_unwritten(queue, pattern)
        return journal

    def _is_durable(self, queue: str) -> bool:
        target = self._queues.find(queue)
        return self._journal is not None and target is not None and target.durable

    # ------------------------------------------------------------ publish

    def publish(
        self,
        topic: str,
        messages: Sequence[PublishedMessage],
        now: float,
        ttl: float | None = None,
        priority: int | None = None,
        no_room: list[NoRoom] | None = None,
    ) -> PublishResult:
        """Route a batch of messages published to ``topic``; returns the totals.

        Each message has ``body`` and ``headers``, or is a bare body (no headers).

        ``ttl`` (seconds) bounds how long the copies wait in bound queues,
        ``priority`` ranks them in queues with priorities (see ``Queue.put``).
        Everything is checked before anything is delivered: an invalid topic,
        a batch over ``max_batch`` or a body over ``max_message_bytes`` raises
        and nothing is published.

        A bound queue the full disk refuses fails the publish (StorageFull,
        its subscribers have seen nothing; queues before it in the route
        keep their copies), unless ``no_room`` is a list: the queue is
        added to it (a :class:`NoRoom`) and the publish goes on.
        """
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)  # validates the topic name
        count = len(messages)
        if count > self._limits.max_batch:
            raise BadRequest(
                f"a publish holds at most {self._limits.max_batch} messages, got {count}"
            )
        max_bytes = self._limits.max_message_bytes
        max_item = self._limits.max_item_bytes
        stats = self.stats
        if route is _NO_ROUTE or not count:
            _check_sizes(topic, messages, max_bytes, max_item)
            stats.published += count
            stats.unrouted += count
            return PublishResult(0, 0)
        base = MESSAGE_OVERHEAD + utf8_length(topic)
        batch, size = _messages(topic, messages, base)
        if size - count * base > max_bytes or (max_item is not None and size > max_item):
            # Only then can one message be over a limit: the common batch
            # skips a second pass over its messages.
            _check_sizes(topic, messages, max_bytes, max_item)
        # Queues first: a storage error there fails the publish before any
        # subscriber has seen it.
        enqueued = refused = 0
        if route.queues:
            enqueued, refused = self._enqueue(route.queues, batch, now, ttl, priority, no_room)
        stats.published += count
        copies = 0
        for subscription in route.subscriptions:
            subscription.push(batch, size)
        copies += count * len(route.subscriptions)
        for group, members in route.groups:
            _share(group, members, batch, size)
        copies += count * len(route.groups)
        stats.routed += copies
        if not copies and not enqueued:
            stats.unrouted += count
        return PublishResult(copies, enqueued, refused)

    def _route(self, topic: str) -> Route:
        """Match ``topic`` in the trie and cache the resulting route."""
        words = split_topic(topic)
        subscriptions: list[TopicSubscription] = []
        groups: dict[Group, list[TopicSubscription]] = {}
        queues: list[QueueTarget] = []
        for value in self._trie.match(words):
            if isinstance(value, QueueTarget):
                queues.append(value)
            elif value.group is None:
                subscriptions.append(value)
            else:
                groups.setdefault(value.group, []).append(value)
        if subscriptions or groups or queues:
            route = Route(
                tuple(subscriptions),
                tuple((group, tuple(members)) for group, members in groups.items()),
                tuple(queues),
            )
        else:
            route = _NO_ROUTE
        if len(self._routes) >= ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _enqueue(
        self,
        targets: Sequence[QueueTarget],
        batch: list[TopicMessage],
        now: float,
        ttl: float | None = None,
        priority: int | None = None,
        no_room: list[NoRoom] | None = None,
    ) -> tuple[int, int]:
        """Put copies of ``batch`` into each bound queue: (copies stored, copies refused
        by full queues).

        Storage errors propagate (the publish fails, see the module docstring),
        but for a full disk's when ``no_room`` collects them (see ``publish``).
        """
        queues = self._queues
        enqueued = refused = 0
        # A queue keeps no topic of its own, so each copy carries the topic it
        # was published to in a header (RabbitMQ keeps the routing key likewise).
        copies = [
            _QueueCopy(
                m.body,
                {**m.headers, TOPIC_HEADER: m.topic} if m.headers else {TOPIC_HEADER: m.topic},
            )
            for m in batch
        ]
        for target in targets:
            queue = queues.find(target.name)
            if queue is None:  # gone without telling us: its bindings go too
                self.drop_queue_bindings(target.name)
                continue
            try:
                enqueued += queue.put(copies, now, ttl=ttl, priority=priority)
            except Overflow:
                refused += len(copies)  # full with reject_publish: that queue counted it
                continue
            except StorageFull as exc:
                if no_room is None:
                    raise
                no_room.append(NoRoom(target.name, copies, exc))
                continue
            except TooLarge:
                # With its x-topic header (and the x-death headers its dead
                # letters would get) a copy could not be fetched from that
                # queue: it takes none, the others go on.
                continue
        self.stats.enqueued += enqueued
        return enqueued, refused

    def match(self, topic: str) -> Route:
        """Where a message published to ``topic`` would go now (tests, admin)."""
        return self._routes.get(topic) or self._route(topic)

    # ---------------------------------------------------------- subscribe

    def subscribe(
        self,
        peer: Peer,
        sub_id: int,
        pattern: str,
        *,
        group: str | None = None,
        buffer: int = 10_000,
        on_overflow: OverflowPolicy = "drop_oldest",
        buffer_bytes: int | None = None,
    ) -> TopicSubscription:
        """Start a subscription for ``peer``; the protocol layer chose ``sub_id``.

        Raises InvalidName for a bad pattern or group name and BadRequest for
        a buffer size or overflow policy out of range; nothing changes then.
        ``buffer_bytes`` None is ``DEFAULT_BUFFER_BYTES``, or the connection's
        limit if that is lower.
        """
        words = split_pattern(pattern)
        if group is not None:
            check_name("group", group)
        limit = self._limits.max_subscription_buffer
        if type(buffer) is not int or not 1 <= buffer <= limit:
            raise BadRequest(f"buffer must be an integer from 1 to {limit}, got {buffer!r}")
        if on_overflow not in OVERFLOW_POLICIES:
            raise BadRequest(
                f"on_overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {on_overflow!r}"
            )
        bytes_limit = self._limits.max_topic_buffer_bytes_per_connection
        if buffer_bytes is None:
            buffer_bytes = min(DEFAULT_BUFFER_BYTES, bytes_limit)
        elif type(buffer_bytes) is not int or not 1 <= buffer_bytes <= bytes_limit:
            raise BadRequest(
                f"buffer_bytes must be an integer from 1 to {bytes_limit}, got {buffer_bytes!r}"
            )
        group_state: Group | None = None
        if group is not None:
            group_state = self._groups.get(group)
            if group_state is None:
                group_state = self._groups[group] = Group(group)
        connection = self._buffers.get(peer)
        if connection is None:
            connection = self._buffers[peer] = ConnectionBuffers(bytes_limit)
        subscription = TopicSubscription(
            self,
            peer,
            sub_id,
            pattern,
            words,
            group_state,
            buffer,
            on_overflow,
            buffer_bytes,
            connection,
        )
        self._trie.insert(words, subscription)
        if group_state is not None:
            group_state.members[subscription] = None
        self._by_peer.setdefault(peer, {})[subscription] = None
        self._subscription_count += 1
        self._routes.clear()
        return subscription

    def unsubscribe(self, subscription: TopicSubscription) -> bool:
        """Remove a subscription (idempotent); its buffered messages are discarded."""
        if subscription.closed:
            return False
        subscription.closed = True
        subscription.clear()
        self._trie.remove(subscription.words, subscription)
        group = subscription.group
        if group is not None:
            group.members.pop(subscription, None)
            if not group.members and self._groups.get(group.name) is group:
                del self._groups[group.name]
        held = self._by_peer.get(subscription.peer)
        if held is not None:
            held.pop(subscription, None)
            if not held:
                del self._by_peer[subscription.peer]
                self._buffers.pop(subscription.peer, None)
        self._subscription_count -= 1
        self._routes.clear()
        return True

    def kick_slow(self, subscription: TopicSubscription) -> None:
        """on_overflow=disconnect: remove the subscription and close its connection."""
        reason = subscription.overflow_reason()
        self.unsubscribe(subscription)
        self.stats.slow_consumers_kicked += 1
        subscription.peer.kick(
            SlowConsumer(
                f"subscription {subscription.sub_id} to {subscription.pattern!r} fell "
                f"{reason} behind (on_overflow=disconnect)",
                sub=subscription.sub_id,
            )
        )

    # ------------------------------------------------------------ bindings

    def bind(self, queue: str, pattern: str) -> bool:
        """Copy messages matching ``pattern`` into ``queue``; False if already bound.

        Raises InvalidName for bad names and NotFound if the queue does not exist.
        """
        check_name("queue", queue)
        words = split_pattern(pattern)
        if queue not in self._queues:
            raise NotFound(f"queue {queue!r} does not exist", queue=queue)
        existing = self._bindings.get(queue)
        if existing is not None and pattern in existing.patterns:
            if self._journal is not None and (queue, pattern) in self._journal.bindings:
                self._journal.report_unsynced()  # bound only once it is on disk
            return False
        self.check_binding_room(f"cannot bind queue {queue!r} to {pattern!r}")
        if self._journal is not None and self._is_durable(queue):
            # On disk first: a failed write leaves the binding unmade.
            self._journal.record_bind(queue, pattern, self._namespace.broker.clock.last_ms)
        self._bind(queue, pattern, words)
        return True

    def check_binding_room(self, action: str) -> None:
        """LimitExceeded when the namespace holds ``max_bindings_per_namespace``
        bindings (this trie's and the front ends' ``other_bindings``).

        ``action`` starts the message ("cannot bind queue 'q' to 'a.#'").
        Checked for new bindings only; recovery restores every one it finds.
        """
        limit = self._limits.max_bindings_per_namespace
        held = self._binding_total
        if held < limit:
            held += sum(count() for count in self.other_bindings)
        if held >= limit:
            where = f"in namespace {self._namespace.name!r}"
            raise LimitExceeded.reached(action, "binding", where, limit)

    def _bind(self, queue: str, pattern: str, words: tuple[str, ...]) -> None:
        target = self._bindings.get(queue)
        if target is None:
            target = self._bindings[queue] = QueueTarget(queue)
        if pattern not in target.patterns:
            self._binding_total += 1
        target.patterns[pattern] = words
        self._trie.insert(words, target)
        self._routes.clear()

    def unbind(self, queue: str, pattern: str) -> bool:
        """Remove one binding; False if it did not exist (not an error, like RabbitMQ)."""
        check_name("queue", queue)
        split_pattern(pattern)
        target = self._bindings.get(queue)
        if target is None or pattern not in target.patterns:
            return False
        if self._journal is not None and (queue, pattern) in self._journal.bindings:
            self._journal.record_unbind(queue, pattern, self._namespace.broker.clock.last_ms)
        words = target.patterns.pop(pattern)
        self._binding_total -= 1
        self._trie.remove(words, target)
        if not target.patterns:
            del self._bindings[queue]
        self._routes.clear()
        return True

    def _queue_deleted(self, queue: str) -> None:
        self.drop_queue_bindings(queue)

    def drop_queue_bindings(self, queue: str) -> int:
        """The queue was deleted: remove all its bindings; returns how many."""
        target = self._bindings.pop(queue, None)
        if target is None:
            return 0
        journal = self._journal
        for pattern, words in target.patterns.items():
            self._trie.remove(words, target)
            if journal is not None and (queue, pattern) in journal.bindings:
                try:
                    journal.record_unbind(queue, pattern, self._namespace.broker.clock.last_ms)
                except (StorageFull, StorageError) as exc:
                    # The queue is gone whatever the disk says: its deletion
                    # must not fail halfway, nor its binding come back later.
                    log.warning(
                        "queue %r deleted, its binding %r not journaled: %s",
                        queue,
                        pattern,
                        exc.message,
                    )
                    journal.forget_unwritten(queue, pattern)
        count = len(target.patterns)
        self._binding_total -= count
        target.patterns.clear()
        self._routes.clear()
        return count

    def bindings(self, queue: str | None = None) -> list[tuple[str, str]]:
        """(queue, pattern) pairs, for one queue or all, in binding order."""
        if queue is None:
            targets = list(self._bindings.values())
        else:
            target = self._bindings.get(queue)
            targets = [] if target is None else [target]
        return [(target.name, pattern) for target in targets for pattern in target.patterns]

    # ---------------------------------------------------------- inspection

    @property
    def subscription_count(self) -> int:
        return self._subscription_count

    @property
    def group_count(self) -> int:
        return len(self._groups)

    @property
    def binding_count(self) -> int:
        return self._binding_total

    @property
    def trie_nodes(self) -> int:
        return self._trie.node_count

    def subscriptions(self) -> Iterator[TopicSubscription]:
        """Every live subscription, in subscription order."""
        for held in list(self._by_peer.values()):
            yield from held

    # ---------------------------------------------------- Model protocol

    def disconnect(self, peer: Peer, now: float) -> None:
        for subscription in list(self._by_peer.get(peer, ())):
            self.unsubscribe(subscription)

    # ``sync`` and ``close`` (Journaled): the bindings of durable queues are
    # the only topic state on disk.

    def destroy(self) -> None:
        """The namespace is dropped: forget every subscription and binding."""
        for held in list(self._by_peer.values()):
            for subscription in list(held):
                self.unsubscribe(subscription)
        for queue in list(self._bindings):
            self.drop_queue_bindings(queue)
        super().destroy()


_new_message = object.__new__


def _messages(
    topic: str, messages: Sequence[PublishedMessage], base: int
) -> tuple[list[TopicMessage], int]:
    """The shared :class:`TopicMessage` of each published message, and their total size.

    Fan-out's hot path: a bare body (the common message, without headers)
    becomes its message by plain slot stores, without a call to ``__init__``.
    """
    batch: list[TopicMessage] = []
    add = batch.append
    size = 0
    for item in messages:
        if type(item) is bytes:
            message = _new_message(TopicMessage)
            message.topic = topic
            message.body = item
            message.headers = None
            message.size = length = base + len(item)
            message.wire = None
            message.bare = None
        else:
            assert not isinstance(item, bytes)
            message = TopicMessage(topic, item.body, item.headers, base)
            length = message.size
        size += length
        add(message)
    return batch, size


def _check_sizes(
    topic: str, messages: Sequence[PublishedMessage], max_bytes: int, max_item: int | None
) -> None:
    """Raise TooLarge for the first message whose body is over ``max_bytes``
    or that would not fit a ``msg`` push (``max_item``)."""
    for index, message in enumerate(messages):
        body = message if type(message) is bytes else message.body  # type: ignore[union-attr]
        if len(body) > max_bytes:
            raise TooLarge(
                f"message {index} has a body of {len(body)} bytes; the limit is {max_bytes}",
                limit=max_bytes,
                index=index,
            )
        if max_item is not None and message_size(topic, message) > max_item:
            raise TooLarge(
                f"message {index} would take {message_size(topic, message)} bytes in a "
                f"'msg' push with its topic and headers; one frame holds {max_item}",
                limit=max_item,
                index=index,
            )


def _share(
    group: Group, members: tuple[TopicSubscription, ...], batch: list[TopicMessage], size: int
) -> None:
    """Hand each message of ``batch`` (``size`` bytes) to one member of ``group``, round robin.

    Member ``(start + j) % k`` gets messages ``j, j + k, j + 2k, ...``: one
    slice per member, so each member still sees its share in publish order.
    """
    k = len(members)
    start = group.position % k
    group.position = start + len(batch)
    if k == 1:
        members[0].push(batch, size)
        return
    for j in range(min(k, len(batch))):
        share = batch[j::k]
        members[(start + j) % k].push(share, sum([m.size for m in share]))
