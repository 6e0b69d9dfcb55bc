"""Tx.Select / Commit / Rollback through pika: publishes and acks take effect at commit."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingConnection

from minibroker.amqp.connection import AmqpSettings


def ready(connection: BlockingConnection, queue: str) -> int:
    count: int = connection.channel().queue_declare(queue, passive=True).method.message_count
    return count


def test_publishes_are_held_until_commit_and_dropped_by_rollback(
    connection: BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("tx")
    ch.tx_select()
    ch.basic_publish("", "tx", b"one")
    ch.basic_publish("", "tx", b"two")
    assert ready(connection, "tx") == 0
    ch.tx_commit()
    assert ready(connection, "tx") == 2
    ch.basic_publish("", "tx", b"rolled back")
    ch.tx_rollback()
    ch.tx_commit()  # nothing left to commit
    assert ready(connection, "tx") == 2
    assert [ch.basic_get("tx", auto_ack=True)[2] for _ in range(2)] == [b"one", b"two"]


def test_acks_take_effect_at_commit_and_a_rollback_leaves_them_unacked(
    connection: BlockingConnection,
) -> None:
    setup = connection.channel()
    setup.queue_declare("work")
    for body in (b"a", b"b"):
        setup.basic_publish("", "work", body)
    ch = connection.channel()
    ch.tx_select()
    first, _, _ = ch.basic_get("work")
    second, _, _ = ch.basic_get("work")
    ch.basic_ack(first.delivery_tag)
    ch.basic_reject(second.delivery_tag, requeue=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as twice:
        ch.basic_ack(first.delivery_tag)  # already settled in this transaction
        ch.tx_commit()
    assert twice.value.reply_code == 406
    assert ready(connection, "work") == 2  # the channel closed, nothing was committed

    ch = connection.channel()
    ch.tx_select()
    first, _, _ = ch.basic_get("work")
    ch.basic_ack(first.delivery_tag)
    ch.tx_rollback()
    ch.close()  # still unacked after the rollback: requeued
    assert ready(connection, "work") == 2

    ch = connection.channel()
    ch.tx_select()
    first, _, body = ch.basic_get("work")
    assert (body, first.redelivered) == (b"a", True)
    ch.basic_ack(first.delivery_tag)
    ch.tx_commit()
    ch.close()
    assert ready(connection, "work") == 1


def test_a_mandatory_publish_with_no_route_is_returned_at_commit(
    connection: BlockingConnection,
) -> None:
    ch = connection.channel()
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, body: returned.append(body))
    ch.tx_select()
    ch.basic_publish("", "nowhere", b"lost", mandatory=True)
    connection.channel().queue_declare("x")  # a round trip: nothing returned yet
    connection.process_data_events(time_limit=0)
    assert returned == []
    ch.tx_commit()
    while not returned:
        connection.process_data_events(time_limit=1)
    assert returned == [b"lost"]


@pytest.mark.parametrize(
    "steps",
    [
        ("confirm", "tx"),  # cannot switch from confirm to tx mode
        ("tx", "confirm"),  # nor back
        ("commit",),  # not transactional
        ("rollback",),
    ],
)
def test_mixing_modes_or_committing_outside_a_transaction_is_406(
    connection: BlockingConnection, steps: tuple[str, ...]
) -> None:
    ch = connection.channel()
    actions = {
        "confirm": ch.confirm_delivery,
        "tx": ch.tx_select,
        "commit": ch.tx_commit,
        "rollback": ch.tx_rollback,
    }
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        for step in steps:
            actions[step]()
    assert refused.value.reply_code == 406


def test_a_transaction_is_bounded_by_the_connections_budget(
    connection: BlockingConnection,
) -> None:
    ch = connection.channel()
    ch.queue_declare("big")
    ch.tx_select()
    body = b"x" * (4 * 1024 * 1024)
    budget = AmqpSettings(authenticate=lambda token: None).max_content_in_progress
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        for _ in range(budget // len(body) + 1):
            ch.basic_publish("", "big", body)
        ch.tx_commit()
    assert refused.value.reply_code == 406
    assert "commit more often" in refused.value.reply_text
    assert ready(connection, "big") == 0
    # The budget came back with the channel: a new transaction fits.
    ch = connection.channel()
    ch.tx_select()
    ch.basic_publish("", "big", body)
    ch.tx_commit()
    assert ready(connection, "big") == 1
