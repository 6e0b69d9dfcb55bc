"""Small pika helpers shared by the AMQP tests that run through a real client."""

from __future__ import annotations

from pika.adapters.blocking_connection import BlockingChannel


def bodies(ch: BlockingChannel, queue: str) -> list[bytes]:
    """Every message ready in ``queue``, taken with basic.get (auto-ack), in order."""
    found = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return found
        found.append(body)
