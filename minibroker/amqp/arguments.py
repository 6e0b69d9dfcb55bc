"""Queue arguments (``x-message-ttl``, ``x-max-length`` ...) as core queue options.

Arguments minibroker implements become ``QueueOptions`` fields; ``x-expires``
and ``x-dead-letter-*`` are kept by the AMQP vhost (it deletes an idle
queue, and routes dead letters through the exchange); arguments RabbitMQ
knows and minibroker does not implement are refused with 406 and a clear
message rather than accepted and ignored. Other arguments are stored (for
the equivalence check of a redeclaration) and have no effect, as in RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from minibroker.amqp.errors import PRECONDITION_FAILED, SoftError
from minibroker.core.queue_options import MAX_PRIORITY, QueueOptions

_OVERFLOW: Final = {
    "drop-head": "drop_head",
    "reject-publish": "reject_publish",
    "reject-publish-dlx": "reject_publish_dlx",
}
_REFUSED: Final = {
    "x-single-active-consumer": "single active consumer is not implemented",
    "x-queue-master-locator": "minibroker has a single node",
    "x-queue-mode": "lazy queues are not implemented",
}


@dataclass(frozen=True, slots=True)
class QueueArguments:
    options: QueueOptions
    #: ``x-expires`` in seconds: delete the queue after this long unused.
    expires: float | None
    #: ``x-dead-letter-exchange`` and ``-routing-key`` (None: the message's own key).
    dead_letter: tuple[str, str | None] | None


def _integer(arguments: Mapping[str, object], name: str, minimum: int) -> int | None:
    value = arguments.get(name)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise SoftError(
            PRECONDITION_FAILED,
            f"invalid arg '{name}': expected an integer >= {minimum}, got {value!r}",
        )
    return value


def parse(durable: bool, arguments: Mapping[str, object]) -> QueueArguments:
    """Core options for a queue declared with ``arguments``; SoftError(406) when refused."""
    for name, why in _REFUSED.items():
        if name in arguments:
            raise SoftError(PRECONDITION_FAILED, f"'{name}' is not supported: {why}")
    queue_type = arguments.get("x-queue-type", "classic")
    if queue_type != "classic":
        raise SoftError(PRECONDITION_FAILED, f"x-queue-type {queue_type!r} is not supported")
    ttl_ms = _integer(arguments, "x-message-ttl", 0)
    max_length = _integer(arguments, "x-max-length", 0)
    max_length_bytes = _integer(arguments, "x-max-length-bytes", 0)
    max_priority = _integer(arguments, "x-max-priority", 0)
    if max_priority is not None and max_priority > MAX_PRIORITY:
        raise SoftError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-max-priority': {max_priority} is above the maximum {MAX_PRIORITY}",
        )
    expires_ms = _integer(arguments, "x-expires", 1)
    overflow = arguments.get("x-overflow", "drop-head")
    if overflow not in _OVERFLOW:
        raise SoftError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-overflow': {overflow!r} (supported: {', '.join(_OVERFLOW)})",
        )
    dead_letter = _dead_letter(arguments)
    bounded = max_length is not None or max_length_bytes is not None
    options = QueueOptions(
        max_length=max_length,
        max_length_bytes=max_length_bytes,
        overflow=_OVERFLOW[str(overflow)] if bounded else "reject_publish",  # type: ignore[arg-type]
        message_ttl=None if ttl_ms is None else ttl_ms / 1000,  # 0: now or never
        max_priority=max_priority,
        durable=durable,
    )
    return QueueArguments(options, None if expires_ms is None else expires_ms / 1000, dead_letter)


def _dead_letter(arguments: Mapping[str, object]) -> tuple[str, str | None] | None:
    """(exchange, routing key or None for the message's own) from x-dead-letter-*."""
    exchange = arguments.get("x-dead-letter-exchange")
    key = arguments.get("x-dead-letter-routing-key")
    if key is not None and type(key) is not str:
        raise SoftError(PRECONDITION_FAILED, "invalid arg 'x-dead-letter-routing-key'")
    if exchange is None:
        if key is not None:
            raise SoftError(
                PRECONDITION_FAILED,
                "x-dead-letter-routing-key is set but x-dead-letter-exchange is not",
            )
        return None
    if type(exchange) is not str:
        raise SoftError(PRECONDITION_FAILED, "invalid arg 'x-dead-letter-exchange'")
    return exchange, key
