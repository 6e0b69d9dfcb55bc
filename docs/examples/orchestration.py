"""Orchestration: a coordinator drives the services step by step and owns the outcome.

Run it with ``python docs/examples/orchestration.py`` (no server needed: the
broker is embedded in this process, on memory storage).

The pattern
-----------

The same order flow as ``choreography.py``, with one component in charge.
The **coordinator** receives each ``orders.placed`` event (from its inbox
queue, bound to the topic) and then *calls* the services in order with
request/reply, waiting for each answer:

1. ``inventory.reserve``: set the goods aside (or fail: out of stock);
2. ``payment.charge``: take the money (or fail: card declined);
3. ``shipping.schedule``: book the parcel;

and publishes the outcome, ``orders.outcome.confirmed`` or
``orders.outcome.rejected``. When a step fails, the coordinator undoes the
steps already done (``inventory.release``: a *compensation*), because it
knows the whole flow. The services are plain responders: they know nothing
of each other or of orders as a process.

Each call has a deadline, and a service that is down fails the call at once
(``NoResponders``) instead of hanging the flow. The event that started the
flow is acked only when the outcome is published, so if the coordinator
dies mid-way, the order is delivered again (to it or to another
coordinator instance): make the steps idempotent, e.g. keyed by order id.

When to use it
--------------

When the flow itself matters: it has an order, compensations, a deadline,
and someone must be able to say which step an order is at. The flow lives
in one readable function, at the cost of a central component that the
services' availability adds up in (every call waits). When the steps are
independent reactions owned by different teams, choreography keeps the
services more loosely coupled.
"""

from __future__ import annotations

import json
from typing import Any

import trio

import minibroker
from minibroker import IncomingRequest

ORDERS: list[dict[str, Any]] = [
    {"order": 1, "item": "widget", "quantity": 3, "card": "visa-ok"},
    {"order": 2, "item": "gadget", "quantity": 1, "card": "visa-expired"},
    {"order": 3, "item": "gizmo", "quantity": 5, "card": "visa-ok"},
]
STOCK = {"widget": 10, "gadget": 2, "gizmo": 4}
PRICES_CENTS = {"widget": 250, "gadget": 1200, "gizmo": 300}


# ------------------------------------------------------------- the services


def loads(req: IncomingRequest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(req.body)
    return data


async def reserve(req: IncomingRequest) -> bytes:
    ask = loads(req)
    if STOCK[ask["item"]] < ask["quantity"]:
        raise minibroker.ResponderError(f"only {STOCK[ask['item']]} {ask['item']} in stock")
    STOCK[ask["item"]] -= ask["quantity"]
    return f"reserved {ask['quantity']} x {ask['item']}".encode()


async def release(req: IncomingRequest) -> bytes:
    ask = loads(req)
    STOCK[ask["item"]] += ask["quantity"]
    return f"released {ask['quantity']} x {ask['item']}".encode()


async def charge(req: IncomingRequest) -> bytes:
    ask = loads(req)
    if ask["card"].endswith("expired"):
        raise minibroker.ResponderError("card declined: expired")
    return f"charged {ask['amount_cents'] / 100:.2f}".encode()


async def schedule(req: IncomingRequest) -> bytes:
    return f"parcel booked, tracking TRK-{loads(req)['order']:04d}".encode()


SERVICES = {
    "inventory.reserve": reserve,
    "inventory.release": release,
    "payment.charge": charge,
    "shipping.schedule": schedule,
}


# ---------------------------------------------------------- the coordinator


async def step(mb: minibroker.Client, order: int, subject: str, data: dict[str, Any]) -> bool:
    """One call to a service; prints what happened and returns whether it worked."""
    try:
        reply = await mb.request(subject, json.dumps(data).encode(), timeout=10.0)
    except minibroker.ResponderError as error:
        print(f"order {order}: {subject} failed: {error.message}")
        return False
    except (minibroker.Timeout, minibroker.NoResponders) as error:
        print(f"order {order}: {subject} unavailable: {error.code}")
        return False
    print(f"order {order}: {subject} -> {reply.body.decode()}")
    return True


async def run_order(mb: minibroker.Client, order: dict[str, Any]) -> str:
    """The whole flow of one order, in one place; returns the outcome."""
    number = order["order"]
    goods = {"item": order["item"], "quantity": order["quantity"]}
    if not await step(mb, number, "inventory.reserve", goods):
        return "rejected"
    amount = PRICES_CENTS[order["item"]] * order["quantity"]
    payment = {"card": order["card"], "amount_cents": amount}
    if not await step(mb, number, "payment.charge", payment):
        await step(mb, number, "inventory.release", goods)  # compensate the reservation
        return "rejected"
    await step(mb, number, "shipping.schedule", {"order": number})
    return "confirmed"


async def coordinator(broker: minibroker.EmbeddedBroker) -> None:
    async with (
        broker.connect(client_name="coordinator") as mb,
        mb.consume("coordinator.inbox", prefetch=2) as events,
    ):
        async for event in events:
            order = json.loads(event.body)
            outcome = await run_order(mb, order)
            await mb.publish(f"orders.outcome.{outcome}", event.body)
            await event.ack()  # only now: a crash before this means a redelivery


async def main() -> None:
    async with minibroker.open_broker() as broker, trio.open_nursery() as nursery:
        # The services: each its own connection, answering requests.
        for subject, handler in SERVICES.items():
            await nursery.start(serve_forever, broker, subject, handler)
        async with broker.connect(client_name="shop") as shop:
            await shop.declare_queue("coordinator.inbox")
            await shop.bind("coordinator.inbox", "orders.placed")
            nursery.start_soon(coordinator, broker)

            async with shop.subscribe("orders.outcome.*") as outcomes:
                for order in ORDERS:
                    await shop.publish("orders.placed", json.dumps(order).encode())
                results = []
                async for message in outcomes:
                    results.append(
                        f"{json.loads(message.body)['order']} {message.topic.rsplit('.', 1)[1]}"
                    )
                    if len(results) == len(ORDERS):
                        break
        print(f"the shop heard the outcomes: {', '.join(results)}")
        print(f"stock left: {', '.join(f'{k} {v}' for k, v in STOCK.items())}")
        nursery.cancel_scope.cancel()


async def serve_forever(
    broker: minibroker.EmbeddedBroker,
    subject: str,
    handler: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one service: ``started`` once its responder is registered."""
    async with broker.connect(client_name=subject) as mb:
        await mb.serve(subject, handler, task_status=task_status)


if __name__ == "__main__":
    trio.run(main)
