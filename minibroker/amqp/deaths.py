"""The ``x-death`` header, as RabbitMQ writes and reads it.

A dead letter carries the story of its deaths in ``x-death``: a list of
tables, one per (queue, reason), the most recent first. Each has the
``queue`` and ``reason``, a ``count`` of how many times the message died
there for that reason, and, from the first of those deaths, its ``time``,
the ``exchange`` and ``routing-keys`` it had been published with, and its
``original-expiration`` when it had one. A repeated death counts up its
entry and moves it to the front (RabbitMQ does the same).

The core ends dead-letter cycles with the message's *death path*, the
queues it died in since it was last rejected (see
:mod:`minibroker.core.dead_letters`). That path can be read from
``x-death`` too (:func:`x_death_path`): a message a client republishes with
the headers of a dead letter keeps its history, as in RabbitMQ, which reads
only ``x-death``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

DEATHS: Final = "x-death"

#: The one reason that is a consumer's decision (a cycle with one goes on).
_REJECTED: Final = "rejected"


def record_death(
    deaths: object,
    queue: str,
    reason: str,
    exchange: str,
    routing_keys: list[str],
    wall_ms: int,
    expiration: str | None,
) -> list[object]:
    """``deaths`` (a message's ``x-death``, or anything else: None, a client's
    garbage) with this death recorded at the front."""
    earlier = list(deaths) if isinstance(deaths, list) else []
    for index, entry in enumerate(earlier):
        if (
            isinstance(entry, dict)
            and entry.get("queue") == queue
            and entry.get("reason") == reason
        ):
            count = entry.get("count")
            updated = dict(entry)
            updated["count"] = count + 1 if type(count) is int else 1
            del earlier[index]
            return [updated, *earlier]
    entry = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "time": datetime.fromtimestamp(wall_ms // 1000, UTC),
        "exchange": exchange,
        "routing-keys": routing_keys,
    }
    if expiration is not None:
        entry["original-expiration"] = expiration
    return [entry, *earlier]


def x_death_path(deaths: object) -> list[str]:
    """The queues ``x-death`` says a message died in since it was last
    rejected, oldest first (the core's ``x-death-path``).

    RabbitMQ's reading: from the most recent entry back, up to the first
    rejection; an entry that is not a table stops it too (a client wrote
    it, so the history is not the broker's own).
    """
    if not isinstance(deaths, list):
        return []
    path: list[str] = []
    for entry in deaths:
        if not isinstance(entry, dict) or entry.get("reason") == _REJECTED:
            break
        queue = entry.get("queue")
        if isinstance(queue, str) and queue and not any(c.isspace() for c in queue):
            path.append(queue)
    path.reverse()
    return path
