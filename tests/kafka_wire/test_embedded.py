"""``open_broker(kafka=True)``: an embedded broker with a Kafka port, in a Trio test."""

from __future__ import annotations

import pytest
import trio

import minibroker


async def test_an_embedded_broker_takes_kafka_producers_beside_its_own_clients() -> None:
    async with minibroker.open_broker(kafka=True) as broker, broker.connect() as client:

        def produce() -> None:
            from confluent_kafka import Producer

            producer = Producer({"bootstrap.servers": broker.kafka_bootstrap})
            producer.produce("events", b"from kafka", key=b"k")
            assert producer.flush(20) == 0

        await trio.to_thread.run_sync(produce)
        [record] = await client.read("events-0")
        assert (record.offset, record.key, record.body) == (0, b"k", b"from kafka")


async def test_without_kafka_there_is_no_bootstrap() -> None:
    async with minibroker.open_broker() as broker:
        with pytest.raises(RuntimeError, match="kafka=True"):
            _ = broker.kafka_bootstrap
