"""Object limits through pika: 406 PRECONDITION_FAILED in RabbitMQ's words.

RabbitMQ refuses a queue past its vhost's ``max-queues`` with "cannot
declare queue 'q': queue limit in vhost '/' (N) is reached" and closes the
channel; minibroker does the same for its per-namespace queue, exchange and
binding limits (docs/amqp.md). Small limits, so each test makes a handful.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest

from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.testing import ThreadedBroker, run_in_thread


@pytest.fixture
def server() -> Iterator[ThreadedBroker]:
    limits = Limits(
        max_queues_per_namespace=2, max_exchanges_per_namespace=8, max_bindings_per_namespace=2
    )
    with run_in_thread(ServerConfig(port=0, amqp_port=0, limits=limits)) as threaded:
        yield threaded


def _closed_with(channel_call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel_call()
    return closed.value.reply_code, closed.value.reply_text


def test_a_queue_past_the_vhost_limit_is_precondition_failed(server: ThreadedBroker) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
    try:
        ch = connection.channel()
        ch.queue_declare("a")
        ch.queue_declare("b")
        ch.queue_declare("a")  # redeclaring makes nothing
        code, text = _closed_with(lambda: ch.queue_declare("c"))
        assert (code, text) == (
            406,
            "PRECONDITION_FAILED - cannot declare queue 'c': queue limit in vhost '/' (2) "
            "is reached",
        )
        ch = connection.channel()
        ch.queue_delete("a")
        ch.queue_declare("c")
    finally:
        connection.close()


def test_an_exchange_past_the_vhost_limit_is_precondition_failed(server: ThreadedBroker) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
    try:
        ch = connection.channel()
        # The default exchange and the five amq.* ones count: 6 of 8.
        ch.exchange_declare("x1", "direct")
        ch.exchange_declare("x2", "fanout")
        code, text = _closed_with(lambda: ch.exchange_declare("x3", "topic"))
        assert code == 406
        assert text == (
            "PRECONDITION_FAILED - cannot declare exchange 'x3': exchange limit in vhost '/' "
            "(8) is reached"
        )
    finally:
        connection.close()


def test_bindings_of_every_exchange_type_count_together(server: ThreadedBroker) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
    try:
        ch = connection.channel()
        ch.queue_declare("q")
        ch.exchange_declare("d", "direct")
        ch.exchange_declare("t", "topic")
        ch.queue_bind("q", "d", "k")  # kept by the AMQP front end
        ch.queue_bind("q", "t", "a.#")  # kept in the core's topic trie
        ch.queue_bind("q", "d", "k")  # already bound: nothing new
        code, text = _closed_with(lambda: ch.queue_bind("q", "t", "b.#"))
        assert (code, text) == (
            406,
            "PRECONDITION_FAILED - cannot bind queue 'q' to exchange 't': binding limit in "
            "vhost '/' (2) is reached",
        )
        ch = connection.channel()
        code, _ = _closed_with(lambda: ch.queue_bind("q", "d", "other"))
        assert code == 406
        ch = connection.channel()
        code, _ = _closed_with(lambda: ch.exchange_bind("t", "d", "k"))
        assert code == 406
        ch = connection.channel()
        ch.queue_unbind("q", "d", "k")
        ch.exchange_bind("t", "d", "k")
    finally:
        connection.close()


def test_a_new_vhost_past_the_namespace_limit_is_not_allowed() -> None:
    config = ServerConfig(port=0, amqp_port=0, limits=Limits(max_namespaces=1))
    with run_in_thread(config) as server:
        kept = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
        try:
            kept.channel().queue_declare("q")
            # pika reports a close during connection.open as ProbableAccessDeniedError.
            with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as closed:
                pika.BlockingConnection(pika.URLParameters(server.amqp_url_for("other")))
            assert "(530) \"NOT_ALLOWED - vhost 'other': cannot create namespace 'other': " in str(
                closed.value
            )
            assert "namespace limit (1) is reached" in str(closed.value)
        finally:
            kept.close()


def test_a_queue_past_the_broker_wide_limit_says_cluster_as_rabbitmq_does() -> None:
    """RabbitMQ's ``cluster_queue_limit``: "queue limit in cluster (N) is reached"."""
    limits = Limits(max_queues_per_namespace=10, max_queues_total=2)
    with run_in_thread(ServerConfig(port=0, amqp_port=0, limits=limits)) as threaded:
        connection = pika.BlockingConnection(pika.URLParameters(threaded.amqp_url))
        try:
            ch = connection.channel()
            ch.queue_declare("a")
            ch.queue_declare("b")
            code, text = _closed_with(lambda: ch.queue_declare("c"))
            assert (code, text) == (
                406,
                "PRECONDITION_FAILED - cannot declare queue 'c': queue limit in cluster (2) "
                "is reached",
            )
        finally:
            connection.close()
