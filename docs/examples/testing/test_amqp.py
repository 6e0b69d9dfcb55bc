"""Code written for RabbitMQ under test: the AMQP 0-9-1 port of a threaded broker.

``minibroker_amqp_url`` is an ``amqp://`` URL of a session-wide broker with a
fresh vhost (namespace) for each test; pika, aio-pika, kombu (``pyamqp://``)
and Celery take it as they take a RabbitMQ URL.
"""

from __future__ import annotations

import pika

from minibroker.testing import ThreadedBroker


# --- snippet: pika
def test_orders_are_processed(minibroker_amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("orders", arguments={"x-message-ttl": 60_000})
    channel.basic_publish("", "orders", b"order 1")
    method, _, body = channel.basic_get("orders")
    assert body == b"order 1"
    channel.basic_ack(method.delivery_tag)
    connection.close()
# --- end


# --- snippet: ttl
def test_stale_orders_expire(
    minibroker_amqp_server: ThreadedBroker, minibroker_amqp_url: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()  # the publish is in before the clock moves
    channel.queue_declare("orders", arguments={"x-message-ttl": 60_000})
    channel.basic_publish("", "orders", b"order 1")
    minibroker_amqp_server.advance(61)  # a minute passes, instantly
    assert channel.basic_get("orders") == (None, None, None)
    connection.close()
# --- end
