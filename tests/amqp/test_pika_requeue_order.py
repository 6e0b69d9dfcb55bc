"""Requeued messages go back to their place in publication order (pika, minibroker alone).

As RabbitMQ: "a requeued message is placed back at its original position in
the queue if possible". basic.reject, basic.nack, basic.recover and a closed
channel each return messages; returned one at a time, in any order, they
used to come back latest first (each went to the very front). The
differential test (test_differential_requeue_order.py) compares the same
with RabbitMQ when it runs; these cover a durable queue and a consumer.
"""

from __future__ import annotations

import uuid

import pika
from pika_helpers import bodies


def test_a_durable_queue_redelivers_rejects_in_publication_order(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    queue = f"durable-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(queue, durable=True)
    persistent = pika.BasicProperties(delivery_mode=2)
    for i in range(5):
        ch.basic_publish("", queue, b"m%d" % i, persistent)
    tags = [ch.basic_get(queue)[0].delivery_tag for _ in range(4)]  # m0 .. m3
    ch.basic_reject(tags[1], requeue=True)
    ch.basic_reject(tags[3], requeue=True)
    ch.basic_nack(tags[0], requeue=True)
    ch.basic_ack(tags[2])
    assert bodies(ch, queue) == [b"m0", b"m1", b"m3", b"m4"]  # was m0, m3, m1, m4
    ch.queue_delete(queue)


def test_a_consumers_rejects_and_its_closed_channel_return_in_publication_order(
    connection: pika.BlockingConnection,
) -> None:
    ch = connection.channel()
    queue = f"consumed-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(queue)
    for i in range(5):
        ch.basic_publish("", queue, b"m%d" % i)
    ch.basic_qos(prefetch_count=3)
    tags: dict[bytes, int] = {}
    tag = ch.basic_consume(
        queue, lambda _ch, method, _p, body: tags.update({body: method.delivery_tag})
    )
    while len(tags) < 3:
        connection.process_data_events(time_limit=0.05)
    ch.basic_cancel(tag)  # the three stay unacked with the channel
    assert sorted(tags) == [b"m0", b"m1", b"m2"]
    ch.basic_reject(tags[b"m2"], requeue=True)
    ch.basic_reject(tags[b"m0"], requeue=True)
    ch.close()  # m1
    other = connection.channel()
    assert bodies(other, queue) == [b"m0", b"m1", b"m2", b"m3", b"m4"]  # was m1, m0, m2, ...
    other.queue_delete(queue)
