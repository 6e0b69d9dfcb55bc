"""``x-message-ttl: 0``, run through pika against minibroker and against RabbitMQ.

RabbitMQ's rule: a message on a queue with a zero TTL expires on reaching
the queue unless a consumer can take it at once, and is dead-lettered then
(reason ``expired``). As in test_differential_rabbitmq.py, RabbitMQ is the
one on 127.0.0.1:5672, and the test is skipped, saying so, when it is not there.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
from test_differential_rabbitmq import compare_with_rabbitmq

#: The most a wait for what must happen takes: reached only by a broken
#: broker, never a pace (CI's machine runs at load 8 and more).
WAIT = 30.0


def _dead_letters(ch: Any, queue: str, count: int) -> list[Any]:
    """The next ``count`` dead letters (RabbitMQ moves them asynchronously: wait for them)."""
    found: list[Any] = []
    deadline = time.monotonic() + WAIT
    while len(found) < count and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.01)
            continue
        death = (props.headers or {}).get("x-death") or [{}]
        found.append(("dead", body, death[0].get("reason")))
    return found


def ttl_zero_scenario(params: pika.ConnectionParameters) -> list[Any]:
    seen: list[Any] = []
    suffix = uuid.uuid4().hex[:8]
    queue, dead = f"diff-ttl0-{suffix}", f"diff-ttl0-dead-{suffix}"
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()
        ch.queue_declare(dead, exclusive=True)
        ch.queue_declare(
            queue,
            exclusive=True,
            arguments={
                "x-message-ttl": 0,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
            },
        )
        # Nobody consumes: gone on arrival, even for a get right after the confirm.
        ch.basic_publish("", queue, b"unclaimed")
        method, _, body = ch.basic_get(queue, auto_ack=True)
        seen.append(("get", None if method is None else body))
        seen.extend(_dead_letters(ch, dead, 1))
        # A consumer with credit for one: it gets the first, the second expires.
        delivered: list[Any] = []
        ch.basic_qos(prefetch_count=1)
        tag = ch.basic_consume(
            queue, lambda c, m, p, b: delivered.append((b, m.redelivered, m.delivery_tag))
        )
        ch.basic_publish("", queue, b"taken")
        ch.basic_publish("", queue, b"no credit")
        deadline = time.monotonic() + WAIT
        while not delivered and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
        seen.extend(("delivered", *d) for d in delivered)
        seen.extend(_dead_letters(ch, dead, 1))
        ch.basic_ack(delivered[0][2])
        ch.basic_cancel(tag)
        seen.append(("left", ch.queue_declare(queue, passive=True).method.message_count))
        ch.queue_delete(queue)
        ch.queue_delete(dead)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_a_zero_queue_ttl_looks_the_same_from_minibroker_and_rabbitmq(
    minibroker_amqp_url: str,
) -> None:
    compare_with_rabbitmq(ttl_zero_scenario, minibroker_amqp_url)
