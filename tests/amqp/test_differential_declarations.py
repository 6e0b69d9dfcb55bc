"""Redeclarations and deletions refused as RabbitMQ 3.10 refuses them.

A queue redeclared with another ``exclusive`` is 405 RESOURCE_LOCKED (the
queue is locked against that declaration), before any other difference;
system exchanges and the default exchange cannot be deleted (403), and
``if_empty`` refuses a queue with messages (406), each in RabbitMQ's words.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pika
from pika.exceptions import ChannelClosedByBroker
from test_differential_rabbitmq import compare_with_rabbitmq


def _scenario(params: pika.ConnectionParameters) -> list[Any]:
    suffix = uuid.uuid4().hex[:8]
    seen: list[Any] = []
    connection = pika.BlockingConnection(params)

    def attempt(action: Any) -> None:
        ch = connection.channel()
        try:
            action(ch)
            seen.append("ok")
        except ChannelClosedByBroker as exc:
            text = re.sub(r"vhost '[^']*'", "vhost '*'", exc.reply_text.replace(suffix, "*"))
            seen.append((exc.reply_code, text))
        if ch.is_open:
            ch.close()

    try:
        plain, exclusive = f"plain-{suffix}", f"exclusive-{suffix}"
        setup = connection.channel()
        setup.queue_declare(plain, auto_delete=True)
        setup.queue_declare(exclusive, exclusive=True)
        setup.basic_publish("", plain, b"x")
        attempt(lambda ch: ch.queue_declare(plain, exclusive=True))
        attempt(lambda ch: ch.queue_declare(plain, exclusive=True, durable=True))
        attempt(lambda ch: ch.queue_declare(exclusive))
        attempt(lambda ch: ch.queue_declare(exclusive, durable=True))
        attempt(lambda ch: ch.queue_declare(plain, exclusive=True, passive=True))
        attempt(lambda ch: ch.queue_declare(plain, durable=True))
        attempt(lambda ch: ch.exchange_delete("amq.direct"))
        attempt(lambda ch: ch.exchange_delete(""))
        attempt(lambda ch: ch.queue_delete(plain, if_empty=True))
    finally:
        if connection.is_open:
            connection.close()
    return seen


def _locked(name: str) -> tuple[int, str]:
    return (
        405,
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}-*' in vhost "
        "'*'. It could be originally declared on another connection or the exclusive "
        "property value does not match that of the original declaration.",
    )


def test_redeclarations_and_deletions_are_refused_in_rabbitmqs_words() -> None:
    from minibroker.testing import run_in_thread

    with run_in_thread(amqp_port=0) as broker:
        seen = _scenario(pika.URLParameters(broker.amqp_url))
    assert seen == [
        _locked("plain"),
        _locked("plain"),
        _locked("exclusive"),
        _locked("exclusive"),
        "ok",
        (
            406,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'plain-*' in vhost '*': "
            "received 'true' but current is 'false'",
        ),
        (403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '*' not allowed"),
        (403, "ACCESS_REFUSED - operation not permitted on the default exchange"),
        (406, "PRECONDITION_FAILED - queue 'plain-*' in vhost '*' not empty"),
    ]


def test_declarations_look_the_same_from_minibroker_and_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(_scenario, minibroker_amqp_url)
