"""Kafka client code under test: confluent-kafka against minibroker's Kafka port.

The ``minibroker_kafka_bootstrap`` fixture gives the session's threaded broker
Kafka address and a client id that selects this test's own namespace, so
topics and consumer groups never collide between tests (docs/kafka.md).
These files are the snippets of docs/testing.md; tests/docs runs them.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Producer

from minibroker.testing import KafkaBootstrap


# --- snippet: kafka
def test_orders_are_consumed_in_order(minibroker_kafka_bootstrap: KafkaBootstrap) -> None:
    kafka = minibroker_kafka_bootstrap
    producer = Producer(kafka.confluent())
    for n in range(3):
        producer.produce("orders", f"order-{n}".encode(), key=b"customer-1")
    assert producer.flush(10) == 0

    consumer = Consumer(kafka.confluent(**{"group.id": "billing", "auto.offset.reset": "earliest"}))
    consumer.subscribe(["orders"])
    values = []
    while len(values) < 3:
        message = consumer.poll(10)
        assert message is not None and message.error() is None
        values.append(message.value())
    consumer.close()
    assert values == [b"order-0", b"order-1", b"order-2"]
# --- end
