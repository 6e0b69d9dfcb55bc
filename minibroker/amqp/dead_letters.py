"""Dead-lettering through an exchange (``x-dead-letter-exchange``), as RabbitMQ does it.

The core decides *when* a message dies (rejected without requeue, expired,
dropped from the head of a full queue) and hands it to the queue's
``dead_letter_route``; this module decides *where* it goes and how it looks
there: published to the dead-letter exchange with the dead-letter routing key
(or its own), its properties unchanged but for an ``x-death`` entry at the
front of its headers and the ``x-first-death-*`` headers, and no
``expiration`` when it died of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from minibroker.amqp.exchanges import Exchange
from minibroker.amqp.framing import decode_properties, encode_properties
from minibroker.amqp.messages import CoreMessage, from_core, to_core
from minibroker.core.queue_message import Message

#: The core's reasons, in RabbitMQ's words (x-death "reason").
REASONS: Final = {
    "rejected": "rejected",
    "expired": "expired",
    "overflow": "maxlen",
    "max_deliveries": "delivery_limit",
}

#: How a dead letter is routed on: (exchange, routing key, message, headers table, now,
#: priority) -> how many queues took it.
Route = Callable[[Exchange, str, CoreMessage, dict[str, object], float, int | None], int]


def dead_letter(
    route: Route,
    exchange: Exchange,
    key: str | None,
    source: str,
    messages: list[Message],
    reason: str,
    now: float,
) -> bool:
    """Route ``messages`` that died in queue ``source``; True if any queue took one."""
    amqp_reason = REASONS.get(reason, reason)
    taken = 0
    for m in messages:
        address = from_core(m.headers, source)
        routing_key = address.routing_key if key is None else key
        properties = decode_properties(address.properties)
        headers: dict[str, object] = dict(properties.headers or {})
        deaths = headers.get("x-death")
        headers["x-death"] = [
            {
                "count": 1,
                "reason": amqp_reason,
                "queue": source,
                "exchange": address.exchange,
                "routing-keys": [address.routing_key],
            },
            *(deaths if isinstance(deaths, list) else []),
        ]
        headers.setdefault("x-first-death-reason", amqp_reason)
        headers.setdefault("x-first-death-queue", source)
        headers.setdefault("x-first-death-exchange", address.exchange)
        properties.headers = headers  # type: ignore[assignment]
        if reason == "expired":
            properties.expiration = None
        raw = encode_properties(properties)
        message = to_core(exchange.name, routing_key, raw, headers, m.body)
        taken += route(exchange, routing_key, message, headers, now, properties.priority)
    return taken > 0
