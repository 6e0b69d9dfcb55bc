"""Where requeued messages go back, against RabbitMQ: to their place in publication order.

RabbitMQ holds a queue's messages in publication order "even in the presence
of requeueing or channel closure": messages rejected or nacked with requeue
one at a time, in any order, come back in the order they were published, and
so do those a basic.recover or a closed channel returns after others. minibroker
used to put each requeue at the front of the queue, so separate requeues came
back latest first; the core now merges each return, by publish order, into
the messages returned before (``minibroker.core.ready.return_in_order``).
RabbitMQ is the one on 127.0.0.1:5672; the tests are skipped, saying so, when
it is not there (tests/amqp/test_pika_requeue_order.py checks minibroker alone).
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
import pytest
from test_differential_rabbitmq import RABBITMQ, _rabbitmq_reachable


def _requeues(params: pika.ConnectionParameters) -> list[Any]:
    seen: list[Any] = []
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        queue = ch.queue_declare(f"requeue-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
        for i in range(6):
            ch.basic_publish("", queue, b"m%d" % i)
        got = [ch.basic_get(queue) for _ in range(6)]
        tags = [method.delivery_tag for method, _, _ in got]
        ch.basic_reject(tags[3], requeue=True)
        ch.basic_reject(tags[1], requeue=True)
        ch.basic_nack(tags[4], requeue=True)
        ch.basic_nack(tags[2], multiple=True, requeue=True)  # m0 and m2
        ch.basic_ack(tags[5])
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            seen.append((body, method.redelivered))
    finally:
        connection.close()
    return seen


def _recover_and_close(params: pika.ConnectionParameters) -> list[Any]:
    """Returns by basic.recover and by closing channels, after other returns."""
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        queue = ch.queue_declare(f"returns-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
        for i in range(6):
            ch.basic_publish("", queue, b"m%d" % i)
        got = [ch.basic_get(queue) for _ in range(3)]  # m0 .. m2
        ch.basic_reject(got[2][0].delivery_tag, requeue=True)  # m2
        ch.basic_recover(requeue=True)  # m0, m1
        first = _drain(ch, queue, 3)  # m0 .. m2 again, kept unacked
        other = connection.channel()
        held = [other.basic_get(queue) for _ in range(3)]  # m3 .. m5
        other.basic_reject(held[1][0].delivery_tag, requeue=True)  # m4
        other.close()  # m3, m5
        ch.close()  # m0 .. m2
        last = connection.channel()
        return [first, _drain(last, queue, 10)]
    finally:
        connection.close()


def _drain(ch: Any, queue: str, most: int) -> list[Any]:
    seen = []
    for _ in range(most):
        method, _, body = ch.basic_get(queue)
        if method is None:
            break
        seen.append((body, method.redelivered))
    return seen


def _rabbitmq() -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        *RABBITMQ, credentials=pika.PlainCredentials("guest", "guest")
    )


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="RabbitMQ is not on 127.0.0.1:5672")
def test_requeued_messages_come_back_in_publication_order(minibroker_amqp_url: str) -> None:
    theirs = _requeues(_rabbitmq())
    assert theirs == [(b"m%d" % i, True) for i in range(5)]  # what RabbitMQ does
    assert _requeues(pika.URLParameters(minibroker_amqp_url)) == theirs


@pytest.mark.skipif(not _rabbitmq_reachable(), reason="RabbitMQ is not on 127.0.0.1:5672")
def test_recovered_and_closed_channels_returns_go_back_in_publication_order(
    minibroker_amqp_url: str,
) -> None:
    theirs = _recover_and_close(_rabbitmq())
    assert theirs == [  # what RabbitMQ does
        [(b"m0", True), (b"m1", True), (b"m2", True)],
        [(b"m%d" % i, True) for i in range(6)],
    ]
    assert _recover_and_close(pika.URLParameters(minibroker_amqp_url)) == theirs
