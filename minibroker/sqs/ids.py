"""Message and request ids: UUID-shaped, unique, and cheap.

SQS gives every message and every answer a UUID. ``uuid.uuid4()`` costs a
system call's worth of random bytes per id, a noticeable share of a one-
message SendMessage; these ids are a random 64-bit prefix drawn once per
process followed by a counter, in the 8-4-4-4-12 hex form clients expect.
They are unique within a broker run, and a restart draws a new prefix.
"""

from __future__ import annotations

import itertools
import secrets


class IdSource:
    """UUID-formatted ids: a random prefix and a counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        raw = secrets.token_hex(10)  # 80 random bits: 8-4-4 and the 4 of the fourth group
        self._prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{raw[16:20]}-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


#: The process-wide source of message ids and request ids.
IDS = IdSource()


def new_id() -> str:
    return IDS.next()
