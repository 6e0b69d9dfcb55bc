"""AMQP logins under a permissions file, through pika: each principal gets its grants.

The password is the token; the token's principal is limited by the same
permissions file as on the native port (docs/security.md). What it may not
do closes the channel with 403 ACCESS_REFUSED; the connection goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from minibroker.access.permissions import Permissions
from minibroker.config import ServerConfig
from minibroker.testing import ThreadedBroker, run_in_thread

TOKENS = {"admin-token": "admin", "producer-token": "producer", "consumer-token": "consumer"}
PERMISSIONS = """
allow admin     all    #
allow producer  write  topic:orders queue:direct-jobs topic:events.#
allow consumer  read   queue:jobs.# topic:orders
allow consumer  admin  queue:jobs.#
"""


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    config = ServerConfig(
        port=0, amqp_port=0, tokens=TOKENS, permissions=Permissions.parse(PERMISSIONS)
    )
    with run_in_thread(config) as threaded:
        yield threaded


@pytest.fixture
def login(broker: ThreadedBroker) -> Iterator[Callable[[str], BlockingConnection]]:
    opened: list[BlockingConnection] = []

    def connect(token: str) -> BlockingConnection:
        params = pika.URLParameters(broker.amqp_url)
        params.credentials = pika.PlainCredentials("someone", token)
        opened.append(pika.BlockingConnection(params))
        return opened[-1]

    yield connect
    for connection in opened:
        if connection.is_open:
            connection.close()


def refused(connection: BlockingConnection, attempt: Callable[[BlockingChannel], object]) -> str:
    """Run ``attempt`` on a new channel; it must close that channel with 403."""
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        attempt(channel)
        channel.queue_declare("jobs.eu", passive=True)  # a round trip after a publish
    assert closed.value.reply_code == 403
    assert connection.is_open
    return str(closed.value.reply_text)


def test_each_principal_may_do_what_it_is_granted_and_nothing_else(
    login: Callable[[str], BlockingConnection],
) -> None:
    admin = login("admin-token").channel()
    admin.exchange_declare("orders", "direct")
    admin.queue_declare("jobs.eu")
    admin.queue_declare("direct-jobs")
    admin.queue_declare("jobs.events")
    admin.queue_bind("jobs.eu", "orders", "eu")
    admin.queue_bind("jobs.events", "amq.topic", "events.#")

    producer = login("producer-token")
    ch = producer.channel()
    ch.confirm_delivery()
    ch.basic_publish("orders", "eu", b"via orders")
    ch.basic_publish("", "direct-jobs", b"direct")
    ch.basic_publish("amq.topic", "events.created", b"event")
    text = refused(producer, lambda c: c.basic_publish("", "jobs.eu", b"not a put it may do"))
    assert "queue 'jobs.eu'" in text and "refused for user 'someone'" in text
    refused(producer, lambda c: c.basic_publish("amq.topic", "other.created", b"no"))
    refused(producer, lambda c: c.exchange_declare("mine", "fanout"))
    refused(producer, lambda c: c.queue_declare("jobs.mine"))
    refused(producer, lambda c: c.basic_get("direct-jobs"))

    consumer = login("consumer-token")
    ch = consumer.channel()
    assert ch.queue_declare("jobs.eu", passive=True).method.message_count == 1
    _, _, body = ch.basic_get("jobs.eu", auto_ack=True)
    assert body == b"via orders"
    ch.queue_declare("jobs.new")
    ch.queue_bind("jobs.new", "orders", "us")  # read on topic orders
    ch.queue_purge("jobs.new")
    ch.queue_delete("jobs.new")
    refused(consumer, lambda c: c.basic_get("direct-jobs"))
    refused(consumer, lambda c: c.queue_declare("other"))
    refused(consumer, lambda c: c.queue_bind("jobs.eu", "amq.fanout"))
    refused(consumer, lambda c: c.basic_publish("orders", "eu", b"no write"))
    refused(
        consumer, lambda c: c.queue_declare("jobs.dl", arguments={"x-dead-letter-exchange": "x"})
    )
    refused(consumer, lambda c: c.exchange_bind("orders", "amq.direct", "k"))
    assert admin.queue_declare("jobs.events", passive=True).method.message_count == 1


def test_an_unknown_token_is_refused_at_login(broker: ThreadedBroker) -> None:
    params = pika.URLParameters(broker.amqp_url)
    params.credentials = pika.PlainCredentials("admin", "not-a-token")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)
