"""FIFO queues: message groups (in the queue core) and the deduplication window (here).

A FIFO queue is a core queue whose messages carry a *group* (MessageGroupId,
``Queue.put(..., group=)``): the core delivers a group's messages in order
and never while another of them is in flight. What SQS adds on top lives in
the front end: every message gets a sequence number, and a message whose
deduplication id was seen in the last five minutes is not stored again (the
send succeeds and answers the first message's id and sequence number).
The window runs on the broker's clock (``now``), so MockClock and
``advance()`` move it.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

#: Seconds a deduplication id is remembered (SQS: five minutes).
DEDUPLICATION_WINDOW: Final = 300.0
GROUP_HEADER: Final = "x-sqs-group"
DEDUPLICATION_HEADER: Final = "x-sqs-deduplication-id"
SEQUENCE_HEADER: Final = "x-sqs-sequence"
_ID = re.compile(r"^[!-~]{1,128}$")  # printable ASCII, as SQS allows


def check_id(value: object) -> str | None:
    """A MessageGroupId or MessageDeduplicationId, if well formed."""
    if isinstance(value, str) and _ID.match(value):
        return value
    return None


def content_deduplication_id(body: str) -> str:
    """ContentBasedDeduplication: the SHA-256 of the body (attributes not included)."""
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Sent:
    """What a deduplicated send answers: the first message's id and sequence number."""

    message_id: str
    sequence_number: str


@dataclass(slots=True)
class Deduplicator:
    """Deduplication ids seen in the last ``DEDUPLICATION_WINDOW`` seconds, per queue.

    Entries expire in the order they were made (one deque), so looking up
    and forgetting are O(1) amortized; memory is bounded by the sends of
    five minutes.
    """

    _seen: dict[str, tuple[float, Sent]] = field(default_factory=dict)
    _expiries: deque[tuple[float, str]] = field(default_factory=deque)
    _sequence: int = 0

    def find(self, key: str, now: float) -> Sent | None:
        self._forget(now)
        entry = self._seen.get(key)
        return entry[1] if entry is not None else None

    def next_sequence_number(self, wall_ms: int) -> str:
        """The next sequence number: above the last one and above ``wall_ms``
        times a million, so numbers keep increasing across a restart (the
        counter is not persisted) as long as the wall clock does."""
        self._sequence = max(self._sequence + 1, wall_ms * 1_000_000)
        return f"{self._sequence:020d}"

    def remember(self, key: str, now: float, sent: Sent) -> None:
        until = now + DEDUPLICATION_WINDOW
        self._seen[key] = (until, sent)
        self._expiries.append((until, key))

    def _forget(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, key = expiries.popleft()
            entry = self._seen.get(key)
            if entry is not None and entry[0] <= now:
                del self._seen[key]
