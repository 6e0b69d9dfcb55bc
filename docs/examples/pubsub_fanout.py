"""Publish/subscribe fan-out (push): one price feed, many listeners, each with its own view.

Run it with ``python docs/examples/pubsub_fanout.py`` (no server needed: the
broker is embedded in this process, on memory storage).

The pattern
-----------

A publisher announces facts on *topics* (``prices.eu.acme``) without knowing
who listens. Every *subscription* whose pattern matches gets its own copy,
pushed to it at once: ``*`` matches one word, ``#`` any number of words.
This program shows every way a copy can travel:

* **fan-out**: a dashboard on ``prices.#`` and an EU desk on ``prices.eu.*``
  each get every matching price;
* **a group** shares the stream instead: the two ``billing`` instances
  subscribe with ``group="billing"`` and get one copy per message between
  them, in turn (scale a subscriber out without processing twice);
* **a bound queue** keeps copies for consumers that are not connected:
  ``bind("price-history", "prices.#")`` turns the live stream into a work
  queue that an offline archiver drains later (a durable subscription);
* **a slow subscriber** loses only its own messages: the ticker tape asks
  for a buffer of 3; a burst of 6 prices overflows it, so the broker keeps
  the newest 3 and tells it how many were dropped. Nobody else noticed.

Topics are at-most-once to live subscribers: nothing is kept for a
subscriber that is not connected (that is what the bound queue is for).

When to use it
--------------

When something *happened* and any number of parts of the system may care:
prices, cache invalidations, "order placed", configuration changes. The
publisher stays decoupled from its audience, and new listeners can be added
without touching it. When each message is a job that must be done exactly
once, use a queue (``work_queue.py``); when readers need the history, use a
log (``event_sourcing.py``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

import minibroker
from minibroker import Subscription
from minibroker.client.topics import TopicMessage

TICKS = [
    ("prices.eu.acme", b"101.5"),
    ("prices.us.globex", b"55.0"),
    ("prices.eu.initech", b"12.25"),
    ("prices.us.acme", b"101.7"),
    ("prices.eu.acme", b"101.6"),
    ("prices.asia.hooli", b"8.8"),
]
BURST = [b"102.0", b"102.1", b"102.2", b"102.3", b"102.4", b"102.5"]


def show(messages: list[TopicMessage]) -> str:
    return ", ".join(f"{m.topic.removeprefix('prices.')}={m.body.decode()}" for m in messages)


async def receive(subscription: Subscription[TopicMessage], count: int) -> list[TopicMessage]:
    """Take exactly ``count`` messages from a subscription."""
    received: list[TopicMessage] = []
    async for message in subscription:
        received.append(message)
        if len(received) == count:
            return received
    return received


async def main() -> None:
    async with minibroker.open_broker() as broker, AsyncExitStack() as stack:
        # Every service has its own connection, as separate processes would.
        async def service(name: str) -> minibroker.Client:
            return await stack.enter_async_context(broker.connect(client_name=name))

        feed = await service("price-feed")
        subscriptions: dict[str, Subscription[TopicMessage]] = {}
        for name, pattern, group in [
            ("dashboard", "prices.#", None),
            ("eu-desk", "prices.eu.*", None),
            ("billing-1", "prices.#", "billing"),
            ("billing-2", "prices.#", "billing"),
        ]:
            client = await service(name)
            subscriptions[name] = await stack.enter_async_context(
                client.subscribe(pattern, group=group)
            )

        archiver = await service("archiver")  # offline for now: it drains its queue later
        await archiver.declare_queue("price-history")
        await archiver.bind("price-history", "prices.#")

        for topic, price in TICKS:
            reached = await feed.publish(topic, price)
            print(
                f"published {topic}={price.decode()}: {reached.subscriptions} subscription "
                f"copies, {reached.queues} queue copy"
            )

        expected = {"dashboard": 6, "eu-desk": 3, "billing-1": 3, "billing-2": 3}
        for name, subscription in subscriptions.items():
            messages = await receive(subscription, expected[name])
            print(f"{name} got {len(messages)}: {show(messages)}")

        # A slow subscriber: a buffer of 3, and a burst of 6 in one publish.
        ticker = await stack.enter_async_context(
            (await service("ticker-tape")).subscribe("prices.eu.acme", buffer=3)
        )
        await feed.publish_many("prices.eu.acme", BURST)
        burst = await receive(ticker, 3)
        print(f"ticker-tape (buffer 3) got the newest {len(burst)}: {show(burst)}")
        print(f"ticker-tape was told it dropped {ticker.dropped}")
        late = await receive(subscriptions["dashboard"], len(BURST))
        print(f"dashboard, keeping up, got all {len(late)} of the burst")

        history = await archiver.fetch("price-history", max_messages=100)
        await archiver.ack(history)
        print(f"the archiver drains price-history later: {len(history)} prices were kept for it")


if __name__ == "__main__":
    trio.run(main)
