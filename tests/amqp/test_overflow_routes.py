"""A full ``reject-publish`` queue refuses a publish whichever exchange routed it there.

RabbitMQ nacks a publish (in confirm mode) that any queue it was routed to
refused for being full, through every exchange type and the default one;
such a publish *was* routed, so a mandatory one is not returned. Dead letters
refused by a full ``reject-publish-dlx`` dead-letter queue die there too and go
on to that queue's own dead-letter exchange. (test_differential_limits.py runs
the same against RabbitMQ.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

FULL = {"x-max-length": 1, "x-overflow": "reject-publish"}


@pytest.fixture
def channel(minibroker_amqp_url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _bind(ch: Any, kind: str, queue: str) -> str:
    """Bind ``queue`` to an exchange of ``kind`` (``default``: the default exchange) for key k."""
    if kind == "default":
        return ""
    ch.exchange_declare(kind, kind)
    ch.queue_bind(queue, kind, "k", arguments={"x-match": "any", "h": 1})
    return kind


@pytest.mark.parametrize("kind", ["default", "direct", "fanout", "topic", "headers"])
def test_a_publish_a_full_queue_refuses_is_nacked_through_every_exchange(
    channel: Any, kind: str
) -> None:
    ch = channel
    ch.confirm_delivery()
    ch.queue_declare("full", arguments=FULL)
    ch.queue_declare("other")
    exchange = _bind(ch, kind, "full")
    key = "full" if kind == "default" else "k"
    if kind != "default":
        ch.queue_bind("other", exchange, "k", arguments={"x-match": "any", "h": 1})
    props = pika.BasicProperties(headers={"h": 1})
    ch.basic_publish(exchange, key, b"fits", props)
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(exchange, key, b"refused", props, mandatory=True)
    assert ch.basic_get("full", auto_ack=True)[2] == b"fits"
    assert ch.basic_get("full", auto_ack=True)[0] is None
    if kind != "default":  # the other queue took both
        assert [ch.basic_get("other", auto_ack=True)[2] for _ in range(2)] == [b"fits", b"refused"]


@pytest.mark.parametrize("kind", ["default", "topic", "fanout"])
def test_a_mandatory_publish_a_full_queue_refuses_is_not_returned(channel: Any, kind: str) -> None:
    ch = channel
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda _ch, _method, _props, body: returned.append(body))
    ch.queue_declare("full", arguments=FULL)
    exchange = _bind(ch, kind, "full")
    key = "full" if kind == "default" else "k"
    ch.basic_publish(exchange, key, b"fits")
    ch.basic_publish(exchange, key, b"refused", mandatory=True)
    ch.basic_publish("", "nowhere", b"unroutable", mandatory=True)
    ch.queue_declare("full", passive=True)  # a round trip: any return came before its answer
    ch.connection.process_data_events(0)
    assert returned == [b"unroutable"]


def test_a_topic_publish_to_a_full_reject_publish_dlx_queue_is_nacked_and_dead_lettered(
    channel: Any,
) -> None:
    ch = channel
    ch.confirm_delivery()
    ch.queue_declare("dead")
    ch.queue_declare(
        "full",
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dead",
        },
    )
    ch.exchange_declare("t", "topic")
    ch.queue_bind("full", "t", "orders.*")
    ch.basic_publish("t", "orders.a", b"fits")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("t", "orders.b", b"refused")
    _, props, body = ch.basic_get("dead", auto_ack=True)
    assert body == b"refused"
    [death] = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["exchange"]) == ("maxlen", "full", "t")


def test_dead_letters_a_full_reject_publish_dlx_queue_refuses_go_on_to_its_dlx(
    channel: Any,
) -> None:
    ch = channel
    ch.queue_declare("last")
    ch.queue_declare(
        "dlq",
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "last",
        },
    )
    ch.exchange_declare("dlx", "topic")
    ch.queue_bind("dlq", "dlx", "#")
    ch.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "dlq", b"filler")
    ch.basic_publish("", "work", b"job")
    method, _, _ = ch.basic_get("work")
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, body = ch.basic_get("last", auto_ack=True)
    assert body == b"job"
    deaths = [(d["reason"], d["queue"]) for d in props.headers["x-death"]]
    assert deaths == [("maxlen", "dlq"), ("rejected", "work")]
    assert ch.basic_get("dlq", auto_ack=True)[2] == b"filler"
