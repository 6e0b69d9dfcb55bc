"""An AMQP message kept as a core message, and rebuilt from one.

The core stores a body and a str -> str header map. An AMQP message also has
an exchange, a routing key and typed properties (content type, reply_to, a
field table of headers ...). Three reserved headers carry them:

* ``x-amqp-exchange`` and ``x-amqp-routing-key``, as published;
* ``x-amqp-properties``: the content header's property bytes exactly as the
  publisher's client wrote them (base64), so a consumer gets them byte for
  byte: field-table type tags, timestamps and all.

The string entries of the AMQP headers table are copied as plain headers
too, so a native consumer of the same queue (or a native topic subscriber)
reads them like any other header. One core header is the broker's own: a
message with an ``x-death`` table gets the death path it records as
``x-death-path`` (the memory of the core's dead-letter cycle rule, see
:mod:`minibroker.amqp.deaths`), never a client's string of that name; a
message published with a ``BCC`` header keeps its BCC routing keys as
``x-amqp-bcc`` (JSON), for its dead-lettering
(:mod:`minibroker.amqp.sender_selected`).

Two shortcuts keep this off the per-message bill. A message published to the
default exchange without properties is stored without headers: the queue it
lands in is the one its routing key names, so ``from_core(None, queue)``
rebuilds it exactly. And messages that share an exchange, a routing key and
property bytes (and have no header table) share one headers map (nothing
changes a stored message's headers in place). A message that entered through the native
door has none of the reserved headers: AMQP consumers then get its headers
as the headers table and its topic (if it came through a topic) as the
routing key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from pamqp import commands

from minibroker.amqp.deaths import DEATHS, x_death_path
from minibroker.amqp.framing import encode_properties
from minibroker.amqp.sender_selected import decode_keys, encode_keys
from minibroker.core.dead_letters import DEATH_PATH
from minibroker.core.topics import TOPIC_HEADER

EXCHANGE_HEADER: Final = "x-amqp-exchange"
ROUTING_KEY_HEADER: Final = "x-amqp-routing-key"
PROPERTIES_HEADER: Final = "x-amqp-properties"
#: The BCC routing keys of a message published with a ``BCC`` header: gone
#: from its headers table, kept for its dead-lettering (sender_selected.py).
BCC_HEADER: Final = "x-amqp-bcc"
_RESERVED: Final = frozenset(
    {EXCHANGE_HEADER, ROUTING_KEY_HEADER, PROPERTIES_HEADER, BCC_HEADER, DEATH_PATH}
)
#: The property bytes of a message without properties: two zero flag bytes.
NO_PROPERTIES: Final = b"\x00\x00"
#: The exchange an AMQP consumer sees for a message that came through a native topic.
NATIVE_TOPIC_EXCHANGE: Final = "amq.topic"


class CoreMessage(NamedTuple):
    """What a queue's ``put`` and a topic's ``publish`` take: a body and headers."""

    body: bytes
    headers: dict[str, str] | None


#: Headers maps shared by messages without a header table, by (exchange, key, properties).
_SHARED: dict[tuple[str, str, bytes], dict[str, str]] = {}
#: Decoded property bytes by their base64 form (deliveries of similar messages).
_DECODED: dict[str, bytes] = {}
#: Entries each cache holds at most; a full cache starts again empty.
_CACHE_SIZE: Final = 1024
#: Property bytes longer than this are not cached (the caches stay small).
_CACHED_PROPERTIES: Final = 512


def to_core(
    exchange: str,
    routing_key: str,
    raw_properties: bytes,
    header_table: Mapping[str, object] | None,
    body: bytes,
    bcc: Sequence[str] = (),
) -> CoreMessage:
    """Keep an AMQP message in core form (see the module docstring); ``bcc``:
    the BCC routing keys it was published with (its ``BCC`` header, removed)."""
    if not header_table and not bcc and len(raw_properties) <= _CACHED_PROPERTIES:
        if not exchange and raw_properties == NO_PROPERTIES:
            return CoreMessage(body, None)
        address = (exchange, routing_key, raw_properties)
        shared = _SHARED.get(address)
        if shared is None:
            if len(_SHARED) >= _CACHE_SIZE:
                _SHARED.clear()
            shared = _address_headers(exchange, routing_key, raw_properties, {})
            _SHARED[address] = shared
        return CoreMessage(body, shared)
    headers: dict[str, str] = {}
    if header_table:
        for key, value in header_table.items():
            if type(value) is str and key not in _RESERVED:
                headers[key] = value
        deaths = header_table.get(DEATHS)
        if deaths is not None and (path := x_death_path(deaths)):
            headers[DEATH_PATH] = " ".join(path)
    if bcc:
        headers[BCC_HEADER] = encode_keys(list(bcc))
    return CoreMessage(body, _address_headers(exchange, routing_key, raw_properties, headers))


def _address_headers(
    exchange: str, routing_key: str, raw_properties: bytes, headers: dict[str, str]
) -> dict[str, str]:
    """``headers`` with the reserved entries added."""
    headers[EXCHANGE_HEADER] = exchange
    headers[ROUTING_KEY_HEADER] = routing_key
    if raw_properties != NO_PROPERTIES:
        headers[PROPERTIES_HEADER] = base64.b64encode(raw_properties).decode("ascii")
    return headers


def bcc_keys(headers: Mapping[str, str] | None) -> list[str]:
    """The BCC routing keys a stored message was published with (none for most)."""
    if not headers:
        return []
    return decode_keys(headers.get(BCC_HEADER))


class Addressed(NamedTuple):
    """How an AMQP consumer sees a stored message: where it was sent, and its properties."""

    exchange: str
    routing_key: str
    properties: bytes


def from_core(headers: Mapping[str, str] | None, queue: str) -> Addressed:
    """Rebuild exchange, routing key and property bytes from a stored message's headers."""
    if not headers:
        return Addressed("", queue, NO_PROPERTIES)
    exchange = headers.get(EXCHANGE_HEADER)
    if exchange is not None:
        encoded = headers.get(PROPERTIES_HEADER)
        if encoded is None:
            raw = NO_PROPERTIES
        elif len(encoded) > _CACHED_PROPERTIES:
            raw = base64.b64decode(encoded)
        else:
            found = _DECODED.get(encoded)
            if found is None:
                if len(_DECODED) >= _CACHE_SIZE:
                    _DECODED.clear()
                found = _DECODED[encoded] = base64.b64decode(encoded)
            raw = found
        return Addressed(exchange, headers.get(ROUTING_KEY_HEADER, ""), raw)
    # Native: the headers become the headers table; a topic becomes the routing key.
    topic = headers.get(TOPIC_HEADER)
    table: dict[str, object] = {k: v for k, v in headers.items() if k != TOPIC_HEADER}
    fields = commands.Basic.Properties(headers=table or None)  # type: ignore[arg-type]
    properties = encode_properties(fields)
    if topic is not None:
        return Addressed(NATIVE_TOPIC_EXCHANGE, topic, properties)
    return Addressed("", queue, properties)
