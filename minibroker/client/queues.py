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
fetches (``wait`` seconds each; ``wait=0`` drains: the iteration ends at the
first empty fetch). While fetches come back full it keeps two in flight, so
the next batch is on its way while the current one is processed. It runs no
background task and yields to the event loop once per batch, not per
message: there is nothing to leak and nothing to cancel beyond the ``async
with`` block (client/queue_consumer.py explains the mechanics).

``d.ack()`` inside the loop only records the delivery id. Recorded acks leave
as one ``ack`` frame every ``ack_every`` acks, before each new fetch (so a
loop that acks every delivery before taking the next one never holds more
than ``prefetch`` unacked messages on the broker; deliveries it keeps
unacked longer come on top), and when the block is left; leaving it
normally also waits until the broker has confirmed every ack. An ack the
broker refuses because the delivery is stale (its visibility timeout ran
out and the message was redelivered) is dropped from the batch and counted
in ``stale_acks``; the rest of the batch is acked.

This is **at-least-once**: if the consumer process dies, the acks it recorded
but had not sent yet are lost, and those messages are delivered again (to
someone) after their visibility timeout, or as soon as the broker sees the
connection close. Make processing idempotent. Likewise a delivery that was
fetched but not handed out when the block ends is given back at once
(``nack``: its delivery count went up all the same, which matters with
``max_deliveries``). A fetch still parked on the broker when the block ends
is withdrawn (``fetch.cancel``), so no message is delivered to a consumer
that left; only if its answer was already on the way is what it brings
nacked back as soon as it arrives (its count goes up by one too).

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

from collections.abc import Iterable
from typing import Any, NamedTuple

from minibroker.client.protocol import Call
from minibroker.client.queue_consumer import (
    DEFAULT_ACK_EVERY,
    DEFAULT_CONSUME_WAIT,
    DEFAULT_PREFETCH,
    AsyncConsumer,
    ConsumerState,
    SyncConsumer,
    fetch_withdrawable,
)
from minibroker.client.queue_wire import (
    DEFAULT_VISIBILITY_TIMEOUT,
    Delivery,
    DeliveryBase,
    MessageItem,
    OverflowPolicy,
    QueueContents,
    QueuedMessage,
    QueueInfo,
    QueueStats,
    SettleTarget,
    SyncDelivery,
    ack_calls,
    fetch_call,
    nack_calls,
)

__all__ = [
    "DEFAULT_ACK_EVERY",
    "DEFAULT_CONSUME_WAIT",
    "DEFAULT_PREFETCH",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "AsyncConsumer",
    "Delivery",
    "MessageItem",
    "OverflowPolicy",
    "QueueContents",
    "QueueInfo",
    "QueueStats",
    "QueuedMessage",
    "SyncConsumer",
    "SyncDelivery",
]


def consume_state(
    client: Any,
    queue: str,
    *,
    prefetch: int = DEFAULT_PREFETCH,
    wait: float = DEFAULT_CONSUME_WAIT,
    visibility_timeout: float | None = None,
    ack_every: int = DEFAULT_ACK_EVERY,
) -> ConsumerState:
    """Consume ``queue``: ``async with mb.consume(q) as c: async for d in c``
    (blocking client: ``with mb.consume(q) as c: for d in c: ...; d.ack()``).

    Fetches ``prefetch / 2`` messages at a time, two fetches in flight
    while there is a backlog, each long polling ``wait`` seconds (with
    ``wait=0`` the iteration ends as soon as nothing is ready: a drain).
    ``d.ack()`` records the ack; acks leave in batches of ``ack_every``
    (see the module docstring for the at-least-once details). One task (or
    thread) at a time may iterate a consumer.
    """
    return ConsumerState(
        client,
        queue,
        Delivery if client._awaits else SyncDelivery,
        prefetch=prefetch,
        wait=wait,
        visibility_timeout=visibility_timeout,
        ack_every=ack_every,
    )


class FetchPlan(NamedTuple):
    client: Any
    queue: str
    call: Call[list[Any]]


def fetch_state(
    client: Any,
    queue: str,
    max_messages: int = 1,
    wait: float = 0.0,
    visibility_timeout: float | None = None,
) -> FetchPlan:
    """Take up to ``max_messages`` ready messages, oldest first.

    Answers at once with what is ready; with nothing ready and ``wait`` > 0,
    waits up to ``wait`` seconds for messages (an empty list if none came).
    The deliveries (``SyncDelivery`` for the blocking client) are held by
    this connection for ``visibility_timeout`` seconds (the queue's by
    default): ack or nack them before that.
    """
    kind: type[DeliveryBase] = Delivery if client._awaits else SyncDelivery
    # The deliveries settle through the client, one call per ack or nack.
    call = fetch_call(queue, max_messages, wait, visibility_timeout, kind, client)
    return FetchPlan(client, queue, call)


async def fetch_async(plan: FetchPlan) -> list[Delivery]:
    if "wait" not in plan.call.fields:
        return await plan.client._call(plan.call)  # type: ignore[no-any-return]
    # A long poll parks on the broker: cancelling this call withdraws it.
    return await fetch_withdrawable(plan.client, plan.queue, plan.call)


def fetch_blocking(plan: FetchPlan) -> list[SyncDelivery]:
    return plan.client._call(plan.call)  # type: ignore[no-any-return]


class SettlePlan(NamedTuple):
    client: Any
    calls: list[Call[int]]


def ack_state(
    client: Any, deliveries: SettleTarget, delivery_ids: Iterable[int] | None = None
) -> SettlePlan:
    """Acknowledge deliveries: ``ack(batch)``, ``ack(delivery)`` or ``ack(queue, ids)``.

    One frame per queue, each all or nothing (``UnknownDelivery`` lists
    the ids no longer held and acks none of that frame). Returns the count.
    """
    return SettlePlan(client, ack_calls(deliveries, delivery_ids))


def nack_state(
    client: Any,
    deliveries: SettleTarget,
    delivery_ids: Iterable[int] | None = None,
    *,
    requeue: bool = True,
    delay: float = 0.0,
) -> SettlePlan:
    """Give deliveries back: to the front of their queue (after ``delay``
    seconds), or to the dead-letter queue with ``requeue=False``. Same
    arguments and all-or-nothing rule as ``ack``."""
    return SettlePlan(client, nack_calls(deliveries, delivery_ids, requeue, delay))


async def settle_async(plan: SettlePlan) -> int:
    total = 0
    for call in plan.calls:
        total += await plan.client._call(call)
    return total


def settle_blocking(plan: SettlePlan) -> int:
    return sum(plan.client._call(call) for call in plan.calls)
