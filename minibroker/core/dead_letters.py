"""What a dead letter carries, and the rule that ends dead-letter cycles.

A message that leaves a queue without an ack (expired, rejected, over its
deliveries, pushed out by ``drop_head``) becomes a *dead letter* in the
queue's dead-letter queue, with headers saying what happened
(:func:`dead_letter_headers`).

Queues may dead-letter into each other: A -> B -> A. Nothing forbids it,
because one such cycle is a well-known pattern: a work queue whose rejected
messages go to a "retry" queue with a TTL, which dead-letters them back when
the TTL runs out (delayed retries, driven by a consumer's decision each time).
A cycle that needs no decision at all, though (A and B both expiring into
each other), would bounce a message forever. RabbitMQ's rule tells the two
apart, and minibroker follows it: **a message is dropped instead of being
dead-lettered into a queue it was already dead-lettered from, unless it was
rejected by a consumer in between.** So with A <-> B and TTLs, a message
goes from A to B once, and is dropped when it expires in B.

The rule holds on both roads a dead letter can take: to a queue's
``dead_letter_queue`` (:meth:`Queue._dead_letter` filters with
:func:`would_cycle`), and through a front end's routing (AMQP's
x-dead-letter-exchange, which may reach several queues): while the front
end routes it, the queues on its :func:`death_path` are barred, and a
``put`` into one of them stores nothing. A dead letter that no queue took
is dropped by its source queue (counted in ``dropped``).

The broker remembers where a message died in two headers, so the rule holds
across restarts of a durable queue, and a consumer can read them:

* ``x-death-hops``: how many times the message has been dead-lettered, ever
  (RabbitMQ counts the same in its ``x-death`` entries);
* ``x-death-path``: the queues it died in, oldest first and separated by
  spaces (queue names hold no whitespace), since its last rejection. A
  rejection empties it. An AMQP dead letter carries it too, beside its
  ``x-death`` table (from which it can be read again: minibroker/amqp/deaths.py).
"""

from __future__ import annotations

from typing import Final

from minibroker.core.sizes import headers_size

DEATH_REASON: Final = "x-death-reason"
DEATH_QUEUE: Final = "x-death-queue"
DEATH_COUNT: Final = "x-death-count"
DEATH_HOPS: Final = "x-death-hops"
DEATH_PATH: Final = "x-death-path"

#: The one reason that is a consumer's decision; it breaks a cycle.
REJECTED: Final = "rejected"
#: The longest reason, and the widest counts, for :func:`added_bytes_bound`.
_LONGEST_REASON: Final = "max_deliveries"
_WIDEST_COUNT: Final = "9" * 20


def death_path(headers: dict[str, str] | None, reason: str, source: str) -> list[str]:
    """The queues a message dying in ``source`` for ``reason`` has died in since its last
    rejection, this death included; empty when this death is a rejection."""
    if reason == REJECTED:
        return []
    earlier = headers.get(DEATH_PATH) if headers else None
    path = earlier.split() if earlier else []
    path.append(source)
    return path


def would_cycle(headers: dict[str, str] | None, reason: str, source: str, target: str) -> bool:
    """True when dead-lettering into ``target`` would close a cycle with no rejection in it."""
    return target in death_path(headers, reason, source)


def dead_letter_headers(
    headers: dict[str, str] | None, reason: str, source: str, delivery_count: int
) -> dict[str, str]:
    """The headers of the dead letter of a message (its own headers are kept)."""
    out = dict(headers) if headers else {}
    hops = out.get(DEATH_HOPS, "0")
    out[DEATH_REASON] = reason
    out[DEATH_QUEUE] = source
    out[DEATH_COUNT] = str(delivery_count)
    out[DEATH_HOPS] = str(int(hops) + 1 if hops.isdecimal() and len(hops) < 19 else 1)
    path = death_path(headers, reason, source)
    if path:
        out[DEATH_PATH] = " ".join(path)
    else:
        out.pop(DEATH_PATH, None)
    return out


def added_bytes_bound(source: str) -> int:
    """Most bytes one dead-lettering out of ``source`` adds to a message's headers.

    Counted as :func:`~minibroker.core.sizes.headers_size` counts them, so a
    queue can refuse at ``put`` a message whose dead letter would not fit
    one delivery. (The path only grows by ``source`` and a space.)
    """
    added = {
        DEATH_REASON: _LONGEST_REASON,
        DEATH_QUEUE: source,
        DEATH_COUNT: _WIDEST_COUNT,
        DEATH_HOPS: _WIDEST_COUNT,
        DEATH_PATH: source,
    }
    return headers_size(added) + 1
