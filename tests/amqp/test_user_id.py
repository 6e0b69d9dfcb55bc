"""The ``user_id`` property: RabbitMQ's validated user ID.

A publish whose ``user_id`` is not the user name it logged in with closes
the channel with 406, whatever the exchange, confirms or transactions; one
that names the login (or has no ``user_id``) goes through.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
from pika.exceptions import ChannelClosedByBroker
from test_differential_rabbitmq import compare_with_rabbitmq


def _scenario(params: pika.ConnectionParameters) -> list[Any]:
    suffix = uuid.uuid4().hex[:8]
    queue = f"user-id-{suffix}"
    seen: list[Any] = []
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.queue_declare(queue, exclusive=True)
        ch.confirm_delivery()
        for user_id, headers in (("guest", None), ("guest", {"h": 1}), ("mallory", None)):
            try:
                ch.basic_publish(
                    "", queue, b"x", pika.BasicProperties(user_id=user_id, headers=headers)
                )
                seen.append(("published", user_id))
            except ChannelClosedByBroker as exc:
                seen.append((exc.reply_code, exc.reply_text))
                ch = connection.channel()
                ch.confirm_delivery()
        ch = connection.channel()
        ch.tx_select()
        try:
            ch.basic_publish("", queue, b"x", pika.BasicProperties(user_id="", priority=1))
            ch.tx_commit()
            seen.append("committed")
        except ChannelClosedByBroker as exc:
            seen.append((exc.reply_code, exc.reply_text))
            ch = connection.channel()
        seen.append(ch.queue_declare(queue, passive=True).method.message_count)
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_a_user_id_other_than_the_login_closes_the_channel_406(minibroker_amqp_url: str) -> None:
    assert _scenario(pika.URLParameters(minibroker_amqp_url)) == [
        ("published", "guest"),
        ("published", "guest"),
        (
            406,
            "PRECONDITION_FAILED - user_id property set to 'mallory' "
            "but authenticated user was 'guest'",
        ),
        (
            406,
            "PRECONDITION_FAILED - user_id property set to '' but authenticated user was 'guest'",
        ),
        2,
    ]


def test_user_ids_look_the_same_from_minibroker_and_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(_scenario, minibroker_amqp_url)
