"""x-max-priority and x-max-length-bytes through pika, on minibroker alone.

tests/amqp/test_differential_limits.py compares the same arguments with
RabbitMQ when one is reachable; these run everywhere, and add what a
comparison cannot: a restart on a data directory, consumers with prefetch,
a topic exchange route, and messages whose properties carry a headers table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.amqp.pika_helpers import bodies  # type: ignore[import-not-found]
from tests.amqp.test_durability import broker_on, channel_of  # type: ignore[import-not-found]


@pytest.fixture
def channel(minibroker_amqp_url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _publish(
    ch: BlockingChannel, queue: str, body: bytes, priority: int | None, **props: Any
) -> None:
    ch.basic_publish("", queue, body, pika.BasicProperties(priority=priority, **props))


def test_a_consumer_gets_higher_priorities_first(channel: BlockingChannel) -> None:
    ch = channel
    ch.queue_declare("jobs", arguments={"x-max-priority": 10})
    for body, priority in ((b"low", 1), (b"plain", None), (b"high", 10), (b"mid", 5)):
        _publish(ch, "jobs", body, priority, headers={"k": "v"})  # the slow decode path too
    got: list[tuple[bytes, int | None]] = []
    ch.basic_qos(prefetch_count=1)

    def on_message(c: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
        got.append((body, props.priority))
        if len(got) == 2:
            _publish(ch, "jobs", b"urgent", 9)  # overtakes what is still ready
        c.basic_ack(method.delivery_tag)

    ch.basic_consume("jobs", on_message)
    while len(got) < 5:
        ch.connection.process_data_events(time_limit=0.1)
    assert got == [
        (b"high", 10),
        (b"mid", 5),
        (b"urgent", 9),
        (b"low", 1),
        (b"plain", None),
    ]


def test_priorities_through_a_topic_exchange(channel: BlockingChannel) -> None:
    ch = channel
    ch.queue_declare("events", arguments={"x-max-priority": 3})
    ch.queue_bind("events", "amq.topic", "orders.#")
    for body, priority in ((b"a", 0), (b"b", 3), (b"c", 2)):
        ch.basic_publish("amq.topic", "orders.new", body, pika.BasicProperties(priority=priority))
    assert bodies(ch, "events") == [b"b", b"c", b"a"]


def test_a_byte_limit_nacks_confirmed_publishes_and_dead_letters_with_dlx(
    channel: BlockingChannel,
) -> None:
    ch = channel
    ch.confirm_delivery()
    ch.queue_declare("dead")
    ch.queue_declare(
        "small",
        arguments={
            "x-max-length-bytes": 8,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dead",
        },
    )
    ch.basic_publish("", "small", b"12345678")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "small", b"9")
    assert bodies(ch, "small") == [b"12345678"]
    _, props, body = ch.basic_get("dead", auto_ack=True)
    assert body == b"9" and props.headers["x-death"][0]["reason"] == "maxlen"


def test_priorities_and_byte_limits_survive_a_restart(tmp_path: Path) -> None:
    arguments = {"x-max-priority": 9, "x-max-length-bytes": 20, "x-overflow": "reject-publish"}
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.confirm_delivery()
        ch.queue_declare("durable-jobs", durable=True, arguments=arguments)
        for body, priority in ((b"first", None), (b"second", 9), (b"third", 4)):
            props = pika.BasicProperties(priority=priority, delivery_mode=2)
            ch.basic_publish("", "durable-jobs", body, props)
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.confirm_delivery()
        declared = ch.queue_declare("durable-jobs", durable=True, arguments=arguments)
        assert declared.method.message_count == 3
        with pytest.raises(pika.exceptions.NackError):
            ch.basic_publish("", "durable-jobs", b"x" * 5)  # 16 bytes ready, limit 20
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.queue_declare("durable-jobs", durable=True, arguments={"x-max-priority": 8})
        assert refused.value.reply_code == 406
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        assert bodies(ch, "durable-jobs") == [b"second", b"third", b"first"]


def test_x_max_priority_above_255_is_refused(channel: BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare("too-many", arguments={"x-max-priority": 256})
    assert refused.value.reply_code == 406
    assert "x-max-priority" in refused.value.reply_text
