"""Choreography: services react to each other's events; nobody is in charge.

Run it with ``python docs/examples/choreography.py`` (no server needed: the
broker is embedded in this process, on memory storage).

The pattern
-----------

An order flows through three services, and none of them calls another:

1. the **orders** service publishes ``orders.placed``;
2. the **payments** service reacts to ``orders.placed``, charges the card and
   publishes ``payments.captured`` or ``payments.declined``;
3. the **shipping** service reacts to ``payments.captured`` and publishes
   ``shipping.dispatched``;
4. the orders service reacts to ``payments.*`` and ``shipping.*`` and keeps
   each order's status.

Each service only knows the *events* it consumes and emits, never the
other services: a new one (a loyalty program reacting to
``shipping.dispatched``) is added without touching anybody.

Every service gets its events through its own **inbox queue bound to the
topics** it cares about (``bind``), not through a live subscription: topics
are at-most-once to connected subscribers, while a bound queue keeps the
events until the service acks them. That is why shipping can start late
here, and a service can be redeployed without missing an event. The queue
message carries only the body and headers, not the topic it was published
on, so every event names its type in a header (``event``).

When to use it
--------------

When a business process is a chain of reactions owned by different teams,
and loose coupling matters more than seeing the whole flow in one place.
The price: the flow exists only as the sum of the subscriptions, so it is
harder to follow, to change and to debug, and "what state is order 2 in?"
needs someone to listen to everything (here, the orders service). When one
component should own the flow, use orchestration (``orchestration.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import minibroker

ORDERS: list[dict[str, Any]] = [
    {"order": 1, "item": "widget", "amount_cents": 750, "card": "visa-ok"},
    {"order": 2, "item": "gadget", "amount_cents": 1200, "card": "visa-expired"},
    {"order": 3, "item": "gizmo", "amount_cents": 300, "card": "mastercard-ok"},
]

#: Each service's inbox queue and the topics bound to it.
INBOXES = {
    "orders": ["payments.*", "shipping.*"],
    "payments": ["orders.placed"],
    "shipping": ["payments.captured"],
}


async def emit(mb: minibroker.Client, event: str, data: dict[str, Any]) -> None:
    """Publish an event: the topic is its type, repeated in a header for bound queues."""
    await mb.publish(event, json.dumps(data).encode(), headers={"event": event})


Handler = Callable[[str, dict[str, Any]], Awaitable[bool]]


async def run_inbox(mb: minibroker.Client, service: str, handle: Handler) -> None:
    """Feed the service's inbox to ``handle(event, data)``, acking each event once
    handled, until ``handle`` returns True."""
    async with mb.consume(f"{service}.inbox", prefetch=10) as deliveries:
        async for delivery in deliveries:
            done = await handle((delivery.headers or {})["event"], json.loads(delivery.body))
            await delivery.ack()
            if done:
                return


async def payments(broker: minibroker.EmbeddedBroker, handled: dict[str, int]) -> None:
    async with broker.connect(client_name="payments") as mb:

        async def charge(event: str, order: dict[str, Any]) -> bool:
            handled["payments"] += 1
            if order["card"].endswith("expired"):
                await emit(mb, "payments.declined", {"order": order["order"], "why": "expired"})
            else:
                await emit(mb, "payments.captured", {"order": order["order"]})
            return False

        await run_inbox(mb, "payments", charge)


async def shipping(broker: minibroker.EmbeddedBroker, handled: dict[str, int]) -> None:
    async with broker.connect(client_name="shipping") as mb:

        async def dispatch(event: str, payment: dict[str, Any]) -> bool:
            handled["shipping"] += 1
            tracking = f"TRK-{payment['order']:04d}"
            await emit(mb, "shipping.dispatched", {"order": payment["order"], "tracking": tracking})
            return False

        await run_inbox(mb, "shipping", dispatch)


async def main() -> None:
    history: dict[int, list[str]] = {}
    handled = {"payments": 0, "shipping": 0}
    async with minibroker.open_broker() as broker:
        # Deploying a service sets up its inbox first: declare it, bind its topics.
        async with broker.connect() as admin:
            for service, topics in INBOXES.items():
                await admin.declare_queue(f"{service}.inbox")
                for topic in topics:
                    await admin.bind(f"{service}.inbox", topic)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(payments, broker, handled)

            async with broker.connect(client_name="orders") as mb:
                for order in ORDERS:
                    history[order["order"]] = ["placed"]
                    await emit(mb, "orders.placed", order)
                print(f"{len(ORDERS)} orders placed; the shipping service is deployed only now")
                nursery.start_soon(shipping, broker, handled)

                # The orders service follows every order to a final state.
                open_orders = len(ORDERS)

                async def track(event: str, data: dict[str, Any]) -> bool:
                    nonlocal open_orders
                    steps = history[data["order"]]
                    if event == "payments.captured":
                        steps.append("payment captured")
                    elif event == "payments.declined":
                        steps += [f"payment declined (card {data['why']})", "cancelled"]
                        open_orders -= 1
                    elif event == "shipping.dispatched":
                        steps.append(f"dispatched ({data['tracking']})")
                        open_orders -= 1
                    return open_orders == 0

                await run_inbox(mb, "orders", track)
            nursery.cancel_scope.cancel()  # every order is final: stop the other services

    for order_id, steps in sorted(history.items()):
        print(f"order {order_id}: {' -> '.join(steps)}")
    print(f"payments handled {handled['payments']} events, shipping {handled['shipping']}")


if __name__ == "__main__":
    trio.run(main)
