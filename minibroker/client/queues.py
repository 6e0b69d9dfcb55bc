"""Queues for every client: declare, put, fetch, ack/nack, and the consumer helper.

Producing and consuming by hand::

    await mb.declare_queue("jobs", visibility_timeout=30, max_deliveries=5,
                           dead_letter_queue="jobs.dead")
    await mb.put("jobs", b"body", headers={"k": "v"})         # returns once confirmed
    await mb.put_many("jobs", [b"a", b"b", (b"c", {"k": "v"})])  # one frame, one confirm

    batch = await mb.fetch("jobs", max_messages=10, wait=1.0)  # list[Delivery]
    for d in batch:
        ...                                                    # d.body, d.headers, d.delivery_count
    await mb.ack(batch)                                        # one ack frame per queue
    await mb.nack(batch[0], requeue=True, delay=5)             # or d.ack() / d.nack() one by one

The fast path, a consumer that keeps fetches pipelined and acks in batches::

    async with mb.consume("jobs", prefetch=1000) as deliveries:
        async for d in deliveries:
            handle(d.body)
            await d.ack()               # recorded; sent in batches (see below)

The blocking client has the same names without ``await`` (``with
mb.consume(...) as c: for d in c: d.ack()``).

How ``consume`` works, and what it promises
-------------------------------------------

``consume`` fetches ``prefetch / 2`` messages at a time with long-polling
fetches (``wait`` seconds each). While fetches come back full (a backlog),
it keeps two in flight on the client's connection, so the next batch is on
its way, or already in, while the current one is processed; while the queue
keeps up with it, one is enough. It runs no background task: the fetches are
plain pipelined requests (``_begin`` on the transport) that the iterator
collects in order, and it yields to the event loop once per batch, not per
message. There is nothing to leak and nothing to cancel beyond the
``async with`` block.

``d.ack()`` inside the loop only records the delivery id. Recorded acks leave
as one ``ack`` frame every ``ack_every`` acks, before each new fetch (so a
loop that acks every delivery before taking the next one never holds more
than ``prefetch`` unacked messages on the broker; deliveries it keeps
unacked longer come on top), and when the block is left; leaving it
normally also waits until the broker has confirmed every ack. An ack the broker refuses
because the delivery is stale (its visibility timeout ran out and the
message was redelivered) is dropped from the batch and counted in
``stale_acks``; the rest of the batch is acked.

This is **at-least-once**: if the consumer process dies, the acks it recorded
but had not sent yet are lost, and those messages are delivered again (to
someone) after their visibility timeout, or as soon as the broker sees the
connection close. Make processing idempotent. Likewise a delivery that was
fetched but not handed out when the block ends is given back at once
(``nack``: its delivery count went up all the same, which matters with
``max_deliveries``). The protocol cannot withdraw a parked long poll, so a
fetch still waiting when the block ends stays parked on the broker for up
to ``wait`` seconds; whatever it receives meanwhile is nacked back by the
client as soon as it arrives (its count goes up by one too).

Iterating ``mb.consume(...)`` without ``async with`` works too (the design
sketch's ``async for d in mb.consume(q)``), but leaving such a loop with
``break`` cannot be noticed: up to ``ack_every - 1`` recorded acks stay
unsent and the prefetched deliveries stay held until their visibility
timeout or the connection closes. Use the ``async with`` form, or call
``aclose()``, whenever the connection lives on after the loop.

Keep ``prefetch`` x (time to process one message) well under the visibility
timeout: prefetched messages are in flight from the moment they are fetched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from minibroker.client.protocol import Call
from minibroker.core.errors import BrokerError, UnknownDelivery

if TYPE_CHECKING:
    # api.py inherits these mixins, so importing it at run time would be circular.
    from minibroker.client.api import AsyncTransport, SyncTransport

    _AsyncBase = AsyncTransport
    _SyncBase = SyncTransport
else:
    _AsyncBase = object
    _SyncBase = object

__all__ = [
    "AsyncConsumer",
    "AsyncQueueMethods",
    "Delivery",
    "MessageItem",
    "OverflowPolicy",
    "QueueContents",
    "QueueInfo",
    "QueueStats",
    "QueuedMessage",
    "SyncConsumer",
    "SyncDelivery",
    "SyncQueueMethods",
]

OverflowPolicy = Literal["reject_publish", "drop_head"]

#: Seconds a fetched message stays invisible to others unless the queue says otherwise.
DEFAULT_VISIBILITY_TIMEOUT = 30.0
#: Messages a consumer holds at most: in its buffer plus in its fetches.
DEFAULT_PREFETCH = 100
#: Recorded acks that make the consumer send an ``ack`` frame.
DEFAULT_ACK_EVERY = 100
#: Seconds each consumer fetch long-polls before the broker answers "nothing".
DEFAULT_CONSUME_WAIT = 1.0
#: Fetches a consumer keeps in flight, each for ``prefetch / FETCHES_IN_FLIGHT`` messages.
FETCHES_IN_FLIGHT = 2

#: What ``put_many`` accepts per message: a body, a ``(body, headers)`` pair, a
#: ``{"body", "headers"?}`` map, or any object with ``body`` (and optional
#: ``headers``), such as a Delivery from another queue or a TopicMessage.
MessageItem = bytes | tuple[Any, ...] | Mapping[str, Any] | Any

D = TypeVar("D", bound="_DeliveryBase")


# ------------------------------------------------------------------ models


@dataclass(frozen=True, slots=True)
class QueueStats:
    """``queue_stats``: a queue's depth now and its counters since the broker started.

    ``published == acked + dead_lettered + dropped + purged + ready +
    in_flight + delayed``; see docs/queues.md for each field.
    """

    queue: str
    durable: bool
    ready: int
    in_flight: int
    delayed: int
    consumers: int
    waiting_fetches: int
    published: int
    delivered: int
    redelivered: int
    acked: int
    requeued: int
    expired: int
    dead_lettered: int
    dropped: int
    purged: int
    rejected_publishes: int
    journal_errors: int
    #: The options the queue was declared with.
    options: dict[str, Any]


_STATS_FIELDS = tuple(f.name for f in fields(QueueStats))


def _parse_stats(result: dict[str, Any]) -> QueueStats:
    return QueueStats(**{name: result[name] for name in _STATS_FIELDS})


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One row of ``list_queues``."""

    queue: str
    ready: int
    in_flight: int
    consumers: int
    durable: bool


def _parse_list(result: list[dict[str, Any]]) -> list[QueueInfo]:
    return [
        QueueInfo(r["queue"], r["ready"], r["in_flight"], r["consumers"], r["durable"])
        for r in result
    ]


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message as ``inspect_queue`` shows it (a test hook; nothing changes)."""

    body: bytes
    headers: dict[str, str] | None
    delivery_count: int
    #: Milliseconds since the Unix epoch, of the original put.
    published_at: int
    #: In flight only: its delivery id, the holder's connection id, and the
    #: seconds until its visibility timeout.
    delivery_id: int | None = None
    connection: int | None = None
    visible_in: float | None = None
    #: Delayed only: seconds until it is ready again.
    ready_in: float | None = None


@dataclass(frozen=True, slots=True)
class QueueContents:
    """``inspect_queue``: the first ``limit`` messages in each place."""

    ready: list[QueuedMessage]
    in_flight: list[QueuedMessage]
    delayed: list[QueuedMessage]


def _queued(view: dict[str, Any]) -> QueuedMessage:
    return QueuedMessage(
        view["body"],
        view.get("headers"),
        view["delivery_count"],
        view["published_at"],
        view.get("delivery_id"),
        view.get("connection"),
        view.get("visible_in"),
        view.get("ready_in"),
    )


def _parse_contents(result: dict[str, Any]) -> QueueContents:
    return QueueContents(
        [_queued(v) for v in result["ready"]],
        [_queued(v) for v in result["in_flight"]],
        [_queued(v) for v in result["delayed"]],
    )


class _DeliveryBase:
    """A fetched message, held by this connection until it is acked or nacked.

    ``delivery_count`` is 1 on the first delivery; ``published_at`` is the
    original put's time in milliseconds since the Unix epoch. Acks and nacks
    go through the client (or consumer) that fetched it: only that
    connection may settle it.
    """

    # A plain slotted class: a consumer builds one per message, and this
    # __init__ is the cheapest way to do it (no frozen-dataclass setattr).
    __slots__ = (
        "_settler",
        "body",
        "delivery_count",
        "delivery_id",
        "headers",
        "published_at",
        "queue",
    )

    def __init__(self, queue: str, wire: dict[str, Any], settler: Any) -> None:
        self.queue: str = queue
        self.delivery_id: int = wire["delivery_id"]
        self.body: bytes = wire["body"]
        self.headers: dict[str, str] | None = wire.get("headers")
        self.delivery_count: int = wire["delivery_count"]
        self.published_at: int = wire["published_at"]
        self._settler = settler

    @property
    def redelivered(self) -> bool:
        """True if this message was delivered before (and came back)."""
        return self.delivery_count > 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(queue={self.queue!r}, delivery_id={self.delivery_id}, "
            f"delivery_count={self.delivery_count}, body={self.body[:40]!r}"
            f"{'...' if len(self.body) > 40 else ''}, headers={self.headers!r})"
        )


class Delivery(_DeliveryBase):
    """A delivery for the Trio, asyncio and in-process clients: ``await d.ack()``."""

    __slots__ = ()

    async def ack(self) -> None:
        """Acknowledge: the message leaves the queue.

        Fetched with ``fetch``: sent at once, raises ``UnknownDelivery`` if the
        delivery is no longer held (its visibility timeout ran out). From a
        consumer: recorded and sent in a batch (see the module docstring).
        """
        settler = self._settler
        if settler.batched:
            settler.record_ack(self.delivery_id)
        else:
            await settler.settle(ack_call(self.queue, [self.delivery_id]))

    async def nack(self, requeue: bool = True, delay: float = 0.0) -> None:
        """Give the message back: to the front of the queue (after ``delay``
        seconds), or to the dead-letter queue with ``requeue=False``."""
        call = nack_call(self.queue, [self.delivery_id], requeue, delay)
        settler = self._settler
        if settler.batched:
            settler.record_settle(call)
        else:
            await settler.settle(call)


class SyncDelivery(_DeliveryBase):
    """A delivery for the blocking client: ``d.ack()`` without await."""

    __slots__ = ()

    def ack(self) -> None:
        """Acknowledge (see ``Delivery.ack``)."""
        settler = self._settler
        if settler.batched:
            settler.record_ack(self.delivery_id)
        else:
            settler.settle(ack_call(self.queue, [self.delivery_id]))

    def nack(self, requeue: bool = True, delay: float = 0.0) -> None:
        """Give the message back (see ``Delivery.nack``)."""
        call = nack_call(self.queue, [self.delivery_id], requeue, delay)
        settler = self._settler
        if settler.batched:
            settler.record_settle(call)
        else:
            settler.settle(call)


class _AsyncDirect:
    """Settles deliveries of a plain ``fetch``: one awaited call per ack/nack."""

    __slots__ = ("_client",)
    batched = False

    def __init__(self, client: Any) -> None:
        self._client = client

    async def settle(self, call: Call[int]) -> None:
        await self._client._call(call)


class _SyncDirect:
    __slots__ = ("_client",)
    batched = False

    def __init__(self, client: Any) -> None:
        self._client = client

    def settle(self, call: Call[int]) -> None:
        self._client._call(call)


# ------------------------------------------------------------------ calls


def _count(result: dict[str, Any]) -> int:
    return int(result["count"])


def declare_queue_call(
    name: str,
    max_length: int | None,
    overflow: OverflowPolicy,
    message_ttl: float | None,
    visibility_timeout: float,
    max_deliveries: int | None,
    dead_letter_queue: str | None,
    durable: bool,
) -> Call[bool]:
    fields: dict[str, Any] = {
        "queue": name,
        "overflow": overflow,
        "visibility_timeout": visibility_timeout,
        "durable": durable,
    }
    optional = {
        "max_length": max_length,
        "message_ttl": message_ttl,
        "max_deliveries": max_deliveries,
        "dead_letter_queue": dead_letter_queue,
    }
    fields.update((k, v) for k, v in optional.items() if v is not None)
    return Call("queue.declare", fields, lambda r: bool(r["created"]))


def delete_queue_call(name: str) -> Call[int]:
    return Call("queue.delete", {"queue": name}, lambda r: int(r["messages"]))


def purge_queue_call(name: str) -> Call[int]:
    return Call("queue.purge", {"queue": name}, lambda r: int(r["purged"]))


def list_queues_call() -> Call[list[QueueInfo]]:
    return Call("queue.list", {}, _parse_list)


def queue_stats_call(name: str) -> Call[QueueStats]:
    return Call("queue.stats", {"queue": name}, _parse_stats)


def inspect_queue_call(name: str, limit: int) -> Call[QueueContents]:
    return Call("queue.inspect", {"queue": name, "limit": limit}, _parse_contents)


def _message_map(body: Any, headers: Mapping[str, str] | None) -> dict[str, Any]:
    if type(body) is not bytes:
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        elif isinstance(body, str):
            raise TypeError("message bodies are bytes; encode text first (e.g. s.encode())")
    return {"body": body, "headers": dict(headers)} if headers else {"body": body}


def _encode_message(item: MessageItem) -> dict[str, Any]:
    if type(item) is bytes:
        return {"body": item}
    if isinstance(item, tuple):
        body, headers = (*item, None)[:2]
        return _message_map(body, headers)
    if isinstance(item, Mapping):
        return _message_map(item["body"], item.get("headers"))
    if isinstance(item, bytearray | memoryview | str):
        return _message_map(item, None)
    body = getattr(item, "body")  # noqa: B009 (any object with a body attribute)
    return _message_map(body, getattr(item, "headers", None))


def put_call(queue: str, body: bytes, headers: Mapping[str, str] | None) -> Call[None]:
    return Call("put", {"queue": queue, "messages": [_message_map(body, headers)]}, _none)


def _none(result: Any) -> None:
    return None


def put_many_call(queue: str, messages: Iterable[MessageItem]) -> Call[int]:
    if isinstance(messages, bytes | str | bytearray):
        raise TypeError("put_many takes an iterable of messages, not one body")
    return Call("put", {"queue": queue, "messages": [_encode_message(m) for m in messages]}, _count)


def fetch_call(
    queue: str,
    max_messages: int,
    wait: float,
    visibility_timeout: float | None,
    kind: type[D],
    settler: Any,
) -> Call[list[D]]:
    fields: dict[str, Any] = {"queue": queue, "max_messages": max_messages}
    if wait:
        fields["wait"] = wait
    if visibility_timeout is not None:
        fields["visibility_timeout"] = visibility_timeout

    def parse(result: list[dict[str, Any]]) -> list[D]:
        return [kind(queue, m, settler) for m in result]

    return Call("fetch", fields, parse)


def ack_call(queue: str, delivery_ids: list[int]) -> Call[int]:
    return Call("ack", {"queue": queue, "deliveries": delivery_ids}, _count)


def nack_call(queue: str, delivery_ids: list[int], requeue: bool, delay: float) -> Call[int]:
    fields: dict[str, Any] = {"queue": queue, "deliveries": delivery_ids, "requeue": requeue}
    if delay:
        fields["delay"] = delay
    return Call("nack", fields, _count)


#: What ``ack``/``nack`` take: deliveries (one, or any iterable, grouped by
#: queue), or a queue name followed by delivery ids.
SettleTarget = _DeliveryBase | Iterable[_DeliveryBase] | str


def _by_queue(target: SettleTarget, delivery_ids: Iterable[int] | None) -> dict[str, list[int]]:
    """Delivery ids to settle, grouped by queue in first-seen order."""
    if isinstance(target, str):
        if delivery_ids is None:
            raise TypeError("ack/nack(queue, delivery_ids): the delivery ids are missing")
        return {target: list(delivery_ids)}
    if delivery_ids is not None:
        raise TypeError("pass either deliveries, or a queue name and delivery ids")
    deliveries = [target] if isinstance(target, _DeliveryBase) else target
    groups: dict[str, list[int]] = {}
    for d in deliveries:
        if not isinstance(d, _DeliveryBase):
            raise TypeError(f"expected deliveries, got {type(d).__name__}")
        ids = groups.get(d.queue)
        if ids is None:
            ids = groups[d.queue] = []
        ids.append(d.delivery_id)
    return groups


def _ack_calls(target: SettleTarget, delivery_ids: Iterable[int] | None) -> list[Call[int]]:
    return [ack_call(q, ids) for q, ids in _by_queue(target, delivery_ids).items()]


def _nack_calls(
    target: SettleTarget, delivery_ids: Iterable[int] | None, requeue: bool, delay: float
) -> list[Call[int]]:
    return [nack_call(q, ids, requeue, delay) for q, ids in _by_queue(target, delivery_ids).items()]


# ------------------------------------------------------------- consumers


def _post(client: Any, call: Call[Any]) -> None:
    """Send ``call`` without waiting for (or reading) its answer; safe on a reader."""
    post = getattr(client, "_post", None)
    if post is not None:
        post(call)
    else:
        client._begin(call).abandon()


class _ConsumerState:
    """A consumer's bookkeeping, shared by the async and blocking drivers; never waits.

    ``fetches`` are the pipelined fetch requests, oldest first (one
    connection answers them in order: fetches are served first come, first
    served). ``buffer`` holds fetched deliveries not handed out yet, ``acks``
    the recorded, unsent ack ids, ``settling`` the ack/nack requests sent and
    not yet confirmed.
    """

    batched = True

    def __init__(
        self,
        client: Any,
        queue: str,
        kind: type[_DeliveryBase],
        *,
        prefetch: int,
        wait: float,
        visibility_timeout: float | None,
        ack_every: int,
    ) -> None:
        if type(prefetch) is not int or prefetch < 1:
            raise ValueError(f"prefetch must be a positive integer, got {prefetch!r}")
        if type(ack_every) is not int or ack_every < 1:
            raise ValueError(f"ack_every must be a positive integer, got {ack_every!r}")
        self.client = client
        self.queue = queue
        self.max_depth = min(FETCHES_IN_FLIGHT, prefetch)
        self.per_fetch = -(-prefetch // self.max_depth)
        #: Fetches to keep in flight now: all of them while fetches come back
        #: full (a backlog: pipelining pays), one while the queue keeps up.
        self.depth = 1
        # One Call for every fetch: only the request id differs between them.
        self.fetch = fetch_call(queue, self.per_fetch, wait, visibility_timeout, kind, self)
        self.ack_every = ack_every
        self.fetches: deque[Any] = deque()
        self.buffer: deque[Any] = deque()
        self.acks: list[int] = []
        self.settling: list[tuple[Any, Call[int]]] = []
        self.closed = False
        #: Acks the broker confirmed.
        self.acked = 0
        #: Acks the broker refused because the delivery had been redelivered meanwhile.
        self.stale_acks = 0

    # ---------------------------------------------------- deliveries' side

    def record_ack(self, delivery_id: int) -> None:
        if self.closed:
            # Acked after the block ended: nobody will flush again, send it now.
            _post(self.client, ack_call(self.queue, [delivery_id]))
            return
        acks = self.acks
        acks.append(delivery_id)
        if len(acks) >= self.ack_every:
            self.flush()

    def record_settle(self, call: Call[int]) -> None:
        if self.closed:
            _post(self.client, call)
        else:
            self.settling.append((self.client._begin(call), call))

    # ------------------------------------------------------ drivers' side

    def top_up(self) -> None:
        """Begin fetches until ``depth`` are in flight."""
        fetches = self.fetches
        while len(fetches) < self.depth:
            fetches.append(self.client._begin(self.fetch))

    def collect(self) -> list[Any]:
        """Take the oldest fetch's deliveries (it is answered) and adapt the depth.

        Only a fetch that came back full says there is a backlog worth a
        second fetch in flight; with one, a consumer that stops on an idle
        queue leaves one long poll behind, not two (see ``start_closing``).
        """
        deliveries: list[Any] = self.fetches.popleft().outcome()
        self.depth = self.max_depth if len(deliveries) >= self.per_fetch else 1
        return deliveries

    def flush(self) -> None:
        """Send the recorded acks as one frame (not waiting for the answer)."""
        if self.acks:
            call = ack_call(self.queue, self.acks)
            self.acks = []
            self.settling.append((self.client._begin(call), call))

    def reap(self) -> None:
        """Collect answered acks and nacks; resend a batch without its stale ids.

        Acks and nacks are all or nothing on the broker, so one stale id
        (redelivered after its visibility timeout) fails its whole batch: the
        error lists the stale ids, and the rest are sent again without them.
        Any other error (the queue was deleted, the connection dropped) is raised.
        """
        if not self.settling:
            return
        keep: list[tuple[Any, Call[int]]] = []
        for entry in self.settling:
            pending, call = entry
            if not pending.done:
                keep.append(entry)
                continue
            try:
                count = pending.outcome()
            except UnknownDelivery as exc:
                retry = self._without_stale(call, exc)
                if retry is not None:
                    keep.append((self.client._begin(retry), retry))
                continue
            if call.op == "ack":
                self.acked += count
        self.settling = keep

    def _without_stale(self, call: Call[int], error: UnknownDelivery) -> Call[int] | None:
        details: dict[str, Any] = error.details or {}
        stale = set(details.get("deliveries") or ())
        ids: list[int] = call.fields["deliveries"]
        rest = [i for i in ids if i not in stale]
        if len(rest) == len(ids):
            raise error  # no usable details: do not loop
        if call.op == "ack":
            self.stale_acks += len(ids) - len(rest)
        if not rest:
            return None
        return Call(call.op, {**call.fields, "deliveries": rest}, call.parse)

    def start_closing(self) -> None:
        """Give back what was fetched and not handed out, then send the last acks.

        Fetches still in flight are abandoned: whatever they bring in later
        is nacked straight from the transport's reader.
        """
        self.closed = True
        unhanded = [d.delivery_id for d in self.buffer]
        self.buffer.clear()
        queue, client = self.queue, self.client

        def give_back(result: list[dict[str, Any]]) -> None:
            if result:
                ids = [m["delivery_id"] for m in result]
                _post(client, nack_call(queue, ids, True, 0.0))

        for pending in self.fetches:
            if pending.done:
                with suppress(BrokerError):  # a failed fetch holds nothing
                    unhanded.extend(d.delivery_id for d in pending.outcome())
            else:
                pending.abandon(give_back)
        self.fetches.clear()
        if unhanded:
            call = nack_call(queue, unhanded, True, 0.0)
            self.settling.append((client._begin(call), call))
        self.flush()

    def abandon(self) -> None:
        """Leave without waiting (an exception, a cancellation): send everything,
        collect nothing."""
        if self.closed:
            return
        with suppress(BrokerError):  # the connection is gone: the broker requeues all
            self.start_closing()
        for pending, _ in self.settling:
            pending.abandon()
        self.settling = []

    @property
    def pending_acks(self) -> int:
        """Acks recorded and not yet sent."""
        return len(self.acks)


class AsyncConsumer:
    """``mb.consume(queue, ...)``: ``async with`` it, ``async for`` its deliveries.

    See the module docstring for how fetches are pipelined and acks batched.
    Runs no task of its own; every wait happens inside ``__anext__`` and
    ``aclose``.
    """

    def __init__(self, state: _ConsumerState) -> None:
        self._state = state
        self._buffer = state.buffer

    @property
    def queue(self) -> str:
        return self._state.queue

    @property
    def acked(self) -> int:
        """Acks the broker has confirmed so far."""
        return self._state.acked

    @property
    def stale_acks(self) -> int:
        """Acks refused because the delivery had been redelivered meanwhile."""
        return self._state.stale_acks

    @property
    def pending_acks(self) -> int:
        """Acks recorded and not yet sent."""
        return self._state.pending_acks

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            self._state.abandon()

    def __aiter__(self) -> AsyncConsumer:
        return self

    async def __anext__(self) -> Delivery:
        buffer = self._buffer
        if buffer:
            delivery: Delivery = buffer.popleft()
            return delivery
        return await self._refill()

    async def _refill(self) -> Delivery:
        state = self._state
        while not state.closed:
            state.reap()
            # Acks first: a fetch is only sent once what was handed out is acked.
            state.flush()
            state.top_up()  # sent, with the acks, at the checkpoint below
            pending = state.fetches[0]
            await pending.wait()
            deliveries: list[Delivery] = state.collect()
            if deliveries:
                self._buffer.extend(deliveries)
                first: Delivery = self._buffer.popleft()
                return first
        raise StopAsyncIteration

    async def flush(self) -> None:
        """Send the recorded acks now and wait until the broker confirmed every ack."""
        state = self._state
        state.flush()
        await self._settle_all()

    async def _settle_all(self) -> None:
        state = self._state
        while state.settling:
            await state.settling[0][0].wait()
            state.reap()

    async def aclose(self) -> None:
        """Stop: give back unprocessed deliveries, send the last acks, wait for
        the broker to confirm them. Idempotent."""
        state = self._state
        if state.closed:
            return
        state.start_closing()
        try:
            await self._settle_all()
        except BaseException:
            state.settling = []
            raise


class SyncConsumer:
    """The blocking client's ``consume``: ``with`` it, ``for d in`` it, ``d.ack()``."""

    def __init__(self, state: _ConsumerState) -> None:
        self._state = state
        self._buffer = state.buffer

    @property
    def queue(self) -> str:
        return self._state.queue

    @property
    def acked(self) -> int:
        return self._state.acked

    @property
    def stale_acks(self) -> int:
        return self._state.stale_acks

    @property
    def pending_acks(self) -> int:
        return self._state.pending_acks

    def __enter__(self) -> SyncConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._state.abandon()

    def __iter__(self) -> Iterator[SyncDelivery]:
        return self

    def __next__(self) -> SyncDelivery:
        buffer = self._buffer
        if buffer:
            delivery: SyncDelivery = buffer.popleft()
            return delivery
        return self._refill()

    def _refill(self) -> SyncDelivery:
        state = self._state
        while not state.closed:
            state.reap()
            state.flush()
            state.top_up()
            pending = state.fetches[0]
            pending.wait()
            deliveries: list[SyncDelivery] = state.collect()
            if deliveries:
                self._buffer.extend(deliveries)
                first: SyncDelivery = self._buffer.popleft()
                return first
        raise StopIteration

    def flush(self) -> None:
        """Send the recorded acks now and block until the broker confirmed every ack."""
        self._state.flush()
        self._settle_all()

    def _settle_all(self) -> None:
        state = self._state
        while state.settling:
            state.settling[0][0].wait()
            state.reap()

    def close(self) -> None:
        """Stop (see ``AsyncConsumer.aclose``). Idempotent."""
        state = self._state
        if state.closed:
            return
        state.start_closing()
        try:
            self._settle_all()
        except BaseException:
            state.settling = []
            raise


# ----------------------------------------------------------------- mixins


class AsyncQueueMethods(_AsyncBase):
    """Queue methods of the Trio, asyncio and in-process clients."""

    async def declare_queue(
        self,
        name: str,
        *,
        max_length: int | None = None,
        overflow: OverflowPolicy = "reject_publish",
        message_ttl: float | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        max_deliveries: int | None = None,
        dead_letter_queue: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Create queue ``name``; True if created, False if it existed with the same options.

        Raises Conflict if it exists with other options (``details["options"]``
        holds them). See docs/queues.md for what each option means.
        """
        return await self._call(
            declare_queue_call(
                name,
                max_length,
                overflow,
                message_ttl,
                visibility_timeout,
                max_deliveries,
                dead_letter_queue,
                durable,
            )
        )

    async def delete_queue(self, name: str) -> int:
        """Delete the queue; returns how many messages it held (ready, in flight, delayed)."""
        return await self._call(delete_queue_call(name))

    async def purge_queue(self, name: str) -> int:
        """Remove the ready and delayed messages; returns how many. In-flight ones stay."""
        return await self._call(purge_queue_call(name))

    async def list_queues(self) -> list[QueueInfo]:
        """The queues of this namespace, sorted by name, with their depth."""
        return await self._call(list_queues_call())

    async def queue_stats(self, name: str) -> QueueStats:
        """Depth, counters and options of a queue."""
        return await self._call(queue_stats_call(name))

    async def inspect_queue(self, name: str, limit: int = 1000) -> QueueContents:
        """Look at up to ``limit`` ready, in-flight and delayed messages (a test hook)."""
        return await self._call(inspect_queue_call(name, limit))

    async def put(self, queue: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Put one message; returns once the broker confirmed it (stored per the
        fsync policy for a durable queue). Raises Overflow on a full queue."""
        await self._call(put_call(queue, body, headers))

    async def put_many(self, queue: str, messages: Iterable[MessageItem]) -> int:
        """Put a batch in one frame; returns how many once confirmed. All or nothing.

        Each item is a body, a ``(body, headers)`` pair, a ``{"body",
        "headers"}`` map or an object with ``body``/``headers``.
        """
        return await self._call(put_many_call(queue, messages))

    async def fetch(
        self,
        queue: str,
        max_messages: int = 1,
        wait: float = 0.0,
        visibility_timeout: float | None = None,
    ) -> list[Delivery]:
        """Take up to ``max_messages`` ready messages, oldest first.

        Answers at once with what is ready; with nothing ready and ``wait`` > 0,
        waits up to ``wait`` seconds for messages (an empty list if none came).
        The deliveries are held by this connection for ``visibility_timeout``
        seconds (the queue's by default): ack or nack them before that.
        """
        return await self._call(
            fetch_call(queue, max_messages, wait, visibility_timeout, Delivery, _AsyncDirect(self))
        )

    async def ack(self, deliveries: SettleTarget, delivery_ids: Iterable[int] | None = None) -> int:
        """Acknowledge deliveries: ``ack(batch)``, ``ack(delivery)`` or ``ack(queue, ids)``.

        One frame per queue, each all or nothing (``UnknownDelivery`` lists
        the ids no longer held and acks none of that frame). Returns the count.
        """
        total = 0
        for call in _ack_calls(deliveries, delivery_ids):
            total += await self._call(call)
        return total

    async def nack(
        self,
        deliveries: SettleTarget,
        delivery_ids: Iterable[int] | None = None,
        *,
        requeue: bool = True,
        delay: float = 0.0,
    ) -> int:
        """Give deliveries back: to the front of their queue (after ``delay``
        seconds), or to the dead-letter queue with ``requeue=False``. Same
        arguments and all-or-nothing rule as ``ack``."""
        total = 0
        for call in _nack_calls(deliveries, delivery_ids, requeue, delay):
            total += await self._call(call)
        return total

    def consume(
        self,
        queue: str,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        wait: float = DEFAULT_CONSUME_WAIT,
        visibility_timeout: float | None = None,
        ack_every: int = DEFAULT_ACK_EVERY,
    ) -> AsyncConsumer:
        """Consume ``queue``: ``async with mb.consume(q) as c: async for d in c``.

        Keeps two fetches of ``prefetch / 2`` messages in flight, each long
        polling ``wait`` seconds; ``await d.ack()`` records the ack and acks
        leave in batches of ``ack_every`` (see the module docstring for the
        at-least-once details).
        """
        return AsyncConsumer(
            _ConsumerState(
                self,
                queue,
                Delivery,
                prefetch=prefetch,
                wait=wait,
                visibility_timeout=visibility_timeout,
                ack_every=ack_every,
            )
        )


class SyncQueueMethods(_SyncBase):
    """Queue methods of the blocking client (same names and arguments, no ``await``)."""

    def declare_queue(
        self,
        name: str,
        *,
        max_length: int | None = None,
        overflow: OverflowPolicy = "reject_publish",
        message_ttl: float | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        max_deliveries: int | None = None,
        dead_letter_queue: str | None = None,
        durable: bool = False,
    ) -> bool:
        """Create queue ``name``; True if created, False if it existed alike."""
        return self._call(
            declare_queue_call(
                name,
                max_length,
                overflow,
                message_ttl,
                visibility_timeout,
                max_deliveries,
                dead_letter_queue,
                durable,
            )
        )

    def delete_queue(self, name: str) -> int:
        """Delete the queue; returns how many messages it held."""
        return self._call(delete_queue_call(name))

    def purge_queue(self, name: str) -> int:
        """Remove the ready and delayed messages; returns how many."""
        return self._call(purge_queue_call(name))

    def list_queues(self) -> list[QueueInfo]:
        """The queues of this namespace, sorted by name, with their depth."""
        return self._call(list_queues_call())

    def queue_stats(self, name: str) -> QueueStats:
        """Depth, counters and options of a queue."""
        return self._call(queue_stats_call(name))

    def inspect_queue(self, name: str, limit: int = 1000) -> QueueContents:
        """Look at up to ``limit`` ready, in-flight and delayed messages (a test hook)."""
        return self._call(inspect_queue_call(name, limit))

    def put(self, queue: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Put one message; returns once the broker confirmed it."""
        self._call(put_call(queue, body, headers))

    def put_many(self, queue: str, messages: Iterable[MessageItem]) -> int:
        """Put a batch in one frame; returns how many once confirmed. All or nothing."""
        return self._call(put_many_call(queue, messages))

    def fetch(
        self,
        queue: str,
        max_messages: int = 1,
        wait: float = 0.0,
        visibility_timeout: float | None = None,
    ) -> list[SyncDelivery]:
        """Take up to ``max_messages`` ready messages (see the async ``fetch``)."""
        return self._call(
            fetch_call(
                queue, max_messages, wait, visibility_timeout, SyncDelivery, _SyncDirect(self)
            )
        )

    def ack(self, deliveries: SettleTarget, delivery_ids: Iterable[int] | None = None) -> int:
        """Acknowledge deliveries (see the async ``ack``)."""
        return sum(self._call(call) for call in _ack_calls(deliveries, delivery_ids))

    def nack(
        self,
        deliveries: SettleTarget,
        delivery_ids: Iterable[int] | None = None,
        *,
        requeue: bool = True,
        delay: float = 0.0,
    ) -> int:
        """Give deliveries back (see the async ``nack``)."""
        return sum(
            self._call(call) for call in _nack_calls(deliveries, delivery_ids, requeue, delay)
        )

    def consume(
        self,
        queue: str,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        wait: float = DEFAULT_CONSUME_WAIT,
        visibility_timeout: float | None = None,
        ack_every: int = DEFAULT_ACK_EVERY,
    ) -> SyncConsumer:
        """Consume ``queue``: ``with mb.consume(q) as c: for d in c: ...; d.ack()``."""
        return SyncConsumer(
            _ConsumerState(
                self,
                queue,
                SyncDelivery,
                prefetch=prefetch,
                wait=wait,
                visibility_timeout=visibility_timeout,
                ack_every=ack_every,
            )
        )
