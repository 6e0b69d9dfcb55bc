"""The one rule for message bodies in the Python clients: bytes, never str.

Bodies are opaque bytes on the wire and come back as ``bytes`` from every
fetch, read, subscription and reply. Accepting a ``str`` on the way in would
make ``put("q", "hi")`` look fine until ``delivery.body == "hi"`` quietly
compares ``b"hi"`` with ``"hi"`` and fails, so every method that takes a
body or a record key (``put``, ``put_many``, ``publish``, ``publish_many``,
``append``, ``append_many``, ``request``, ``reply``) refuses a ``str`` with
the same ``TypeError`` and says what to do. ``bytearray`` and ``memoryview``
are accepted and copied to ``bytes``.
"""

from __future__ import annotations

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
