"""kombu (py-amqp transport) against minibroker's AMQP port."""

from __future__ import annotations

import kombu
import pytest
from kombu import Consumer, Exchange, Producer, Queue

#: The most a wait for a message that is there takes: reached only by a broken
#: broker, never a pace (CI's machine runs at load 8 and more).
WAIT = 30


@pytest.fixture
def connection(minibroker_amqp_url: str):  # type: ignore[no-untyped-def]
    with kombu.Connection(minibroker_amqp_url.replace("amqp://", "pyamqp://")) as conn:
        conn.connect()
        yield conn


def test_producer_and_consumer_through_a_direct_exchange(connection: kombu.Connection) -> None:
    exchange = Exchange("tasks", type="direct", durable=True)
    queue = Queue("tasks.high", exchange, routing_key="high")
    producer = Producer(connection.channel(), exchange=exchange)
    for i in range(3):
        # kombu redeclares exchange, queue and binding before each publish, as in Celery.
        producer.publish({"n": i}, routing_key="high", declare=[queue], serializer="json")
    got: list[int] = []

    def on_message(body: dict[str, int], message: kombu.Message) -> None:
        got.append(body["n"])
        message.ack()

    with Consumer(connection.channel(), [queue], callbacks=[on_message], prefetch_count=1):
        while len(got) < 3:
            connection.drain_events(timeout=WAIT)
    assert got == [0, 1, 2]


def test_simple_queue_get_put_and_requeue(connection: kombu.Connection) -> None:
    with connection.SimpleQueue("simple") as q:
        q.put({"hello": "world"})
        first = q.get(timeout=WAIT)
        assert first.payload == {"hello": "world"}
        assert first.properties.get("content_encoding") == "utf-8"
        first.requeue()
        again = q.get(timeout=WAIT)
        assert again.payload == {"hello": "world"} and again.delivery_info["redelivered"]
        again.ack()
        with pytest.raises(q.Empty):
            q.get(timeout=0.2)


def test_confirm_publish_and_amqplain_login(minibroker_amqp_url: str) -> None:
    url = minibroker_amqp_url.replace("amqp://", "pyamqp://")
    with kombu.Connection(
        url, login_method="AMQPLAIN", transport_options={"confirm_publish": True}
    ) as conn:
        queue = Queue("confirmed")
        Producer(conn.channel()).publish(b"x", routing_key="confirmed", declare=[queue])
        with conn.SimpleQueue(queue) as q:
            assert q.get(timeout=WAIT).body == b"x"
