"""Queues for every client: the ``fetch`` and ``consume`` methods.

The requests' builders (``ack`` and ``nack`` too) and the ``Delivery``
objects are in ``queue_wire.py``, the consumer in ``queue_consumer.py``;
what each method promises (batched acks, at-least-once, withdrawing parked
fetches) is in docs/queues.md, "Client API".
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, TypeVar

from minibroker.client.bodies import MessageItem
from minibroker.client.protocol import Call
from minibroker.client.queue_consumer import (
    DEFAULT_ACK_EVERY,
    DEFAULT_CONSUME_WAIT,
    DEFAULT_PREFETCH,
    AsyncConsumer,
    ConsumerState,
    SyncConsumer,
    fetch_withdrawable,
    giving_back,
)
from minibroker.client.queue_wire import (
    DEFAULT_VISIBILITY_TIMEOUT,
    Delivery,
    DeliveryBase,
    OverflowPolicy,
    QueueContents,
    QueuedMessage,
    QueueInfo,
    QueueStats,
    SyncDelivery,
    cancel_fetch_call,
    fetch_call,
)

T = TypeVar("T")

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
    (docs/queues.md has the at-least-once details). One task (or
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
    call = plan.call
    if "wait" in call.fields:  # a long poll parks on the broker: Ctrl-C withdraws it
        call = withdrawable_fetch(call, plan.client, plan.queue)
    return plan.client._call(call)  # type: ignore[no-any-return]


def withdrawable_fetch(call: Call[T], client: Any, queue: str) -> Call[T]:
    """``call`` (a long-poll fetch), withdrawn if its blocking caller gives up.

    The blocking client's counterpart of ``fetch_withdrawable``: a fetch
    interrupted by Ctrl-C (or the client's own timeout) used to stay parked
    on the broker, so the next message went to nobody and stayed invisible
    until its visibility timeout. Giving it up now sends ``fetch.cancel``
    and gives back (nacks) whatever deliveries its answer still brings.
    """
    withdraw = partial(cancel_fetch_call, queue)
    return Call(call.op, call.fields, call.parse, call.quiet, withdraw, giving_back(client, queue))
