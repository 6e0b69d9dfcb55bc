"""The one rule for message bodies in the Python clients: bytes, never str.

Bodies are opaque bytes on the wire and come back as ``bytes`` from every
fetch, read, subscription and reply. Accepting a ``str`` on the way in would
make ``put("q", "hi")`` look fine until ``delivery.body == "hi"`` quietly
compares ``b"hi"`` with ``"hi"`` and fails, so every method that takes a
body or a record key (``put``, ``put_many``, ``publish``, ``publish_many``,
``append``, ``append_many``, ``request``, ``reply``) refuses a ``str`` with
the same ``TypeError`` and says what to do. ``bytearray`` and ``memoryview``
are accepted and copied to ``bytes``. A message's wire form is written here
once for every method that sends messages (``put``, ``put_many``,
``publish``, ``publish_many``, the queue producer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def as_body(value: Any, what: str = "message bodies") -> bytes:
    """``value`` as ``bytes``; ``TypeError`` for ``str`` and anything not bytes-like."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        raise TypeError(
            f"{what} are bytes, not str: encode the text first, e.g. {value[:20]!r}.encode()"
        )
    raise TypeError(f"{what} are bytes, not {type(value).__name__}")


#: What ``put_many`` and ``publish_many`` accept per message: a body, a
#: ``(body, headers)`` pair, a ``{"body", "headers"?}`` map, or any object with
#: ``body`` (and optional ``headers``), such as a Delivery or a TopicMessage.
MessageItem = bytes | tuple[Any, ...] | Mapping[str, Any] | Any


def message_map(body: Any, headers: Mapping[str, str] | None) -> dict[str, Any]:
    """One message's wire form."""
    body = as_body(body)
    return {"body": body, "headers": dict(headers)} if headers else {"body": body}


def _encode_message(item: MessageItem) -> dict[str, Any]:
    if isinstance(item, tuple):
        body, headers = (*item, None)[:2]
        return message_map(body, headers)
    if isinstance(item, Mapping):
        return message_map(item["body"], item.get("headers"))
    if isinstance(item, bytes | bytearray | memoryview | str):
        return message_map(item, None)
    body = getattr(item, "body")  # noqa: B009 (any object with a body attribute)
    return message_map(body, getattr(item, "headers", None))


def encode_messages(
    messages: Iterable[MessageItem], method: str, *, bare: bool = False
) -> list[Any]:
    """The wire form of a batch of messages (see ``MessageItem``) for ``method``.

    With ``bare`` (``publish`` takes it), a message without headers goes as
    its bare body: no map to build here, none to decode in the broker.
    """
    if isinstance(messages, bytes | str | bytearray):
        raise TypeError(f"{method} takes an iterable of messages, not one body")
    if bare:
        items: list[Any] = list(messages)
        # Plain bodies, the common batch, are sent as they are. Counting their
        # types in C costs a third less than a set of them (no hashing).
        if list(map(type, items)).count(bytes) == len(items):
            return items
        encoded = [_encode_message(m) for m in items]
        return [m if "headers" in m else m["body"] for m in encoded]
    # Plain bytes, the common case, skip the call to _encode_message.
    return [{"body": m} if type(m) is bytes else _encode_message(m) for m in messages]
