"""The fast decoding of a message batch, shared by ``put`` and ``publish``.

Both requests carry ``messages``: an array whose items are a bare body
(``bin``, a message without headers) or a ``{"body", "headers"?}`` map.
The generic schema decoder (protocol/schema.py) checks each item through
the union's checkers and builds a ``MessageIn`` per map through its
``__init__``; this module does the same for the common shapes with no call
per item, and leaves everything else (a text body, a bad type, an unknown
shape) to the generic decoder, which then either accepts the same value or
names the bad item. Each fast decoder's property test checks that both
agree on arbitrary input (tests/protocol/test_publish_decode.py,
tests/protocol/test_put_decode.py).
"""

from __future__ import annotations

from typing import Any

from minibroker.protocol import frames

_new_message = object.__new__


def is_str_map(value: object) -> bool:
    """True for a map of strings to strings (a message's headers)."""
    if type(value) is not dict:
        return False
    return all(type(k) is str and type(v) is str for k, v in value.items())


def fast_messages(items: object) -> list[frames.MessageIn | bytes] | None:
    """``items`` decoded as the generic decoder would, or None for the generic decoder.

    A batch of bare bodies (what the Python clients send for messages
    without headers) is returned as it is: the common batch costs one pass
    in C and builds nothing. Maps become ``MessageIn`` with their slots set
    directly, without a call to ``__init__``.
    """
    if type(items) is not list:
        return None
    if set(map(type, items)) <= {bytes}:
        return items
    decoded: list[frames.MessageIn | bytes] = []
    add = decoded.append
    message_type = frames.MessageIn
    for message in items:
        if type(message) is bytes:
            add(message)
            continue
        if type(message) is not dict:
            return None
        body = message.get("body")
        headers = message.get("headers")
        if type(body) is not bytes or (headers is not None and not is_str_map(headers)):
            return None
        item: Any = _new_message(message_type)
        item.body = body
        item.headers = headers
        add(item)
    return decoded
