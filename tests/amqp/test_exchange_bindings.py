"""Exchange-to-exchange bindings (Exchange.Bind / Unbind) through pika."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.amqp.pika_helpers import bodies  # type: ignore[import-not-found]


@pytest.fixture
def ch(minibroker_amqp_url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(minibroker_amqp_url))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def test_a_message_follows_exchange_bindings_by_the_source_type(ch: BlockingChannel) -> None:
    ch.exchange_declare("in", "topic")
    ch.exchange_declare("eu", "direct")
    ch.exchange_declare("all", "fanout")
    ch.exchange_declare("by-kind", "headers")
    for queue in ("eu-orders", "everything", "refunds"):
        ch.queue_declare(queue)
    ch.exchange_bind("eu", "in", "orders.eu.*")
    ch.exchange_bind("all", "in", "#")
    ch.exchange_bind("by-kind", "all")
    ch.queue_bind("eu-orders", "eu", "orders.eu.created")
    ch.queue_bind("everything", "all")
    ch.queue_bind("refunds", "by-kind", arguments={"x-match": "any", "kind": "refund"})
    ch.basic_publish("in", "orders.eu.created", b"1")
    ch.basic_publish("in", "orders.us.created", b"2")
    ch.basic_publish("in", "x", b"3", pika.BasicProperties(headers={"kind": "refund"}))
    assert bodies(ch, "eu-orders") == [b"1"]
    assert bodies(ch, "everything") == [b"1", b"2", b"3"]
    assert bodies(ch, "refunds") == [b"3"]
    ch.exchange_unbind("all", "in", "#")
    ch.basic_publish("in", "orders.eu.created", b"4")
    assert bodies(ch, "everything") == []
    assert bodies(ch, "eu-orders") == [b"4"]


def test_a_queue_reached_on_several_paths_takes_one_copy_and_cycles_end(
    ch: BlockingChannel,
) -> None:
    ch.exchange_declare("a", "fanout")
    ch.exchange_declare("b", "fanout")
    ch.queue_declare("q")
    ch.exchange_bind("b", "a")
    ch.exchange_bind("a", "b")  # a cycle
    ch.queue_bind("q", "a")
    ch.queue_bind("q", "b")
    ch.confirm_delivery()
    ch.basic_publish("a", "", b"once", mandatory=True)
    ch.basic_publish("b", "", b"twice?", mandatory=True)
    assert bodies(ch, "q") == [b"once", b"twice?"]


def test_a_publish_routed_only_through_a_binding_is_not_returned(ch: BlockingChannel) -> None:
    ch.confirm_delivery()
    ch.exchange_declare("src", "direct")
    ch.exchange_declare("dst", "direct")
    ch.queue_declare("q")
    ch.exchange_bind("dst", "src", "k")
    ch.queue_bind("q", "dst", "k")
    ch.basic_publish("src", "k", b"routed", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("src", "other", b"nowhere", mandatory=True)
    assert bodies(ch, "q") == [b"routed"]


def test_deleting_an_exchange_removes_its_bindings_both_ways(ch: BlockingChannel) -> None:
    ch.exchange_declare("src", "fanout")
    ch.exchange_declare("mid", "fanout")
    ch.queue_declare("q")
    ch.exchange_bind("mid", "src")
    ch.queue_bind("q", "mid")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as in_use:
        ch.exchange_delete("src", if_unused=True)
    assert in_use.value.reply_code == 406
    ch = ch.connection.channel()
    ch.exchange_delete("mid")
    ch.exchange_declare("mid", "fanout")
    ch.queue_bind("q", "mid")
    ch.basic_publish("src", "", b"x")
    assert bodies(ch, "q") == []
    ch.exchange_delete("src", if_unused=True)  # no bindings left


def test_auto_delete_exchange_goes_with_its_last_exchange_binding(ch: BlockingChannel) -> None:
    ch.exchange_declare("src", "fanout", auto_delete=True)
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src")
    ch.exchange_unbind("dst", "src")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.exchange_declare("src", "fanout", passive=True)
    assert gone.value.reply_code == 404


@pytest.mark.parametrize(
    ("destination", "source", "code"),
    [("missing", "amq.fanout", 404), ("amq.fanout", "missing", 404), ("", "amq.fanout", 403)],
)
def test_binding_missing_or_default_exchanges_is_refused(
    ch: BlockingChannel, destination: str, source: str, code: int
) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.exchange_bind(destination, source, "k")
    assert refused.value.reply_code == code
