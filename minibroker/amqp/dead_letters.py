"""Dead-lettering through an exchange (``x-dead-letter-exchange``), as RabbitMQ does it.

The core decides *when* a message dies (rejected without requeue, expired,
dropped from the head of a full queue) and hands it to the queue's
``dead_letter_route``; this module decides *where* it goes and how it looks
there: published to the dead-letter exchange with the dead-letter routing key
(or its own), its properties unchanged but for its death recorded in the
``x-death`` header (:mod:`minibroker.amqp.deaths`), the ``x-first-death-*``
headers, and no ``expiration`` (``x-death`` keeps it as
``original-expiration``). A message published with ``CC`` or ``BCC``
(sender-selected distribution, :mod:`minibroker.amqp.sender_selected`) is
routed with all its keys again when the queue has no dead-letter routing key;
with one, with that key alone, and its ``CC`` header is removed. Its
``x-death`` entry's ``routing-keys`` are the publish's key and the CC ones
(never BCC), as in RabbitMQ.

Whether it may enter the queues the exchange routes it to is the core's
call (the cycle rule of :mod:`minibroker.core.dead_letters`): the dead letter
carries the core's death path in its core headers, so the rule keeps its
memory from one dead-lettering to the next, and across restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from minibroker.amqp.deaths import DEATHS, record_death
from minibroker.amqp.exchanges import Exchange
from minibroker.amqp.framing import decode_properties, encode_properties
from minibroker.amqp.messages import CoreMessage, bcc_keys, from_core, to_core
from minibroker.amqp.sender_selected import CC, InvalidRouteHeader, header_routes
from minibroker.core.dead_letters import DEATH_PATH, death_path
from minibroker.core.queue_message import Message

#: The core's reasons, in RabbitMQ's words (x-death "reason").
REASONS: Final = {
    "rejected": "rejected",
    "expired": "expired",
    "overflow": "maxlen",
    "max_deliveries": "delivery_limit",
}

#: How a dead letter is routed on: (exchange, routing key, message, headers table, now,
#: priority, more routing keys) -> how many queues took it.
Route = Callable[
    [Exchange, str, CoreMessage, dict[str, object], float, int | None, Sequence[str]], int
]


def dead_letter(
    route: Route,
    exchange: Exchange,
    key: str | None,
    source: str,
    messages: list[Message],
    reason: str,
    now: float,
    wall_ms: int,
) -> bool:
    """Route ``messages`` that died in queue ``source`` (at ``wall_ms``, epoch
    milliseconds); True if any queue took one."""
    amqp_reason = REASONS.get(reason, reason)
    taken = 0
    for m in messages:
        address = from_core(m.headers, source)
        properties = decode_properties(address.properties)
        headers: dict[str, object] = dict(properties.headers or {})
        cc = _cc(headers)
        if key is None:
            # Every key it was published with, BCC ones included (RabbitMQ's routing_keys).
            bcc = bcc_keys(m.headers)
            routing_key, also = address.routing_key, cc + bcc
        else:
            routing_key, also, bcc = key, [], []  # and the CC header goes
            headers.pop(CC, None)
        headers[DEATHS] = record_death(
            headers.get(DEATHS),
            source,
            amqp_reason,
            address.exchange,
            [address.routing_key, *cc],
            wall_ms,
            properties.expiration,
        )
        headers.setdefault("x-first-death-reason", amqp_reason)
        headers.setdefault("x-first-death-queue", source)
        headers.setdefault("x-first-death-exchange", address.exchange)
        properties.headers = headers  # type: ignore[assignment]
        properties.expiration = None
        raw = encode_properties(properties)
        message = to_core(exchange.name, routing_key, raw, headers, m.body, bcc)
        # The core's memory of the path goes on, whatever door the message
        # came in by (to_core read it from x-death alone).
        path = death_path(m.headers, reason, source)
        letter_headers = dict(message.headers or {})
        if path:
            letter_headers[DEATH_PATH] = " ".join(path)
        else:
            letter_headers.pop(DEATH_PATH, None)
        letter = CoreMessage(m.body, letter_headers)
        taken += route(exchange, routing_key, letter, headers, now, properties.priority, also)
    return taken > 0


def _cc(headers: dict[str, object]) -> list[str]:
    """The routing keys of a dead letter's ``CC`` header (one that is not an
    array, from a message that came in by another door, adds none)."""
    try:
        return header_routes(headers, CC)
    except InvalidRouteHeader:
        return []
