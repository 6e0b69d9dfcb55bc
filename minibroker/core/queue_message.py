"""One queued message, as the queue and its journal hold it.

A ``Message`` object is created once, when the message enters the queue, and
then only moves: from the ready deque to the in-flight table (fetch), back to
the front of the deque in publish order (nack, visibility timeout, disconnect), or out (ack,
expiry, dead-lettering...). Nothing is copied per delivery, which is what
keeps a fetch-and-ack cycle down to a few dictionary operations.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from minibroker.core.sizes import headers_size

if TYPE_CHECKING:
    from minibroker.core.queues import Lease

#: ``expires_at`` of a message that never expires.
NEVER: float = math.inf
#: Bytes of one delivery in a ``fetch`` answer besides its body and headers:
#: the map and its five keys (54 bytes), three integers (9 each) and the
#: headers of ``body`` and of the headers map (5 each), at their widest.
DELIVERY_OVERHEAD: Final = 96


def delivery_size(message: Message) -> int:
    """Bytes ``message`` takes in a ``fetch`` answer, at most (a fetch's byte budget counts it)."""
    headers = message.headers
    if headers:
        return DELIVERY_OVERHEAD + len(message.body) + headers_size(headers)
    return DELIVERY_OVERHEAD + len(message.body)


class Message:
    """A message in a queue (ready, in flight or delayed).

    The fields a consumer sees are ``body``, ``headers``, ``published_at``
    (wall-clock milliseconds), ``delivery_count`` and, while the message is
    in flight, ``delivery_id``. Objects returned by a fetch stay owned by the
    queue: read them right away, before calling into the queue again (a
    redelivery reuses the object with a new id and count).
    """

    __slots__ = (
        "body",
        "delivery_count",
        "delivery_id",
        "expires_at",
        "group",
        "headers",
        "jid",
        "jpos",
        "lease",
        "priority",
        "published_at",
        "seq",
    )

    def __init__(
        self,
        body: bytes,
        headers: dict[str, str] | None,
        published_at: int,
        expires_at: float = NEVER,
        delivery_count: int = 0,
        seq: int = -1,
        jid: int = -1,
        priority: int = 0,
    ) -> None:
        self.body = body
        self.headers = headers
        #: Publish time, milliseconds since the Unix epoch.
        self.published_at = published_at
        #: When the message expires, on the broker's ``now`` clock (``NEVER`` if no TTL).
        self.expires_at = expires_at
        #: How many times it has been delivered (0 until its first fetch).
        self.delivery_count = delivery_count
        #: The id of its current delivery (meaningful only while in flight).
        self.delivery_id = 0
        #: The fetch it was delivered in, while in flight.
        self.lease: Lease | None = None
        #: Publish order: the journal's number (durable queues, kept across
        #: restarts); elsewhere its first delivery id, set at that delivery
        #: (-1 until then). Returns are placed by it (``ready.return_in_order``).
        self.seq = seq
        #: Offset of the journal record that holds it (durable queues; -1 otherwise).
        self.jid = jid
        #: Where that record starts in the journal, in upper-bound bytes (see queue_journal).
        self.jpos = 0
        #: Its message group (SQS FIFO's MessageGroupId), or None: while a
        #: message of a group is in flight, no other message of that group is
        #: delivered, so each group is processed in order.
        self.group: str | None = None
        #: Its priority (0 .. 255; only a queue with ``max_priority`` orders by it).
        self.priority = priority

    def __repr__(self) -> str:
        return (
            f"Message(body={self.body[:32]!r}, count={self.delivery_count}, "
            f"delivery_id={self.delivery_id}, published_at={self.published_at})"
        )


class FirstDeliveries:
    """A fetch's messages as columns: what a compact fetch gets instead of ``Message`` objects.

    Messages put as bare bodies into a plain queue (no TTL, priorities,
    length limits, groups or journal) wait as two lists, bodies and publish
    times, and a compact fetch (``Queue.fetch(..., compact=True)``) hands
    them out as they are: delivery ids ``first_id``, ``first_id + 1``, ...,
    no headers, each delivered for the first time (``delivery_count`` 1).
    No ``Message`` is made for them unless they leave that path (see
    docs/internals.md, "a message's walk"). Read it right away, as a list of
    ``Message`` returned by a fetch.
    """

    __slots__ = ("bodies", "first_id", "published_at")

    def __init__(self, first_id: int, bodies: list[bytes], published_at: list[int]) -> None:
        self.first_id = first_id
        self.bodies = bodies
        #: Publish time of each message, milliseconds since the Unix epoch.
        self.published_at = published_at

    def __len__(self) -> int:
        return len(self.bodies)

    def messages(self) -> list[Message]:
        """The same deliveries as ``Message`` objects (for a reader that wants them)."""
        out = []
        delivery_id = self.first_id
        for body, published_at in zip(self.bodies, self.published_at, strict=True):
            m = Message(body, None, published_at, delivery_count=1)
            m.delivery_id = delivery_id
            out.append(m)
            delivery_id += 1
        return out

    def __repr__(self) -> str:
        return f"FirstDeliveries(first_id={self.first_id}, count={len(self.bodies)})"
