"""Queue options and statistics: the plain values a queue is declared with and reports.

Kept apart from :mod:`minibroker.core.queues` so the rules for valid options
(and the journal's way of storing them) can be read on their own.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal

from minibroker.core.durations import check_seconds, clamp_seconds
from minibroker.core.names import check_name
from minibroker.errors import BadRequest
from minibroker.value_class import Value, asdict, fields

OverflowPolicy = Literal["reject_publish", "drop_head", "reject_publish_dlx"]

OVERFLOW_POLICIES: Final = ("reject_publish", "drop_head", "reject_publish_dlx")
#: Highest ``max_priority`` (RabbitMQ's limit).
MAX_PRIORITY: Final = 255
#: How long a fetched message stays invisible to other consumers (SQS's default is 30 s too).
DEFAULT_VISIBILITY_TIMEOUT: Final = 30.0
#: Longest visibility timeout and longest nack delay, in seconds (12 hours, as SQS).
MAX_VISIBILITY_TIMEOUT: Final = 12 * 3600.0
#: A fetch's ``visibility_timeout`` meaning "held until acked, nacked or the
#: holder disconnects": no visibility deadline, no timer (AMQP 0-9-1's rule).
UNTIL_SETTLED: Final = math.inf
#: Longest message TTL, in seconds (about 10 years: "practically forever", but finite).
MAX_MESSAGE_TTL: Final = 10 * 365 * 86400.0
#: Largest max_length / max_deliveries a client may ask for.
MAX_COUNT_OPTION: Final = 2**53


class QueueOptions(Value, frozen=True):
    """What a queue is declared with. Two declarations agree iff these are equal."""

    #: Most *ready* messages the queue holds (in-flight and delayed ones do not count).
    max_length: int | None = None
    #: Most body bytes of *ready* messages the queue holds (headers do not count).
    max_length_bytes: int | None = None
    #: What a put does when ``max_length`` or ``max_length_bytes`` is reached.
    overflow: OverflowPolicy = "reject_publish"
    #: Priorities 0 .. max_priority: higher ones are delivered first (None: FIFO only).
    max_priority: int | None = None
    #: Seconds a message may wait in the queue, counted from its publish. 0 is
    #: "now or never": to a consumer waiting when it arrives, else expired at once.
    message_ttl: float | None = None
    #: Seconds a fetched message stays invisible before it is redelivered.
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    #: Deliveries after which an unacked message is dead-lettered instead of requeued.
    max_deliveries: int | None = None
    #: Where expired, rejected, overflowed and over-delivered messages go.
    dead_letter_queue: str | None = None
    #: Journal the queue to disk (only when the broker has a data directory).
    durable: bool = False

    def check(self, queue: str) -> None:
        """Raise BadRequest (or InvalidName) if any option is out of range."""
        if self.max_length is not None:
            _check_count("max_length", self.max_length, minimum=0)
        if self.max_length_bytes is not None:
            _check_count("max_length_bytes", self.max_length_bytes, minimum=0)
        priority = self.max_priority
        if priority is not None and (
            type(priority) is not int or not 0 <= priority <= MAX_PRIORITY
        ):
            raise BadRequest(
                f"max_priority must be an integer from 0 to {MAX_PRIORITY}, got {priority!r}"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise BadRequest(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}"
            )
        if self.message_ttl is not None:
            # 0: "now or never", delivered only to a consumer waiting at once.
            check_seconds("message_ttl", self.message_ttl, MAX_MESSAGE_TTL, allow_zero=True)
        check_seconds("visibility_timeout", self.visibility_timeout, MAX_VISIBILITY_TIMEOUT)
        if self.max_deliveries is not None:
            _check_count("max_deliveries", self.max_deliveries, minimum=1)
        if self.dead_letter_queue is not None:
            check_name("dead-letter queue", self.dead_letter_queue)
            if self.dead_letter_queue == queue:
                raise BadRequest(f"queue {queue!r} cannot be its own dead-letter queue")
        if type(self.durable) is not bool:
            raise BadRequest("durable must be a boolean")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> QueueOptions:
        """Rebuild options stored by :meth:`to_dict` (unknown keys are ignored).

        Durations are clamped into range rather than refused: an older broker
        accepted any positive value, and recovery must not fail over one
        (see :mod:`minibroker.core.durations`).
        """
        known = {name: raw[name] for name in (f.name for f in fields(cls)) if name in raw}
        ttl = known.get("message_ttl")
        if ttl is not None and ttl != 0:
            known["message_ttl"] = clamp_seconds(float(ttl), MAX_MESSAGE_TTL)
        visibility = known.get("visibility_timeout")
        if visibility is not None:
            known["visibility_timeout"] = clamp_seconds(float(visibility), MAX_VISIBILITY_TIMEOUT)
        return cls(**known)


def _check_count(label: str, value: object, *, minimum: int) -> None:
    if type(value) is not int:
        raise BadRequest(f"{label} must be an integer")
    if not minimum <= value <= MAX_COUNT_OPTION:
        raise BadRequest(f"{label} must be between {minimum} and {MAX_COUNT_OPTION}, got {value}")


class QueueStatistics(Value, frozen=True):
    """A snapshot of one queue's depth and lifetime counters (all plain ints).

    Every message a queue ever accepted is in exactly one of these places::

        published == acked + dead_lettered + dropped + purged
                     + ready + in_flight + delayed

    ``expired`` counts the expired messages among ``dead_lettered`` and
    ``dropped``; ``redelivered`` counts the deliveries among ``delivered`` that
    were not a message's first.
    """

    name: str
    durable: bool
    #: Messages waiting to be fetched.
    ready: int
    #: Messages delivered and not yet acked, nacked or timed out.
    in_flight: int
    #: Messages nacked with a delay, waiting to become ready again.
    delayed: int
    #: Connections holding deliveries or waiting in a long-polling fetch.
    consumers: int
    #: Long-polling fetches waiting for messages.
    waiting_fetches: int
    #: Messages accepted by put (and dead-lettered into this queue).
    published: int
    #: Deliveries made (a message delivered three times counts three).
    delivered: int
    redelivered: int
    acked: int
    #: Messages returned to the queue by nack, visibility timeout or disconnect.
    requeued: int
    expired: int
    dead_lettered: int
    dropped: int
    purged: int
    #: Messages refused by a put because of max_length (reject_publish).
    rejected_publishes: int
    #: Journal writes that failed outside a request (see docs/queues.md, durability).
    journal_errors: int
