"""Queue and exchange names outside pamqp's pattern for them.

RabbitMQ takes any UTF-8 name up to 255 bytes; pamqp refuses, when it
builds or encodes a method, names with characters outside
``[a-zA-Z0-9-_.:@#,/+ ]``. The answers naming them (Queue.DeclareOk,
Basic.GetOk, Basic.Return) are encoded without that check: a client that
declared ``tasks$1`` must not get its connection closed with 541.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
import pytest
from pamqp import commands, frame
from pika.exceptions import UnroutableError
from test_differential_rabbitmq import compare_with_rabbitmq

from minibroker.amqp.framing import method_frame

NAMES = ["tasks$1", "é-queue", "a|b", "a'b", "(x)", "a>b"]


def _scenario(params: pika.ConnectionParameters) -> list[Any]:
    suffix = uuid.uuid4().hex[:8]
    seen: list[Any] = []
    connection = pika.BlockingConnection(params)
    try:
        ch = connection.channel()
        ch.confirm_delivery()
        for name in NAMES:
            queue, exchange = f"{name}-q-{suffix}", f"{name}-x-{suffix}"
            declared = ch.queue_declare(queue, exclusive=True).method.queue
            ch.exchange_declare(exchange, "direct", auto_delete=True)
            ch.queue_bind(queue, exchange, "k")
            ch.basic_publish(exchange, "k", name.encode())
            method, _, body = ch.basic_get(queue, auto_ack=True)
            try:
                ch.basic_publish(exchange, "nowhere", b"r", mandatory=True)
                returned = None
            except UnroutableError as exc:
                returned = exc.messages[0].method.exchange
            seen.append(
                (
                    declared == queue,
                    method.exchange == exchange,
                    body,
                    returned == exchange,
                )
            )
    finally:
        if connection.is_open:
            connection.close()
    return seen


def test_any_name_is_declared_got_from_and_returned_from(minibroker_amqp_url: str) -> None:
    assert _scenario(pika.URLParameters(minibroker_amqp_url)) == [
        (True, True, name.encode(), True) for name in NAMES
    ]


def test_names_look_the_same_from_minibroker_and_rabbitmq(minibroker_amqp_url: str) -> None:
    compare_with_rabbitmq(_scenario, minibroker_amqp_url)


@pytest.mark.parametrize(
    "method",
    [
        commands.Basic.Ack(5, multiple=True),
        commands.Basic.Nack(7, multiple=False, requeue=True),
        commands.Queue.Declare(queue="q", passive=True, exclusive=True, nowait=True),
        commands.Queue.DeclareOk("q", 3, 1),
        commands.Basic.GetOk(1, True, "ex", "key", 9),
        commands.Connection.Close(200, "bye", 0, 0),
        commands.Channel.OpenOk(),
    ],
    ids=lambda m: m.name,
)
def test_methods_are_encoded_as_pamqp_encodes_them(method: Any) -> None:
    assert method_frame(3, method) == frame.marshal(method, 3)
