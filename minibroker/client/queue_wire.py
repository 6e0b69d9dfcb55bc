"""Queue objects and requests on the client side: what goes on the wire and what comes back.

The plain data the queue API returns (``QueueStats``, ``QueueInfo``,
``QueueContents``), the ``Delivery`` objects a fetch hands out, and one
builder per request (a ``Call``: op, fields, and the parser of its result).
The method mixins (client/queues.py) and the consumer helper
(client/queue_consumer.py) are built from these, so every client sends the
same frames and reads the same results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from itertools import repeat
from typing import Any, Literal, TypeVar

from minibroker.client.bodies import MessageItem, encode_messages, message_map
from minibroker.client.protocol import Call
from minibroker.errors import UnknownDelivery

OverflowPolicy = Literal["reject_publish", "drop_head"]

#: Seconds a fetched message stays invisible to others unless the queue says otherwise.
DEFAULT_VISIBILITY_TIMEOUT = 30.0

D = TypeVar("D", bound="DeliveryBase")


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
    return QueueContents(*([_queued(v) for v in result[f.name]] for f in fields(QueueContents)))


class DeliveryBase:
    """A fetched message, held by this connection until it is acked or nacked.

    ``delivery_count`` is 1 on the first delivery; ``published_at`` is the
    original put's time in milliseconds since the Unix epoch. Acks and nacks
    go through the client (or consumer) that fetched it: only that
    connection may settle it.
    """

    # A plain slotted class without __init__: a consumer builds one per
    # message, and ``kind()`` then setting its slots is the cheapest way
    # (``deliveries`` below). The annotations say what each slot holds.
    __slots__ = (
        "_settled",
        "_settler",
        "body",
        "delivery_count",
        "delivery_id",
        "headers",
        "published_at",
        "queue",
    )

    queue: str
    delivery_id: int
    body: bytes
    headers: dict[str, str] | None
    delivery_count: int
    published_at: int
    _settler: Any
    #: "acked" or "nacked" once settled through this object.
    _settled: str | None

    def _settling(self, how: str) -> None:
        """Mark this delivery settled, or raise if it already was.

        The broker forgets a delivery once it is settled, so a second ack
        would only get "not held by this connection"; this object knows
        better and says so, without a round trip.
        """
        if self._settled is not None:
            raise UnknownDelivery(
                f"delivery {self.delivery_id} of queue {self.queue!r} was already "
                f"{self._settled} by this client; a delivery is settled once",
                queue=self.queue,
                deliveries=[self.delivery_id],
            )
        self._settled = how

    def _record(self, call: Call[int], how: str) -> bool:
        """Mark settled; a consumer records it for its next batch (True); the
        client of a plain fetch must send ``call`` now (False)."""
        self._settling(how)
        settler = self._settler
        if not settler._batches:
            return False
        if how == "acked":
            settler.record_ack(self.delivery_id)
        else:
            settler.record_settle(call)
        return True

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


class _Recorded:
    """What ``await`` gets from a consumer's ``d.ack()``: the ack is recorded
    already, so awaiting it only ends an iterator that ends at once (made in
    C: ``().__iter__``), with no Python frame run."""

    __slots__ = ()
    __await__ = ().__iter__


RECORDED: Awaitable[None] = _Recorded()  # type: ignore[assignment]


class Delivery(DeliveryBase):
    """A delivery for the Trio, asyncio and in-process clients: ``await d.ack()``."""

    __slots__ = ()

    def ack(self) -> Awaitable[None]:
        """Acknowledge (``await d.ack()``): the message leaves the queue.

        Fetched with ``fetch``: sent at once, raises ``UnknownDelivery`` if the
        delivery is no longer held (its visibility timeout ran out, or it was
        already settled). From a consumer: recorded and sent in a batch.
        """
        # A consumer's delivery acked once, the loop's every message: its id
        # joins the consumer's batch (``ConsumerState.record_ack`` inlined), no
        # request is built, and what is awaited is done already: no coroutine
        # per message. ``_settle`` does the same the long way.
        settler = self._settler
        if settler._batches and self._settled is None and not settler.closed:
            self._settled = "acked"
            acks = settler.acks
            acks.append(self.delivery_id)
            if len(acks) >= settler.ack_every:
                settler.flush()
            return RECORDED
        return self._settle(ack_call(self.queue, [self.delivery_id]), "acked")

    async def nack(self, requeue: bool = True, delay: float = 0.0) -> None:
        """Give the message back: to the front of the queue (after ``delay``
        seconds), or to the dead-letter queue with ``requeue=False``."""
        await self._settle(nack_call(self.queue, [self.delivery_id], requeue, delay), "nacked")

    async def _settle(self, call: Call[int], how: str) -> None:
        if self._record(call, how):
            return
        try:
            await self._settler._call(call)
        except BaseException:
            self._settled = None  # not settled after all: the caller may retry
            raise


class SyncDelivery(DeliveryBase):
    """A delivery for the blocking client: ``d.ack()`` without await."""

    __slots__ = ()

    def ack(self) -> None:
        """Acknowledge (see ``Delivery.ack``)."""
        settler = self._settler
        if settler._batches and self._settled is None:  # see Delivery.ack
            self._settled = "acked"
            settler.record_ack(self.delivery_id)
            return
        self._settle(ack_call(self.queue, [self.delivery_id]), "acked")

    def nack(self, requeue: bool = True, delay: float = 0.0) -> None:
        """Give the message back (see ``Delivery.nack``)."""
        self._settle(nack_call(self.queue, [self.delivery_id], requeue, delay), "nacked")

    def _settle(self, call: Call[int], how: str) -> None:
        if self._record(call, how):
            return
        try:
            self._settler._call(call)
        except BaseException:
            self._settled = None
            raise


# ------------------------------------------------------------------ calls


def count_of(result: dict[str, Any]) -> int:
    return int(result["count"])


def declare_queue_call(
    name: str,
    *,
    max_length: int | None = None,
    max_length_bytes: int | None = None,
    overflow: OverflowPolicy = "reject_publish",
    message_ttl: float | None = None,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    max_deliveries: int | None = None,
    dead_letter_queue: str | None = None,
    durable: bool = False,
) -> Call[bool]:
    """Create queue ``name``; True if created, False if it existed with the same options.

    Raises Conflict if it exists with other options (``details["options"]``
    holds them). See docs/queues.md for what each option means.
    """
    fields: dict[str, Any] = {
        "queue": name,
        "overflow": overflow,
        "visibility_timeout": visibility_timeout,
        "durable": durable,
    }
    optional = {
        "max_length": max_length,
        "max_length_bytes": max_length_bytes,
        "message_ttl": message_ttl,
        "max_deliveries": max_deliveries,
        "dead_letter_queue": dead_letter_queue,
    }
    fields.update((k, v) for k, v in optional.items() if v is not None)
    return Call("queue.declare", fields, lambda r: bool(r["created"]))


def delete_queue_call(name: str) -> Call[int]:
    """Delete the queue; returns how many messages it held (ready, in flight, delayed)."""
    return Call("queue.delete", {"queue": name}, lambda r: int(r["messages"]))


def purge_queue_call(name: str) -> Call[int]:
    """Remove the ready and delayed messages; returns how many. In-flight ones stay."""
    return Call("queue.purge", {"queue": name}, lambda r: int(r["purged"]))


def list_queues_call() -> Call[list[QueueInfo]]:
    """The queues of this namespace, sorted by name, with their depth."""
    return Call("queue.list", {}, _parse_list)


def queue_stats_call(name: str) -> Call[QueueStats]:
    """Depth, counters and options of a queue."""
    return Call("queue.stats", {"queue": name}, _parse_stats)


def inspect_queue_call(name: str, limit: int = 1000) -> Call[QueueContents]:
    """Look at up to ``limit`` ready, in-flight and delayed messages (a test hook)."""
    return Call("queue.inspect", {"queue": name, "limit": limit}, _parse_contents)


def put_call(queue: str, body: bytes, headers: Mapping[str, str] | None = None) -> Call[None]:
    """Put one message; returns once the broker confirmed it (stored per the
    fsync policy for a durable queue). Raises Overflow on a full queue."""
    return Call("put", {"queue": queue, "messages": [message_map(body, headers)]}, _none)


def _none(result: Any) -> None:
    return None


def put_many_call(queue: str, messages: Iterable[MessageItem]) -> Call[int]:
    """Put a batch in one frame; returns how many once confirmed. All or nothing.

    Each item is a body, a ``(body, headers)`` pair, a ``{"body",
    "headers"}`` map or an object with ``body``/``headers``.
    """
    messages = encode_messages(messages, "put_many")
    return Call("put", {"queue": queue, "messages": messages}, count_of)


def fetch_call(
    queue: str,
    max_messages: int,
    wait: float,
    visibility_timeout: float | None,
    kind: type[D],
    settler: Any,
) -> Call[list[D]]:
    # Compact answers (``fetch.compact``) carry columns instead of a map per
    # delivery; an older broker ignores the field and answers with maps.
    fields: dict[str, Any] = {"queue": queue, "max_messages": max_messages, "compact": True}
    if wait:
        fields["wait"] = wait
    if visibility_timeout is not None:
        fields["visibility_timeout"] = visibility_timeout

    def parse(result: list[dict[str, Any]] | dict[str, Any]) -> list[D]:
        return list(deliveries(kind, queue, settler, result))

    return Call("fetch", fields, parse)


def deliveries(
    kind: type[D], queue: str, settler: Any, result: list[dict[str, Any]] | dict[str, Any]
) -> Iterator[D]:
    """The deliveries of a ``fetch`` answer, each built as it is taken.

    A compact answer (docs/protocol.md, ``fetch``) holds ``first_id`` and
    the ids after it, ``bodies``, and ``delivery_count`` and
    ``published_at`` as one integer for all or an array, ``headers`` an
    array when some delivery has headers; an older broker's answer is a map
    per delivery. This gathers the columns; ``_built`` builds the deliveries.
    Both forms give the same deliveries (a property test checks it).
    """
    if isinstance(result, list):  # the map form: its columns
        ids: Iterable[int] = [m["delivery_id"] for m in result]
        bodies: list[bytes] = [m["body"] for m in result]
        counts: Any = [m["delivery_count"] for m in result]
        published: Any = [m["published_at"] for m in result]
        headers: Any = [m.get("headers") for m in result]
    else:
        bodies = result["bodies"]
        if not bodies:
            return iter(())
        first_id: int = result["first_id"]
        counts = result["delivery_count"]
        published = result["published_at"]
        headers = result.get("headers")
        if type(counts) is int and type(published) is int and headers is None:
            return _built(kind, queue, settler, bodies, first_id, counts, published, None)
        ids = range(first_id, first_id + len(bodies))
    n = len(bodies)
    columns = zip(
        ids,
        repeat(counts, n) if type(counts) is int else counts,
        repeat(published, n) if type(published) is int else published,
        repeat(None, n) if headers is None else headers,
        strict=True,
    )
    return _built(kind, queue, settler, bodies, 0, 0, 0, columns)


def _built(
    kind: type[D],
    queue: str,
    settler: Any,
    bodies: list[bytes],
    first_id: int,
    count: int,
    published_at: int,
    columns: Iterator[tuple[int, int, int, dict[str, str] | None]] | None,
) -> Iterator[D]:
    """The deliveries of ``bodies``, each built as it is taken, with its slots
    set directly: the consumer's per-message decoding is this loop, and it
    builds each delivery only as it hands it out (``ConsumerState.take_fetched``),
    so a loop that drops each delivery after its ack leaves no garbage for
    the cyclic collector.

    ``columns`` None is the usual answer: ids from ``first_id``, ``count``
    and ``published_at`` for all, no headers. Else ``columns`` gives each
    delivery its id, count, time and headers (the general form). Sharing
    this loop costs the usual form a test per delivery (callgrind: 2,025 ->
    2,056 instructions per delivery) and the general form its nested rows
    (2,257 -> 2,409), against a loop of its own each.
    """
    row: Any  # a delivery id, or a columns row
    rows = enumerate(bodies, first_id) if columns is None else zip(columns, bodies, strict=True)
    for row, body in rows:
        d = kind()
        if columns is None:
            d.delivery_id = row
            d.headers = None
            d.delivery_count = count
            d.published_at = published_at
        else:
            d.delivery_id, d.delivery_count, d.published_at, d.headers = row
        d.queue = queue
        d.body = body
        d._settler = settler
        d._settled = None
        yield d


def raw_delivery_ids(result: list[dict[str, Any]] | dict[str, Any]) -> list[int]:
    """The delivery ids of a raw ``fetch`` answer, compact or in map form."""
    if isinstance(result, dict):
        first_id = result.get("first_id", 0)
        return list(range(first_id, first_id + len(result["bodies"])))
    return [m["delivery_id"] for m in result]


def bare_puts(client: Any) -> bool:
    """Whether ``client``'s broker takes bare bodies in ``put`` (``put.bare``)."""
    return "put.bare" in client._conn.protocol.extensions


def _cancelled(result: dict[str, Any]) -> bool:
    return bool(result["cancelled"])


def cancel_fetch_call(queue: str, fetch_id: int) -> Call[bool]:
    """Withdraw the parked fetch sent with request id ``fetch_id`` (see docs/protocol.md)."""
    return Call("fetch.cancel", {"queue": queue, "fetch": fetch_id}, _cancelled)


def ack_call(queue: str, delivery_ids: list[int]) -> Call[int]:
    return Call("ack", {"queue": queue, "deliveries": delivery_ids}, count_of)


def nack_call(queue: str, delivery_ids: list[int], requeue: bool, delay: float) -> Call[int]:
    fields: dict[str, Any] = {"queue": queue, "deliveries": delivery_ids, "requeue": requeue}
    if delay:
        fields["delay"] = delay
    return Call("nack", fields, count_of)


#: What ``ack``/``nack`` take: deliveries (one, or any iterable, grouped by
#: queue), or a queue name followed by delivery ids.
SettleTarget = DeliveryBase | Iterable[DeliveryBase] | str


def _by_queue(target: SettleTarget, delivery_ids: Iterable[int] | None) -> dict[str, list[int]]:
    """Delivery ids to settle, grouped by queue in first-seen order."""
    if isinstance(target, str):
        if delivery_ids is None:
            raise TypeError("ack/nack(queue, delivery_ids): the delivery ids are missing")
        return {target: list(delivery_ids)}
    if delivery_ids is not None:
        raise TypeError("pass either deliveries, or a queue name and delivery ids")
    deliveries = [target] if isinstance(target, DeliveryBase) else target
    groups: dict[str, list[int]] = {}
    for d in deliveries:
        if not isinstance(d, DeliveryBase):
            raise TypeError(f"expected deliveries, got {type(d).__name__}")
        ids = groups.get(d.queue)
        if ids is None:
            ids = groups[d.queue] = []
        ids.append(d.delivery_id)
    return groups


def ack_calls(
    deliveries: SettleTarget, delivery_ids: Iterable[int] | None = None
) -> list[Call[int]]:
    """Acknowledge deliveries: ``ack(batch)``, ``ack(delivery)`` or ``ack(queue, ids)``.

    One frame per queue, each all or nothing (``UnknownDelivery`` lists
    the ids no longer held and acks none of that frame). Returns the count.
    """
    return [ack_call(q, ids) for q, ids in _by_queue(deliveries, delivery_ids).items()]


def nack_calls(
    deliveries: SettleTarget,
    delivery_ids: Iterable[int] | None = None,
    *,
    requeue: bool = True,
    delay: float = 0.0,
) -> list[Call[int]]:
    """Give deliveries back: to the front of their queue (after ``delay``
    seconds), or to the dead-letter queue with ``requeue=False``. Same
    arguments and all-or-nothing rule as ``ack``."""
    groups = _by_queue(deliveries, delivery_ids)
    return [nack_call(q, ids, requeue, delay) for q, ids in groups.items()]
