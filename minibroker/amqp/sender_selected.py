"""Sender-selected distribution: the ``CC`` and ``BCC`` headers, as RabbitMQ reads them.

A publisher may name more routing keys than the one in Basic.Publish: the
``CC`` and ``BCC`` entries of the headers table, each an array of strings.
The exchange routes the message with every one of those keys (a queue that
several keys reach takes it once); the routing key consumers see stays the
publish's. ``BCC`` is removed from the headers before anyone sees the
message, so its recipients stay hidden; ``CC`` stays.

The message remembers all its keys, BCC ones included, as RabbitMQ's
``routing_keys`` do: a dead letter without ``x-dead-letter-routing-key`` is
routed with all of them again; with one, with that key alone, and ``CC`` is
removed from its headers (``minibroker/amqp/dead_letters.py``). Array entries
that are not strings are ignored; a ``CC`` or ``BCC`` that is not an array
makes the message invalid (406 PRECONDITION_FAILED, RabbitMQ's words).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from minibroker.amqp.decoding import field_type_name

CC: Final = "CC"
BCC: Final = "BCC"


class InvalidRouteHeader(ValueError):
    """A ``CC`` or ``BCC`` header that is not an array; the text is RabbitMQ's."""


def header_routes(headers: Mapping[str, object] | None, name: str) -> list[str]:
    """The routing keys the ``name`` header (CC or BCC) of ``headers`` adds."""
    if not headers:
        return []
    value = headers.get(name)
    if value is None and name not in headers:
        return []
    if not isinstance(value, list):
        raise InvalidRouteHeader(
            f'invalid message: {{unacceptable_type_in_header,"{name}",{field_type_name(value)}}}'
        )
    return [key for key in value if type(key) is str]


def encode_keys(keys: list[str]) -> str:
    """Routing keys as one core header value (the BCC keys a message keeps)."""
    return json.dumps(keys, ensure_ascii=False, separators=(",", ":"))


def decode_keys(value: str | None) -> list[str]:
    """The keys :func:`encode_keys` wrote; nothing for anything else."""
    if not value:
        return []
    try:
        keys = json.loads(value)
    except ValueError:
        return []
    if not isinstance(keys, list):
        return []
    return [key for key in keys if type(key) is str]
