"""What survives a restart on a data directory, seen through pika.

Each test starts a broker on ``tmp_path``, declares, stops it, starts a new
one on the same directory and checks what a client then observes. As in
RabbitMQ, durable exchanges and the bindings between durable objects come
back, and a durable queue keeps the arguments it was declared with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from minibroker.config import ServerConfig
from minibroker.testing import ThreadedBroker, run_in_thread
from tests.amqp.pika_helpers import bodies  # type: ignore[import-not-found]

DLX_ARGS = {
    "x-dead-letter-exchange": "dlx",
    "x-dead-letter-routing-key": "died",
    "x-message-ttl": 60_000,
    "x-max-length": 3,
    "x-overflow": "reject-publish",
    "x-expires": 3_600_000,
}


@contextmanager
def broker_on(data_dir: Path) -> Iterator[ThreadedBroker]:
    with run_in_thread(ServerConfig(port=0, amqp_port=0, data_dir=data_dir)) as broker:
        yield broker


@contextmanager
def channel_of(broker: ThreadedBroker) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def test_exchanges_bindings_and_queue_arguments_survive_a_restart(tmp_path: Path) -> None:
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        for name, kind in (("orders", "direct"), ("events", "fanout"), ("match", "headers")):
            ch.exchange_declare(name, kind, durable=True)
        ch.exchange_declare("dlx", "fanout", durable=True)
        ch.exchange_declare("front", "topic", durable=True)
        ch.exchange_declare("passing", "direct", durable=False)
        ch.queue_declare("work", durable=True, arguments=DLX_ARGS)
        ch.queue_declare("dead", durable=True)
        ch.queue_bind("work", "orders", "new")
        ch.queue_bind("work", "events")
        ch.queue_bind("work", "match", arguments={"x-match": "all", "kind": "a"})
        ch.queue_bind("work", "amq.direct", "legacy")
        ch.queue_bind("dead", "dlx")
        ch.exchange_bind("orders", "front", "new.#")
        ch.basic_publish("orders", "new", b"kept", pika.BasicProperties(delivery_mode=2))

    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        for name, kind in (("orders", "direct"), ("events", "fanout"), ("match", "headers")):
            ch.exchange_declare(name, kind, passive=True)
            ch.exchange_declare(name, kind, durable=True)  # equivalent: no error
        assert ch.queue_declare("work", durable=True, arguments=DLX_ARGS).method.message_count == 1
        assert bodies(ch, "work") == [b"kept"]
        ch.basic_publish("orders", "new", b"direct")
        ch.basic_publish("events", "", b"fanout")
        ch.basic_publish("match", "", b"headers", pika.BasicProperties(headers={"kind": "a"}))
        ch.basic_publish("amq.direct", "legacy", b"amq.direct")
        assert bodies(ch, "work") == [b"direct", b"fanout", b"headers"]  # x-max-length 3
        ch.basic_publish("front", "new", b"through front")
        method, _, _ = ch.basic_get("work")
        ch.basic_reject(method.delivery_tag, requeue=False)  # to dlx, then dead
        method, properties, body = ch.basic_get("dead", auto_ack=True)
        assert (body, method.routing_key) == (b"through front", "died")
        assert properties.headers["x-death"][0]["reason"] == "rejected"
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.queue_declare("work", durable=True, arguments={**DLX_ARGS, "x-max-length": 4})
        assert refused.value.reply_code == 406  # the kept arguments are compared


def test_non_durable_exchanges_and_their_bindings_do_not_survive(tmp_path: Path) -> None:
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.exchange_declare("passing", "direct", durable=False)
        ch.exchange_declare("kept", "direct", durable=True)
        ch.queue_declare("transient", durable=False)
        ch.queue_declare("q", durable=True)
        ch.queue_bind("q", "passing", "k")
        ch.queue_bind("transient", "kept", "k")
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            ch.exchange_declare("passing", "direct", passive=True)
        assert gone.value.reply_code == 404
        ch = ch.connection.channel()
        ch.exchange_declare("passing", "direct")
        ch.basic_publish("passing", "k", b"x")  # the old binding is gone with its exchange
        assert ch.queue_declare("q", passive=True).method.message_count == 0


def test_deleted_objects_stay_deleted_after_a_restart(tmp_path: Path) -> None:
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.exchange_declare("a", "fanout", durable=True)
        ch.exchange_declare("b", "fanout", durable=True)
        ch.queue_declare("q", durable=True, arguments={"x-message-ttl": 1000})
        ch.queue_declare("other", durable=True)
        ch.queue_bind("q", "a")
        ch.queue_bind("other", "b")
        ch.exchange_bind("b", "a")
        ch.queue_unbind("other", "b")
        ch.exchange_delete("b")
        ch.queue_delete("q")
        ch.queue_declare("q", durable=True)  # declared again, without arguments
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.queue_declare("q", durable=True)  # the old x-message-ttl is not compared
        ch.basic_publish("a", "", b"x")
        assert ch.queue_declare("q", passive=True).method.message_count == 0
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            ch.exchange_declare("b", "fanout", passive=True)
        assert gone.value.reply_code == 404


def test_after_a_restart_ttl_dead_letters_and_x_expires_apply_before_any_client_connects(
    tmp_path: Path,
) -> None:
    with broker_on(tmp_path) as broker, channel_of(broker) as ch:
        ch.exchange_declare("dlx", "fanout", durable=True)
        ch.queue_declare("dead", durable=True)
        ch.queue_bind("dead", "dlx")
        ch.queue_declare(
            "short",
            durable=True,
            arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "dlx"},
        )
        ch.queue_declare("idle", durable=True, arguments={"x-expires": 5000})
        ch.basic_publish("", "short", b"expires", pika.BasicProperties(delivery_mode=2))
    with broker_on(tmp_path) as broker:
        broker.advance(10)  # nobody connected yet
        with channel_of(broker) as ch:
            _, properties, body = ch.basic_get("dead", auto_ack=True)
            assert body == b"expires"
            assert properties.headers["x-death"][0]["reason"] == "expired"
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
                ch.queue_declare("idle", passive=True)
            assert gone.value.reply_code == 404
